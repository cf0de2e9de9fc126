"""``minigun report``: a run's result JSON as text tables (rich) or markdown.

:func:`build_report` reads a result into :class:`Report` -- the overview, the stage
table (:func:`~minigun.report.table.stage_table`), the bottleneck, dead letters by
stage and error type, the runner's attempts -- and each format renders the same
sections: :func:`render_text` for a terminal, :func:`render_markdown` for a ticket,
:func:`minigun.report.html.render_html` for one self-contained page.

Any result JSON works: ``minigun run --result-file``, an adapter's (the Airflow XCom,
the Luigi output, the Prefect or Dagster return value). What a result does not hold
is said, not guessed: the runner's attempts are in results written by ``minigun run``
only, and a timeline (peak queue fill, charts over time) only when it ran with
``--result-file``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from minigun._text import escape_controls
from minigun.exit_codes import ExitCode
from minigun.report.table import (
    STAGE_COLUMNS,
    dead_letter_breakdown,
    format_cell,
    format_seconds,
    stage_table,
    stats_of,
)
from minigun.report.timeline import peak_fills

__all__ = [
    "RESULT_SCHEMA_PREFIX",
    "Report",
    "build_report",
    "check_result",
    "render_markdown",
    "render_text",
]

#: Result schemas this reader understands (``minigun.result/1``).
RESULT_SCHEMA_PREFIX = "minigun.result/1"

#: Dead-letter records read from a run's JSON Lines file for the breakdown, at most.
MAX_DEAD_LETTER_RECORDS = 1_000_000


def check_result(data: Any) -> Mapping[str, Any]:
    """``data`` if it is a minigun result JSON this version can read, else ValueError."""
    if not isinstance(data, Mapping):
        raise ValueError("is not a minigun result (a JSON object was expected)")
    schema = data.get("schema")
    if schema is None:
        raise ValueError('is not a minigun result (it has no "schema")')
    if schema != RESULT_SCHEMA_PREFIX:
        raise ValueError(f"has schema {str(schema)[:60]!r}; this minigun reads minigun.result/1")
    stats = data.get("stats")
    if stats is not None and not isinstance(stats, Mapping):
        raise ValueError('is not a minigun result ("stats" is not an object)')
    return data


@dataclass
class Report:
    """The sections every format shows, as plain rows of strings and numbers."""

    title: str
    overview: list[tuple[str, str]]
    stages: list[dict[str, Any]]
    bottleneck: str | None
    bottleneck_notes: list[str]
    busiest: list[dict[str, str]]
    dead_letters: list[dict[str, Any]]
    dead_letters_note: str | None
    attempts: list[dict[str, str]]
    attempts_note: str | None
    result: Mapping[str, Any] = field(repr=False)


def build_report(result: Mapping[str, Any], *, base_dir: str | None = None) -> Report:
    """The report of ``result``; ``base_dir`` resolves a relative dead-letter file."""
    stats = stats_of(result)
    rows = stage_table(result)
    label = str(result.get("pipeline") or "pipeline")
    title = label.rpartition(":")[2] or label
    bottleneck = stats.get("bottleneck")
    peaks = peak_fills(result.get("timeline"))
    dead_rows, dead_note = _dead_letters(result, rows, base_dir)
    attempts, attempts_note = _attempts(result)
    notes = _bottleneck_notes(rows, bottleneck, peaks)
    return Report(
        title=title,
        overview=list(_overview(result, stats, rows)),
        stages=rows,
        bottleneck=str(bottleneck) if bottleneck else None,
        bottleneck_notes=notes,
        busiest=_busiest(rows, peaks),
        dead_letters=dead_rows,
        dead_letters_note=dead_note,
        attempts=attempts,
        attempts_note=attempts_note,
        result=result,
    )


def _overview(
    result: Mapping[str, Any], stats: Mapping[str, Any], rows: list[dict[str, Any]]
) -> Iterator[tuple[str, str]]:
    yield "pipeline", str(result.get("pipeline") or "-")
    code = result.get("exit_code")
    status = str(result.get("status") or "-")
    if isinstance(code, int):
        meaning = ExitCode.describe(code)
        status += f" (exit {code}{'' if meaning == status else f': {meaning}'})"
    yield "status", status
    if result.get("started_at"):
        yield "started", str(result["started_at"])
    duration = stats.get("duration", result.get("duration"))
    if isinstance(duration, (int, float)):
        yield "duration", format_seconds(duration)
    if "total_produced" in stats:
        items = [
            f"produced {_count(stats.get('total_produced'))}",
            f"consumed {_count(stats.get('total_consumed'))}",
        ]
        for key in ("dropped", "skipped"):
            total = sum(row[key] or 0 for row in rows)
            if total:
                items.append(f"{key} {total:,}")
        if stats.get("discarded"):
            items.append(f"discarded {_count(stats['discarded'])}")
        yield "items", ", ".join(items)
    if isinstance(stats.get("throughput"), (int, float)):
        yield "throughput", f"{float(stats['throughput']):,.1f} items/s"
    bottleneck = stats.get("bottleneck")
    if bottleneck:
        busy = next((r["utilisation"] for r in rows if r["stage"] == bottleneck), None)
        yield "bottleneck", f"{bottleneck} ({format_cell('utilisation', busy)} busy)"
    count = result.get("dead_letter_count")
    if count:
        where = result.get("dead_letter_file") or "memory only: no dead-letter directory"
        yield "dead letters", f"{_count(count)} in {where}"
    error = result.get("error")
    if isinstance(error, Mapping) and (error.get("type") or error.get("message")):
        text = ": ".join(str(error[k]) for k in ("type", "message") if error.get(k))
        stage = error.get("stage")
        yield "error", f"stage {stage}: {text}" if stage else text
    stop = result.get("stop")
    if isinstance(stop, Mapping):
        drained = "drained" if stop.get("drained") else "NOT drained (exited at once)"
        yield "stopped by", f"{stop.get('requested_by')}, grace {stop.get('grace')}s, {drained}"
    runner = result.get("runner")
    if isinstance(runner, Mapping) and runner.get("attempts") is not None:
        yield "attempts", f"{runner['attempts']} (runner, {format_seconds(runner.get('duration'))})"


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def _busiest(
    rows: list[dict[str, Any]], peaks: Mapping[str, tuple[int, int]]
) -> list[dict[str, str]]:
    """The three busiest stages: what the bottleneck section shows."""
    ranked = sorted(
        (r for r in rows if r["utilisation"] is not None),
        key=lambda r: -float(r["utilisation"]),
    )[:3]
    out = []
    for row in ranked:
        peak = peaks.get(row["stage"])
        out.append(
            {
                "stage": row["stage"],
                "busy %": format_cell("utilisation", row["utilisation"]),
                "workers": format_cell("workers", row["workers"]),
                "items/s": format_cell("throughput", row["throughput"]),
                "p99": format_cell("latency_p99", row["latency_p99"]),
                "peak queue": f"{peak[0]:,} / {peak[1]:,}" if peak else "-",
            }
        )
    return out


def _bottleneck_notes(
    rows: list[dict[str, Any]], bottleneck: Any, peaks: Mapping[str, tuple[int, int]]
) -> list[str]:
    """Plain statements about where time went; suggestions only where the figures show it."""
    notes: list[str] = []
    by_stage = {row["stage"]: row for row in rows}
    row = by_stage.get(bottleneck) if bottleneck else None
    if row is None:
        return ["No stage was busy long enough to be called a bottleneck."]
    busy = float(row["utilisation"] or 0)
    workers = row["workers"] or 1
    notes.append(
        f"{bottleneck} was the busiest stage: its {workers} worker(s) were busy"
        f" {busy:.0%} of the run ({format_cell('busy_seconds', row['busy_seconds'])})."
    )
    full = [name for name, (peak, cap) in peaks.items() if cap and peak >= cap]
    if full:
        notes.append(
            "Queue(s) full at some point: "
            + ", ".join(full)
            + " (the stages feeding them waited: backpressure)."
        )
    if busy >= 0.8 and row["kind"] != "producer":
        notes.append(
            f"{bottleneck} was busy most of the time: more workers (threads= or processes=)"
            " or faster work there would shorten the run."
        )
    elif busy < 0.5:
        notes.append(
            "No stage was busy half of the time: the run waited on something else"
            " (its producer, a batch timeout, start-up)."
        )
    return notes


def _dead_letters(
    result: Mapping[str, Any], rows: list[dict[str, Any]], base_dir: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    count = result.get("dead_letter_count")
    if not isinstance(count, int):
        count = sum(row["dead_letters"] or 0 for row in rows)
    if not count:
        return [], None
    path = result.get("dead_letter_file")
    if isinstance(path, str) and path:
        read = _read_dead_letter_file(path, base_dir)
        if read is not None:
            rows, seen, complete = read
            which = f"all {seen:,}" if complete else f"the first {seen:,}"
            return rows, f"Counted over {which} records of {path}."
    listed = result.get("dead_letters")
    listed = [r for r in listed if isinstance(r, Mapping)] if isinstance(listed, list) else []
    note = f"Counted over the {len(listed):,} record(s) kept in the result"
    if len(listed) < count:
        note += f" (of {count:,}; the file has them all)"
    return dead_letter_breakdown(listed), note + "."


def _read_dead_letter_file(
    path: str, base_dir: str | None
) -> tuple[list[dict[str, Any]], int, bool] | None:
    """Dead letters of a JSON Lines file by stage and error type, streamed (only
    ``stage`` and ``error`` are read; a torn or foreign line is skipped):
    ``(rows, records counted, whole file)``, or None when it cannot be read here."""
    candidates = [path]
    if not os.path.isabs(path) and base_dir:
        candidates.append(os.path.join(base_dir, path))
    for candidate in candidates:
        try:
            fh = open(candidate, encoding="utf-8", errors="replace")  # noqa: SIM115
        except OSError:
            continue
        with fh:
            stream = _Records(fh)
            rows = dead_letter_breakdown(stream)
        return rows, stream.seen, stream.complete
    return None


class _Records:
    """The dead-letter records of an open JSON Lines file, counted as they are read."""

    def __init__(self, lines: TextIO) -> None:
        self.lines = lines
        self.seen = 0
        self.complete = True

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for line in self.lines:
            if self.seen >= MAX_DEAD_LETTER_RECORDS:
                self.complete = False
                return
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and "stage" in record:
                self.seen += 1
                yield record


def _attempts(result: Mapping[str, Any]) -> tuple[list[dict[str, str]], str | None]:
    runner = result.get("runner")
    history = runner.get("history") if isinstance(runner, Mapping) else None
    if not isinstance(history, list) or not history:
        return [], (
            "Not recorded: the runner's attempts are in results written by"
            " `minigun run --result-file` (this one came from elsewhere or ran in-process)."
        )
    rows = []
    for attempt in history:
        if not isinstance(attempt, Mapping):
            continue
        code = attempt.get("exit_code")
        rows.append(
            {
                "attempt": str(attempt.get("attempt", "?")),
                "exit code": str(code),
                "status": str(attempt.get("status") or "-"),
                "meaning": ExitCode.describe(code) if isinstance(code, int) else "-",
                "duration": format_seconds(attempt.get("duration")),
                "cancelled": "yes" if attempt.get("cancelled") else "no",
            }
        )
    return rows, None


# ---------------------------------------------------------------------------- text


def stage_cells(report: Report) -> tuple[list[str], list[list[str]]]:
    """Headers and formatted cells of the stage table, the bottleneck marked."""
    headers = [c.label for c in STAGE_COLUMNS]
    cells = []
    for row in report.stages:
        line = [format_cell(c.key, row[c.key]) for c in STAGE_COLUMNS]
        if row["stage"] == report.bottleneck:
            line[0] += " ◀"
        cells.append(line)
    return headers, cells


def render_text(report: Report, out: TextIO, *, width: int | None = None) -> None:
    """The report as rich tables on ``out`` (colour only on a terminal)."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=out, width=width, highlight=False, soft_wrap=False)
    console.print(f"[bold]minigun report: {_rich_escape(report.title)}[/bold]")
    overview = Table(show_header=False, box=None, padding=(0, 2, 0, 0))
    overview.add_column(style="bold")
    overview.add_column()
    for key, value in report.overview:
        overview.add_row(key, _rich_escape(value))
    console.print(overview)

    def table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        t = Table(title=title, title_justify="left", title_style="bold")
        for i, header in enumerate(headers):
            t.add_column(header, justify="right" if numeric_column(rows, i) else "left")
        for row in rows:
            t.add_row(*(_rich_escape(cell) for cell in row))
        console.print(t)

    headers, cells = stage_cells(report)
    if cells:
        keep = _columns_that_fit(headers, cells, console)
        left_out = [h for i, h in enumerate(headers) if i not in keep]
        headers = [headers[i] for i in keep]
        cells = [[line[i] for i in keep] for line in cells]
        table("Stages (◀ bottleneck)", headers, cells)
        if left_out:
            console.print(
                f"Left out at width {console.width}: {', '.join(left_out)}"
                " (a wider --width or --format markdown shows every column)."
            )
    else:
        console.print("\n[bold]Stages[/bold]\nNo stage figures in this result.")
    console.print("\n[bold]Bottleneck[/bold]")
    for note in report.bottleneck_notes:
        console.print(_rich_escape(note))
    if report.busiest:
        table("", list(report.busiest[0]), [list(r.values()) for r in report.busiest])
    console.print("\n[bold]Dead letters by stage and error type[/bold]")
    if report.dead_letters:
        table(
            "",
            ["stage", "error type", "count", "example"],
            [_dead_letter_cells(r) for r in report.dead_letters],
        )
        console.print(_rich_escape(report.dead_letters_note or ""))
    else:
        console.print("None.")
    console.print("\n[bold]Runner attempts[/bold]")
    if report.attempts:
        table("", list(report.attempts[0]), [list(r.values()) for r in report.attempts])
    else:
        console.print(_rich_escape(report.attempts_note or ""))


