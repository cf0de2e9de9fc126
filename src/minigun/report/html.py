"""``minigun report --format html``: one self-contained page with charts of the run.

The page holds everything it shows: inline CSS, charts drawn here as inline SVG (no
script, no font, no image, nothing fetched), and a Content-Security-Policy that
forbids loading anything, so it opens the same from a ticket attachment, an
artifact store or an air-gapped laptop. A few tens of kilobytes.

Charts: stage throughput and queue fill over the run when the result has a timeline
(``minigun run --result-file`` records one), per-stage bars otherwise; service
latency p50/p95/p99 per stage on a log scale; busy % per stage with the bottleneck
marked. Then the same tables as the text report. Every name shown is HTML-escaped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from minigun._text import escape_controls
from minigun.report.render import Report, stage_cells
from minigun.report.table import format_cell, format_seconds
from minigun.report.timeline import stage_fills, stage_rates

__all__ = ["render_html"]

#: Colours for stages (Tableau 10: distinguishable, also for most colour-blind readers).
PALETTE = (
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
    "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
)  # fmt: skip

WIDTH, HEIGHT = 720, 260
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 12, 34

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;
color:#222;background:#fff;max-width:1200px}
h1{font-size:22px;margin:0 0 12px}h2{font-size:17px;margin:28px 0 8px}
table{border-collapse:collapse;margin:6px 0}
th,td{padding:3px 8px;border-bottom:1px solid #e3e3e3;text-align:right;white-space:nowrap}
th{background:#f5f5f5;font-weight:600}
td:first-child,th:first-child{text-align:left}
table.overview td{text-align:left;white-space:normal}
table.overview td:first-child{font-weight:600;color:#555}
tr.bottleneck td{background:#fff4e5}
.charts{display:flex;flex-wrap:wrap;gap:20px}
figure{margin:0;border:1px solid #e3e3e3;border-radius:6px;padding:10px}
figcaption{font-weight:600;margin-bottom:4px}
.legend{font-size:12px;margin-top:4px;max-width:720px}
.legend span{display:inline-block;margin-right:12px}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;border-radius:2px}
.note{color:#666;font-size:13px}
.status-ok{color:#1b7f3b}.status-bad{color:#b3261e}
svg text{font-size:11px;fill:#444}
"""


def render_html(report: Report) -> str:
    """The whole page, as a string."""
    title = f"minigun report: {report.title}"
    result = report.result
    colours = {row["stage"]: PALETTE[i % len(PALETTE)] for i, row in enumerate(report.stages)}
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        # Nothing may be loaded from anywhere: the page is complete as it is.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\';'
        " style-src 'unsafe-inline'\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        _overview(report),
        "<h2>Charts</h2>",
        '<div class="charts">',
        _throughput_chart(report, colours),
        _queue_chart(report, colours),
        _latency_chart(report, colours),
        _busy_chart(report, colours),
        "</div>",
        "<h2>Stages</h2>",
        _stage_table(report),
        "<h2>Bottleneck</h2>",
        *(f"<p>{_e(note)}</p>" for note in report.bottleneck_notes),
        _table(list(report.busiest[0]), [list(r.values()) for r in report.busiest])
        if report.busiest
        else "",
        "<h2>Dead letters by stage and error type</h2>",
        _dead_letters(report),
        "<h2>Runner attempts</h2>",
        _table(list(report.attempts[0]), [list(r.values()) for r in report.attempts])
        if report.attempts
        else f'<p class="note">{_e(report.attempts_note or "")}</p>',
        f'<p class="note">schema {_e(str(result.get("schema")))}; made by minigun report.</p>',
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p) + "\n"


def _e(text: Any) -> str:
    return escape(escape_controls(str(text)), quote=True)


def _overview(report: Report) -> str:
    rows = []
    ok = report.result.get("exit_code") == 0
    for key, value in report.overview:
        cls = ""
        if key == "status":
            cls = ' class="status-ok"' if ok else ' class="status-bad"'
        rows.append(f"<tr><td>{_e(key)}</td><td{cls}>{_e(value)}</td></tr>")
    return f'<table class="overview">{"".join(rows)}</table>'


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], marked: int = -1) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        cls = ' class="bottleneck"' if i == marked else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _stage_table(report: Report) -> str:
    headers, cells = stage_cells(report)
    if not cells:
        return '<p class="note">No stage figures in this result.</p>'
    marked = next(
        (i for i, row in enumerate(report.stages) if row["stage"] == report.bottleneck), -1
    )
    note = '<p class="note">◀ and the shaded row: the bottleneck.</p>' if marked >= 0 else ""
    return _table(headers, cells, marked) + note


def _dead_letters(report: Report) -> str:
    if not report.dead_letters:
        return "<p>None.</p>"
    rows = [
        [r["stage"], r["error_type"], f"{r['count']:,}", str(r["example"])[:120]]
        for r in report.dead_letters
    ]
    table = _table(["stage", "error type", "count", "example"], rows)
    return table + f'<p class="note">{_e(report.dead_letters_note or "")}</p>'


