"""The child's end of the record channel: log records, progress and the result.

Everything minigun itself has to tell the runner goes here as structured records
(:mod:`minigun.runner.protocol`), never mixed into the user's stdout and stderr. Each
record is one ``os.write`` of one line; a record small enough (``PIPE_BUF``, 4 KiB on
Linux) is atomic even when a forked child writes at the same moment. A write that
fails because the runner is gone is dropped silently: the lifetime guard, not a
write error, decides what happens then.

:class:`ChannelHandler` sends Python ``logging`` records -- the user's and minigun's --
with their level, logger name and time, so they land in the orchestrator's log at
their own level. Uncaught exceptions (main thread or any other) become ERROR records
with their traceback.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from types import TracebackType
from typing import Any

from minigun.runner import protocol

__all__ = ["Channel", "ChannelHandler", "ChannelReporter"]


class Channel:
    """Writes records to the runner; never raises."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.broken = False
        self._lock = threading.Lock()

    def send(self, record: dict[str, Any]) -> None:
        if self.broken:
            return
        data = memoryview(protocol.encode(record))
        with self._lock:
            try:
                while data:
                    data = data[os.write(self.fd, data) :]
            except OSError:
                self.broken = True

    def log(self, level: int, message: str, logger: str = "minigun") -> None:
        self.send(protocol.log_record(level, message, logger=logger, created=time.time()))

    def progress(self, snapshot: dict[str, Any]) -> None:
        self.send(protocol.progress_record(snapshot))

    def result(self, result: dict[str, Any]) -> None:
        self.send(protocol.result_record(result))


class ChannelHandler(logging.Handler):
    """A logging handler that forwards records over the channel, level and time intact."""

    def __init__(self, channel: Channel) -> None:
        super().__init__()
        self.channel = channel
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
        except Exception:  # a bad format string must not lose the record entirely
            message = str(record.msg)
        self.channel.send(
            protocol.log_record(record.levelno, message, logger=record.name, created=record.created)
        )


class ChannelReporter:
    """The progress reporter of a runner's child.

    Sends a live snapshot a few times a second (the runner's caller may draw it: the
    CLI's bar or HUD on a terminal) and, unless progress is off, one INFO progress line
    every ``interval`` seconds for orchestrator logs, which cannot redraw a bar.
    """

    active = True
    snapshot_interval = 0.25

    def __init__(self, channel: Channel, label: str, *, lines: bool, interval: float) -> None:
        self.channel = channel
        self.label = label
        self.lines = lines
        self.interval = interval
        self.started = time.monotonic()
        self._next_snapshot = 0.0
        self._next_line = self.started + interval

    def update(self, snapshot: dict[str, Any]) -> None:
        now = time.monotonic()
        if now >= self._next_snapshot:
            self._next_snapshot = now + self.snapshot_interval
            self.channel.progress(self._named(snapshot))
        if self.lines and now >= self._next_line:
            self._next_line = now + self.interval
            self.channel.log(
                logging.INFO,
                f"{self.label}: {now - self.started:.0f}s, {progress_summary(snapshot)}",
                "minigun.progress",
            )

    def final(self, snapshot: dict[str, Any]) -> None:
        self.channel.progress(self._named(snapshot))

    def _named(self, snapshot: dict[str, Any]) -> dict[str, Any]:
        """The snapshot with the pipeline's class name: the runner's caller knows only
        the target it was given (a file path, maybe), and its metrics need the name."""
        snapshot["pipeline"] = self.label
        return snapshot

    def close(self) -> None:
        pass


def progress_summary(snapshot: dict[str, Any]) -> str:
    """``produced N[ of T (P%)], consumed N, R items/s[, bottleneck S][, about Ns left]``
    from a stats snapshot; the total and the time left when every producer knows its
    size (see :func:`time_left`)."""
    produced = int(snapshot.get("total_produced", 0) or 0)
    total = expected_total(snapshot)
    of = f" of {total:,} ({produced / total:.0%})" if total else ""
    parts = [
        f"produced {produced:,}{of}",
        f"consumed {snapshot.get('total_consumed', 0):,}",
        f"{float(snapshot.get('throughput') or 0):,.1f} items/s",
    ]
    if snapshot.get("bottleneck"):
        parts.append(f"bottleneck {snapshot['bottleneck']}")
    left = time_left(snapshot)
    if left is not None:
        parts.append(f"about {_duration(left)} left")
    return ", ".join(parts)


def expected_total(snapshot: dict[str, Any]) -> int | None:
    """The items all producers will yield, if every one of them knows (else None)."""
    stages = (snapshot.get("stages") or {}).values()
    producers = [s for s in stages if s.get("kind") == "producer"]
    totals = [s.get("expected") for s in producers]
    if not totals or any(t is None for t in totals):
        return None
    return sum(int(t) for t in totals)


def time_left(snapshot: dict[str, Any]) -> float | None:
    """Seconds until the producers are done at the rate so far (an estimate)."""
    total = expected_total(snapshot)
    produced = int(snapshot.get("total_produced", 0) or 0)
    duration = float(snapshot.get("duration") or 0)
    if not total or produced <= 0 or duration <= 0:
        return None
    return max(0.0, (total - produced) * duration / produced)


def _duration(left: float) -> str:
    seconds = round(left)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def install_logging(channel: Channel) -> None:
    """Route ``logging`` and uncaught exceptions to the channel.

    The root logger gets the channel handler (replacing nothing the user set up: the
    target is not imported yet) and level INFO, or ``MINIGUN_LOG_LEVEL``: a task's log
    is where INFO belongs, as in every orchestrator's own task runner.
    """
    root = logging.getLogger()
    root.addHandler(ChannelHandler(channel))
    level = os.environ.get("MINIGUN_LOG_LEVEL", "INFO").upper()
    root.setLevel(protocol.LEVELS.get(level, logging.INFO))

    def excepthook(
        exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
    ) -> None:
        import traceback

        text = "".join(traceback.format_exception(exc_type, exc, tb)).rstrip()
        channel.log(logging.ERROR, text, "minigun.child")

    def thread_excepthook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit or args.exc_value is None:
            return
        import traceback

        name = args.thread.name if args.thread is not None else "?"
        text = "".join(
            traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback)
        ).rstrip()
        channel.log(logging.ERROR, f"exception in thread {name}:\n{text}", "minigun.child")

    sys.excepthook = excepthook
    threading.excepthook = thread_excepthook