#: Stage-table columns a narrow text report leaves out, the first one first: latency
#: percentiles, then queue and busy figures, then the rarer counts. What is never left
#: out: stage, kind, in, out, processed, errors and items/s.
DROP_ORDER = (
    "latency_p99",
    "latency_p95",
    "latency_p50",
    "queue_capacity",
    "queued",
    "busy_seconds",
    "retries",
    "queue_fill",
    "executor",
    "workers",
    "dropped",
    "skipped",
    "failed",
    "utilisation",
    "dead_letters",
)


def _columns_that_fit(
    headers: Sequence[str], cells: Sequence[Sequence[str]], console: Any
) -> list[int]:
    """Indexes of the stage-table columns to show so the table fits ``console.width``.

    Columns are left out in :data:`DROP_ORDER` until the table's natural width fits;
    a rich table squeezed narrower than that would cut every cell to "…".
    """
    from rich.table import Table

    index = {c.key: i for i, c in enumerate(STAGE_COLUMNS)}
    keep = list(range(len(headers)))
    unbounded = console.options.update_width(1_000_000)
    for key in (None, *DROP_ORDER):
        if key is not None:
            keep.remove(index[key])
        t = Table(title=None)
        for i in keep:
            t.add_column(headers[i])
        for line in cells:
            t.add_row(*(_rich_escape(line[i]) for i in keep))
        # measured without the console's bound, which would clamp it to the width
        if console.measure(t, options=unbounded).maximum <= console.width:
            break
    return keep