# ------------------------------------------------------------------------- charts


def _figure(caption: str, svg: str, legend: Mapping[str, str] | None, note: str = "") -> str:
    parts = [f"<figure><figcaption>{_e(caption)}</figcaption>", svg]
    if legend:
        spans = "".join(
            f'<span><i style="background:{colour}"></i>{_e(name)}</span>'
            for name, colour in legend.items()
        )
        parts.append(f'<div class="legend">{spans}</div>')
    if note:
        parts.append(f'<div class="note">{_e(note)}</div>')
    parts.append("</figure>")
    return "".join(parts)


def nice_ticks(top: float, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least ``top`` (steps of 1, 2 or 5 times 10^k)."""
    if not top > 0 or not math.isfinite(top):
        return [0.0, 1.0]
    raw = top / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    n = math.ceil(top / step - 1e-9)
    return [i * step for i in range(n + 1)]


def _svg(body: str, height: int = HEIGHT) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}"'
        f' viewBox="0 0 {WIDTH} {height}" role="img">{body}</svg>'
    )


def _short(value: float) -> str:
    """An axis label: 1.2k, 35, 0.5."""
    if value >= 1e6:
        return f"{value / 1e6:g}M"
    if value >= 1e3:
        return f"{value / 1e3:g}k"
    return f"{value:g}"


def line_chart(
    times: Sequence[float],
    series: Mapping[str, Sequence[float | None]],
    colours: Mapping[str, str],
    *,
    y_label: str,
    y_max: float | None = None,
    percent: bool = False,
) -> str:
    """Lines over time (x: seconds into the run), one per series, on shared axes."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    values = [v for vs in series.values() for v in vs if v is not None]
    top = y_max if y_max is not None else max(values, default=0.0)
    y_ticks = nice_ticks(top or 1.0)
    y_top = y_ticks[-1]
    t_end = max(times[-1], 1e-9) if times else 1.0
    x_ticks = nice_ticks(t_end, 6)
    x_top = x_ticks[-1]

    def x(t: float) -> float:
        return LEFT + plot_w * t / x_top

    def y(v: float) -> float:
        return TOP + plot_h * (1 - v / y_top)

    out = []
    for tick in y_ticks:
        label = f"{tick:.0%}" if percent else _short(tick)
        out.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(tick):.1f}" y2="{y(tick):.1f}"'
            ' stroke="#eee"/>'
            f'<text x="{LEFT - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{label}</text>'
        )
    for tick in x_ticks:
        out.append(
            f'<text x="{x(tick):.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">'
            f"{_short(tick)}s</text>"
        )
    out.append(
        f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{TOP + plot_h}" y2="{TOP + plot_h}"'
        ' stroke="#999"/>'
        f'<text x="12" y="{TOP + plot_h / 2:.0f}" transform="rotate(-90 12 {TOP + plot_h / 2:.0f})"'
        f' text-anchor="middle">{_e(y_label)}</text>'
    )
    for name, vs in series.items():
        points = [f"{x(t):.1f},{y(v):.1f}" for t, v in zip(times, vs) if v is not None]
        if not points:
            continue
        colour = colours.get(name, PALETTE[0])
        shape = (
            f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{" ".join(points)}">'
            if len(points) > 1
            else f'<circle r="3" fill="{colour}" cx="{points[0].split(",")[0]}"'
            f' cy="{points[0].split(",")[1]}">'
        )
        out.append(
            shape
            + f"<title>{_e(name)}</title>"
            + ("</polyline>" if len(points) > 1 else "</circle>")
        )
    return _svg("".join(out))


