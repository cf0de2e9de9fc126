"""Showing a running pipeline: a rich bar or HUD on a terminal, log lines elsewhere.

Reporters are fed the engine's live ``snapshot()`` (the shape of the result JSON's
``stats``) a few times a second and decide themselves how often to show it. On a
terminal the bar and the HUD redraw in place; off a terminal (an orchestrator's log)
redrawing makes no sense, so one line (or one table, for ``--hud``) is written every
few seconds instead. rich is imported only when a terminal reporter is built.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, TextIO

from minigun.child.channel import progress_summary

__all__ = ["LOG_INTERVAL", "Reporter", "graph_line", "make_reporter"]

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
    on_quit: Callable[[], object] | None = None,
) -> Reporter:
    """Pick the reporter: ``progress=None`` means "on" (bar on a TTY, lines otherwise).

    The isolated ``minigun run`` feeds it the snapshots its child sends; an in-process
    run feeds it the engine's own. ``on_quit`` is called when ``q`` is pressed in the
    live HUD (the caller stops the run as SIGTERM would).
    """
    stream = stream or sys.stderr
    tty = stream.isatty()
    if hud:
        if tty:
            return _LiveHud(label, stream, on_quit)
        return _TableLog(label, stream, interval)
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


def graph_line(snapshot: dict[str, Any]) -> str:
    """The stage graph in one line: ``numbers → parse → load``, branches after commas.

    Each stage's ``downstream`` is in the snapshot; a chain is followed while it is
    linear, and every fan-out or join starts a new segment, so a small graph reads at
    a glance and a large one stays one line.
    """
    stages = snapshot.get("stages") or {}
    down = {name: list(stage.get("downstream") or []) for name, stage in stages.items()}
    ups: dict[str, int] = {}
    for targets in down.values():
        for target in targets:
            ups[target] = ups.get(target, 0) + 1
    segments: list[str] = []
    drawn: set[tuple[str, str]] = set()
    for start in stages:
        for first in down.get(start, []):
            if (start, first) in drawn:
                continue
            chain, current, nxt = [start], start, first
            while (current, nxt) not in drawn:
                drawn.add((current, nxt))
                chain.append(nxt)
                following = down.get(nxt, [])
                if len(following) != 1 or ups.get(nxt, 0) != 1:
                    break
                current, nxt = nxt, following[0]
            segments.append(" → ".join(chain))
    return ", ".join(segments)


def _stage_table(label: str, snapshot: dict[str, Any], note: str = "") -> Any:
    from rich.table import Table

    title = f"{label} — {_summary(snapshot)}"
    caption = " · ".join(part for part in (graph_line(snapshot), note) if part)
    table = Table(title=title, title_justify="left", caption=caption or None)
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
        self._print(snapshot)

    def final(self, stats: dict[str, Any]) -> None:
        """The finished run's table, whenever the last one was printed."""
        self._print(stats)

    def _print(self, snapshot: dict[str, Any]) -> None:
        from rich.console import Console

        Console(file=self.stream, width=120, force_terminal=False).print(
            _stage_table(self.label, snapshot)
        )
        self.stream.flush()


class _LiveHud:
    """``--hud`` on a terminal: the stage table redrawn in place; ``q`` stops the run."""

    active = True

    def __init__(
        self, label: str, stream: TextIO, on_quit: Callable[[], object] | None = None
    ) -> None:
        from rich.console import Console
        from rich.live import Live

        self.label = label
        self.note = "q: stop" if on_quit is not None else ""
        self.on_quit = on_quit
        self.keys = _KeyWatcher(self._key) if on_quit is not None else None
        self.live = Live(console=Console(file=stream), refresh_per_second=4, transient=False)
        self.live.start()
        if self.keys is not None:
            self.keys.start()

    def _key(self, key: str) -> None:
        if key in ("q", "Q") and self.on_quit is not None:
            self.note = "stopping: draining in-flight items"
            self.on_quit()

    def update(self, snapshot: dict[str, Any]) -> None:
        self.live.update(_stage_table(self.label, snapshot, self.note))

    def final(self, stats: dict[str, Any]) -> None:
        """The finished run's figures: the table stays on screen showing them."""
        self.update(stats)

    def close(self) -> None:
        if self.keys is not None:
            self.keys.stop()
        self.live.stop()


class _KeyWatcher:
    """Reads single key presses from the terminal on stdin while a live display runs.

    The terminal is put in cbreak mode (keys arrive one by one, unechoed; Ctrl-C still
    sends SIGINT) and restored on :meth:`stop`. Without a terminal on stdin (a pipe, a
    cron job) it does nothing: there is nobody to press a key.
    """

    def __init__(self, on_key: Callable[[str], object]) -> None:
        self.on_key = on_key
        self.fd = -1
        self.saved: Any = None
        self.done = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        try:
            if not sys.stdin.isatty():
                return
            import termios
            import tty

            self.fd = sys.stdin.fileno()
            self.saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd)
        except (ImportError, OSError, ValueError):
            self.saved = None
            return
        self.thread = threading.Thread(target=self._read, name="minigun-hud-keys", daemon=True)
        self.thread.start()

    def _read(self) -> None:
        import select

        while not self.done.is_set():
            try:
                ready, _, _ = select.select([self.fd], [], [], 0.1)
                if ready:
                    key = os.read(self.fd, 1).decode(errors="replace")
                    if key:
                        self.on_key(key)
            except (OSError, ValueError):
                return

    def stop(self) -> None:
        self.done.set()
        if self.thread is not None:
            self.thread.join(1.0)
        if self.saved is not None:
            import termios

            try:
                termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)
            except (OSError, termios.error):
                pass
            self.saved = None


class _Bar:
    """The default on a terminal: an indeterminate bar with counts and rate."""

    active = True

    def __init__(self, label: str, stream: TextIO) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self.label = label
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[summary]}"),
            TimeElapsedColumn(),
            console=Console(file=stream),
            # Gone when the run ends: the summary line says it all, and a bar redrawn
            # after it would show the last snapshot's (stale) counts.
            transient=True,
        )
        self.task = self.progress.add_task(label, total=None, summary="starting")
        self.progress.start()

    def update(self, snapshot: dict[str, Any]) -> None:
        self.progress.update(self.task, summary=_summary(snapshot))

    def final(self, stats: dict[str, Any]) -> None:
        """The bar gives way to the finished run's stage table, under the summary line."""
        self.progress.stop()
        self.progress.console.print(_stage_table(self.label, stats))

    def close(self) -> None:
        self.progress.stop()