_FIGURE = re.compile(r"[-+]?[\d.,]+(?:[%a-zµ]{0,2}|[hm]\d\d[ms]\d\ds|m\d\ds)?(?: / [\d,]+)?|-")


def numeric_column(rows: Sequence[Sequence[Any]], index: int) -> bool:
    """Whether a column of formatted cells holds figures (right-aligned) rather than text."""
    cells = [str(row[index]) for row in rows if index < len(row)]
    return (
        bool(cells)
        and all(_FIGURE.fullmatch(cell) for cell in cells)
        and any(cell != "-" for cell in cells)
    )


def _dead_letter_cells(row: Mapping[str, Any]) -> list[str]:
    example = str(row["example"])
    if len(example) > 80:
        example = example[:77] + "..."
    return [str(row["stage"]), str(row["error_type"]), f"{row['count']:,}", example]


def _rich_escape(text: str) -> str:
    """Text shown as it is: rich markup escaped, control characters made visible."""
    from rich.markup import escape

    return escape(escape_controls(text))


# ------------------------------------------------------------------------ markdown


def _md(text: Any) -> str:
    """One markdown table cell: pipes escaped, one line, no control characters."""
    return escape_controls(str(text).replace("\n", " ")).replace("|", "\\|")


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], right: bool = True) -> str:
    head = "| " + " | ".join(_md(h) for h in headers) + " |"
    align = (
        "|"
        + "|".join(
            ("---:" if right and numeric_column(rows, i) else "---") for i in range(len(headers))
        )
        + "|"
    )
    body = ["| " + " | ".join(_md(c) for c in row) + " |" for row in rows]
    return "\n".join([head, align, *body])


