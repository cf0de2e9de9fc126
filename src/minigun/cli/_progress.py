"""Showing a running pipeline: a rich bar or HUD on a terminal, log lines elsewhere.

Reporters are fed the engine's live ``snapshot()`` (the shape of the result JSON's
``stats``) a few times a second and decide themselves how often to show it. On a
terminal the bar and the HUD redraw in place; off a terminal (an orchestrator's log)
redrawing makes no sense, so one line (or one table, for ``--hud``) is written every
few seconds instead. rich is imported only when a terminal reporter is built.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Protocol, TextIO

from minigun.child.channel import progress_summary

__all__ = ["LOG_INTERVAL", "Reporter", "make_reporter"]

#: Seconds between progress lines when stderr is not a terminal.
LOG_INTERVAL = 5.0


class Reporter(Protocol):
    #: False for the silent reporter: the driver then skips taking snapshots at all.
    active: bool

    def update(self, snapshot: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


def make_reporter(
    label: str,
    *,
    progress: bool | None,
    hud: bool,
    stream: TextIO | None = None,
    interval: float = LOG_INTERVAL,
) -> Reporter:
    """Pick the reporter: ``progress=None`` means "on" (bar on a TTY, lines otherwise).

    The isolated ``minigun run`` feeds it the snapshots its child sends; an in-process
    run feeds it the engine's own.
    """
    stream = stream or sys.stderr
    tty = stream.isatty()
    if hud:
        return _LiveHud(label, stream) if tty else _TableLog(label, stream, interval)
    if progress is False:
        return _Silent()
    return _Bar(label, stream) if tty else _LineLog(label, stream, interval)


class _Silent:
    active = False

    def update(self, snapshot: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


_summary = progress_summary


class _LineLog:
    """One line every ``interval`` seconds: what an orchestrator's log can hold."""

    active = True

    def __init__(self, label: str, stream: TextIO, interval: float) -> None:
        self.label, self.stream, self.interval = label, stream, interval
        self.started = time.monotonic()
        self.next_at = self.started + interval

    def update(self, snapshot: dict[str, Any]) -> None:
        now = time.monotonic()
        if now < self.next_at:
            return
        self.next_at = now + self.interval
        try:
            self.stream.write(
                f"minigun: {self.label}: {now - self.started:.0f}s, {_summary(snapshot)}\n"
            )
            self.stream.flush()
        except (OSError, ValueError):  # a closed reader must not end the run
            self.active = False

    def close(self) -> None:
        pass


def _stage_table(label: str, snapshot: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(title=f"{label} — {_summary(snapshot)}", title_justify="left")
    for column in ("stage", "in", "out", "queued", "errors", "items/s", "p50", "p99", "util"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    bottleneck = snapshot.get("bottleneck")
    for name, stage in (snapshot.get("stages") or {}).items():
        marker = " ◀ bottleneck" if name == bottleneck else ""
        table.add_row(
            f"{name}{marker}",
            f"{stage.get('items_in', 0):,}",
            f"{stage.get('items_out', 0):,}",
            f"{stage.get('queued', 0):,}",
            f"{stage.get('errors', 0):,}",
            f"{float(stage.get('throughput') or 0):,.1f}",
            _ms(stage.get("latency_p50")),
            _ms(stage.get("latency_p99")),
            f"{float(stage.get('utilisation') or 0):.0%}",
        )
    return table


def _ms(seconds: Any) -> str:
    return "-" if seconds is None else f"{float(seconds) * 1000:.1f}ms"


class _TableLog(_LineLog):
    """``--hud`` off a terminal: the stage table every ``interval`` seconds."""

    def update(self, snapshot: dict[str, Any]) -> None:
        now = time.monotonic()
        if now < self.next_at:
            return
        self.next_at = now + self.interval
        from rich.console import Console

        Console(file=self.stream, width=120, force_terminal=False).print(
            _stage_table(self.label, snapshot)
        )
        self.stream.flush()


class _LiveHud:
    """``--hud`` on a terminal: the stage table redrawn in place."""

    active = True

    def __init__(self, label: str, stream: TextIO) -> None:
        from rich.console import Console
        from rich.live import Live

        self.label = label
        self.live = Live(console=Console(file=stream), refresh_per_second=4, transient=False)
        self.live.start()

    def update(self, snapshot: dict[str, Any]) -> None:
        self.live.update(_stage_table(self.label, snapshot))

    def close(self) -> None:
        self.live.stop()


class _Bar:
    """The default on a terminal: an indeterminate bar with counts and rate."""

    active = True

    def __init__(self, label: str, stream: TextIO) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[summary]}"),
            TimeElapsedColumn(),
            console=Console(file=stream),
            transient=False,
        )
        self.task = self.progress.add_task(label, total=None, summary="starting")
        self.progress.start()

    def update(self, snapshot: dict[str, Any]) -> None:
        self.progress.update(self.task, summary=_summary(snapshot))

    def close(self) -> None:
        self.progress.stop()
