"""The per-stage table of a run, made in one place.

:func:`stage_table` turns a result JSON (or a live stats snapshot) into one row per
stage with the columns of :data:`STAGE_COLUMNS`. Everything that shows a run's stages
reads its rows from here -- ``minigun report`` (text, markdown, HTML), the Prefect
table artifact, the Dagster output metadata, the Airflow XCom ``minigun_stages`` and
the metrics sinks -- so they all show the same columns with the same meaning, and a
column added here appears everywhere.

Rows hold raw values (counts as ints, rates and seconds as floats rounded to six
significant digits, ``None`` where a stage has no such figure: a producer has no
queue), so a platform can sort and chart them; :func:`format_cell` is how a human
reads them. This module imports nothing from the engine, the runner or the CLI.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "STAGE_COLUMNS",
    "Column",
    "dead_letter_breakdown",
    "error_type",
    "format_cell",
    "format_seconds",
    "stage_table",
    "stats_of",
]


@dataclass(frozen=True)
class Column:
    """One column of the stage table.

    ``key`` is the row key (the stats key where the engine records one), ``label`` the
    short header a table shows, ``type`` one of ``str``, ``int``, ``float``, ``unit``
    one of ``""``, ``items``, ``items/s``, ``seconds``, ``ratio`` (0 to 1, shown as a
    percentage), and ``help`` what it means (a metric's HELP, a column description).
    """

    key: str
    label: str
    type: str
    unit: str
    help: str


STAGE_COLUMNS: tuple[Column, ...] = (
    Column("stage", "stage", "str", "", "Stage name (a nested pipeline's stages: outer.inner)."),
    Column("kind", "kind", "str", "", "producer, processor, consumer, batch or custom."),
    Column("executor", "executor", "str", "", "Where the stage runs: inline, thread, fork..."),
    Column("workers", "workers", "int", "", "Threads or processes the stage runs on."),
    Column("items_in", "in", "int", "items", "Items the stage received."),
    Column("items_out", "out", "int", "items", "Items the stage emitted."),
    Column("processed", "processed", "int", "items", "Received items processed successfully."),
    Column("dropped", "dropped", "int", "items", "Received items dropped (returned None)."),
    Column("skipped", "skipped", "int", "items", "Received items skipped after an error."),
    Column("errors", "errors", "int", "items", "Calls that raised, retries included."),
    Column("failed", "failed", "int", "items", "Received items that failed the run."),
    Column("dead_letters", "dead letters", "int", "items", "Received items dead-lettered."),
    Column("retries", "retries", "int", "", "Retried calls."),
    Column("throughput", "items/s", "float", "items/s", "Items in (a producer: out) per s."),
    Column("latency_p50", "p50", "float", "seconds", "Median service time per item."),
    Column("latency_p95", "p95", "float", "seconds", "95th percentile service time per item."),
    Column("latency_p99", "p99", "float", "seconds", "99th percentile service time per item."),
    Column("busy_seconds", "busy", "float", "seconds", "Seconds spent on items, all workers."),
    Column("utilisation", "busy %", "float", "ratio", "busy / (workers x duration)."),
    Column("queued", "queued", "int", "items", "Items waiting in the stage's queue."),
    Column("queue_capacity", "queue size", "int", "items", "Capacity of the stage's queue."),
    Column("queue_fill", "queue fill", "float", "ratio", "queued / queue size."),
)  # fmt: skip

_KEYS = tuple(column.key for column in STAGE_COLUMNS)
_BY_KEY = {column.key: column for column in STAGE_COLUMNS}


def stats_of(data: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """The ``stats`` object of a result JSON; a snapshot (already stats) as it is."""
    if not isinstance(data, Mapping):
        return {}
    if isinstance(data.get("stages"), Mapping):
        return data
    stats = data.get("stats")
    return stats if isinstance(stats, Mapping) else {}


def stage_table(data: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """One row per stage of a result JSON or stats snapshot, keys in :data:`STAGE_COLUMNS` order.

    Every row has every column (``None`` where the stage has no such figure), so a
    platform's table gets one schema. ``queue_fill`` is computed here (``queued`` over
    ``queue_capacity``); the rest is read from the stats as recorded.
    """
    rows = []
    for name, stage in (stats_of(data).get("stages") or {}).items():
        if not isinstance(stage, Mapping):
            continue
        row: dict[str, Any] = {}
        for key in _KEYS:
            value = name if key == "stage" else stage.get(key)
            row[key] = _clean(_BY_KEY[key], value)
        queued, capacity = row["queued"], row["queue_capacity"]
        if queued is not None and capacity:
            row["queue_fill"] = _clean(_BY_KEY["queue_fill"], queued / capacity)
        rows.append(row)
    return rows


def _clean(column: Column, value: Any) -> Any:
    """A value of the column's type, or None (a malformed file must not break a table)."""
    if value is None:
        return None
    if column.type == "str":
        return str(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if column.type == "int":
        return int(value)
    return float(f"{float(value):.6g}")


def format_seconds(seconds: float | None) -> str:
    """A duration for people: ``640ns``, ``12.3µs``, ``1.25ms``, ``2.31s``, ``4m05s``."""
    if seconds is None:
        return "-"
    s = float(seconds)
    if s == 0:
        return "0"
    if s < 1e-6:
        return f"{s * 1e9:.0f}ns"
    if s < 1e-3:
        return f"{s * 1e6:.3g}µs"
    if s < 1:
        return f"{s * 1e3:.3g}ms"
    if s < 60:
        return f"{s:.3g}s"
    minutes, rest = divmod(round(s), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{rest:02d}s" if hours else f"{minutes}m{rest:02d}s"


def format_cell(key: str, value: Any) -> str:
    """How a person reads one cell of the stage table (``-`` for no figure)."""
    if value is None:
        return "-"
    column = _BY_KEY.get(key)
    if column is None or column.type == "str":
        return str(value)
    if column.unit == "ratio":
        return f"{float(value):.0%}"
    if column.unit == "seconds":
        return format_seconds(value)
    if column.type == "int":
        return f"{int(value):,}"
    return f"{float(value):,.1f}"


_TYPE_NAME = re.compile(r"[A-Za-z_][\w.]*")


def error_type(error: Any) -> str:
    """The exception type of a dead letter's ``error`` text (``"ValueError: odd 3"``)."""
    text = str(error or "").strip()
    head, sep, _ = text.partition(":")
    if sep and _TYPE_NAME.fullmatch(head):
        return head
    return "(unknown)"


def dead_letter_breakdown(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Dead letters counted by stage and error type, most frequent first.

    Each row: ``stage``, ``error_type``, ``count``, ``example`` (the first message seen,
    without the type). ``records`` are dead-letter records as in the result JSON or
    the JSON Lines file; only their ``stage`` and ``error`` are read.
    """
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for record in records:
        if not isinstance(record, Mapping):
            continue
        stage = str(record.get("stage") or "(unknown)")
        error = str(record.get("error") or "")
        kind = error_type(error)
        group = groups.get((stage, kind))
        if group is None:
            example = error.partition(":")[2].strip() if kind != "(unknown)" else error
            group = groups[(stage, kind)] = {
                "stage": stage,
                "error_type": kind,
                "count": 0,
                "example": example,
            }
        group["count"] += 1
    return sorted(groups.values(), key=lambda g: (-g["count"], g["stage"], g["error_type"]))