def render_markdown(report: Report) -> str:
    """The report as GitHub-flavoured markdown: headings and pipe tables, for a ticket."""
    parts = [f"## minigun report: {_md(report.title)}", ""]
    parts.append(_md_table(["", ""], report.overview, right=False))
    parts += ["", "### Stages", ""]
    headers, cells = stage_cells(report)
    parts.append(_md_table(headers, cells) if cells else "No stage figures in this result.")
    if cells and report.bottleneck:
        parts += ["", "◀ marks the bottleneck."]
    parts += ["", "### Bottleneck", ""]
    parts += [_md(note) for note in report.bottleneck_notes]
    if report.busiest:
        parts += [
            "",
            _md_table(list(report.busiest[0]), [list(r.values()) for r in report.busiest]),
        ]
    parts += ["", "### Dead letters by stage and error type", ""]
    if report.dead_letters:
        parts.append(
            _md_table(
                ["stage", "error type", "count", "example"],
                [_dead_letter_cells(r) for r in report.dead_letters],
            )
        )
        parts += ["", _md(report.dead_letters_note or "")]
    else:
        parts.append("None.")
    parts += ["", "### Runner attempts", ""]
    if report.attempts:
        parts.append(
            _md_table(list(report.attempts[0]), [list(r.values()) for r in report.attempts])
        )
    else:
        parts.append(_md(report.attempts_note or ""))
    return "\n".join(parts) + "\n"