def bar_chart(
    bars: Sequence[tuple[str, float, str]],
    *,
    fmt: Any,
    y_max: float | None = None,
    log: bool = False,
    group_labels: Sequence[str] = (),
) -> str:
    """Horizontal bars ``(label, value, colour)``; ``log`` for values spanning decades.

    With ``group_labels``, bars come in groups of that many per label (latency
    p50/p95/p99 of each stage), drawn in decreasing opacity.
    """
    group = max(1, len(group_labels))
    rows = max(1, len(bars) // group)
    bar_h, gap = 12, 10
    height = TOP + rows * (group * bar_h + gap) + BOTTOM
    label_w = 150
    plot_w = WIDTH - label_w - RIGHT - 60
    values = [v for _, v, _ in bars if v > 0]
    if log and values:
        lo = 10 ** math.floor(math.log10(min(values)))
        hi = 10 ** math.ceil(math.log10(max(values)))
        hi = hi * 10 if hi <= lo else hi

        def scale(v: float) -> float:
            if v <= 0:
                return 0.0
            return plot_w * (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))

        ticks = [lo * 10**i for i in range(round(math.log10(hi / lo)) + 1)]
    else:
        top = y_max if y_max is not None else max(values, default=1.0)
        ticks = nice_ticks(top)

        def scale(v: float) -> float:
            return plot_w * max(0.0, v) / ticks[-1]

    out = []
    base_y = height - BOTTOM
    for tick in ticks:
        tx = label_w + scale(tick)
        out.append(
            f'<line x1="{tx:.1f}" x2="{tx:.1f}" y1="{TOP}" y2="{base_y}" stroke="#eee"/>'
            f'<text x="{tx:.1f}" y="{base_y + 16}" text-anchor="middle">{_e(fmt(tick))}</text>'
        )
    for i, (label, value, colour) in enumerate(bars):
        row, member = divmod(i, group)
        top_y = TOP + row * (group * bar_h + gap) + member * bar_h
        if member == 0:
            name_y = top_y + group * bar_h / 2 + 4
            out.append(
                f'<text x="{label_w - 8}" y="{name_y:.1f}" text-anchor="end">{_e(label)}</text>'
            )
        opacity = 1.0 - 0.3 * member
        width = scale(value)
        suffix = f" {group_labels[member]}" if group_labels else ""
        out.append(
            f'<rect x="{label_w}" y="{top_y + 1}" width="{max(width, 0.5):.1f}"'
            f' height="{bar_h - 2}" fill="{colour}" fill-opacity="{opacity:.1f}">'
            f"<title>{_e(label)}{_e(suffix)}: {_e(fmt(value))}</title></rect>"
            f'<text x="{label_w + width + 4:.1f}" y="{top_y + bar_h - 2}">'
            f"{_e(group_labels[member] + ' ' if group_labels else '')}{_e(fmt(value))}</text>"
        )
    return _svg("".join(out), height)


def _throughput_chart(report: Report, colours: Mapping[str, str]) -> str:
    times, rates = stage_rates(report.result.get("timeline"))
    if times and rates:
        svg = line_chart(times, rates, colours, y_label="items/s")
        return _figure("Stage throughput over the run (items/s)", svg, _legend(rates, colours))
    bars = [
        (row["stage"], float(row["throughput"] or 0), colours[row["stage"]])
        for row in report.stages
        if row["throughput"] is not None
    ]
    if not bars:
        return ""
    svg = bar_chart(bars, fmt=lambda v: f"{v:,.0f}")
    return _figure(
        "Stage throughput (items/s, average over the run)",
        svg,
        None,
        "No timeline in this result: `minigun run --result-file` records one.",
    )


def _queue_chart(report: Report, colours: Mapping[str, str]) -> str:
    times, fills = stage_fills(report.result.get("timeline"))
    if times and fills:
        peak = max((v for vs in fills.values() for v in vs if v is not None), default=0.0)
        svg = line_chart(
            times, fills, colours, y_label="queue fill", y_max=max(1.0, peak), percent=True
        )
        return _figure(
            "Queue fill over the run (queued / queue size)", svg, _legend(fills, colours)
        )
    bars = [
        (row["stage"], float(row["queue_fill"]), colours[row["stage"]])
        for row in report.stages
        if row["queue_fill"] is not None
    ]
    if not bars:
        return ""
    svg = bar_chart(bars, fmt=lambda v: f"{v:.0%}", y_max=max(1.0, *(v for _, v, _ in bars)))
    return _figure(
        "Queue fill at the end of the run",
        svg,
        None,
        "No timeline in this result, so only the end is known (usually empty queues).",
    )


def _latency_chart(report: Report, colours: Mapping[str, str]) -> str:
    bars: list[tuple[str, float, str]] = []
    for row in report.stages:
        values = [row[k] for k in ("latency_p50", "latency_p95", "latency_p99")]
        if not any(isinstance(v, (int, float)) and v > 0 for v in values):
            continue  # a producer, or a run without timings
        bars += [(row["stage"], float(v or 0), colours[row["stage"]]) for v in values]
    if not bars:
        return ""
    svg = bar_chart(bars, fmt=format_seconds, log=True, group_labels=("p50", "p95", "p99"))
    return _figure("Service time per item: p50, p95, p99 (log scale)", svg, None)


def _busy_chart(report: Report, colours: Mapping[str, str]) -> str:
    bars = [
        (
            row["stage"] + (" ◀" if row["stage"] == report.bottleneck else ""),
            float(row["utilisation"]),
            colours[row["stage"]],
        )
        for row in report.stages
        if row["utilisation"] is not None
    ]
    if not bars:
        return ""
    svg = bar_chart(bars, fmt=lambda v: format_cell("utilisation", v), y_max=1.0)
    return _figure("Busy % per stage (◀ bottleneck)", svg, None)


def _legend(series: Mapping[str, Any], colours: Mapping[str, str]) -> dict[str, str]:
    return {name: colours.get(name, PALETTE[0]) for name in series}
