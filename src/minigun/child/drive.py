"""Driving one in-process run to its end: signals, timeout, drain deadline, progress, result.

This is what runs inside the runner's child, behind ``minigun run --in-process`` and
behind ``minigun replay``. The run is started in the background so that this thread
stays free to watch for signals and to feed progress. Where its messages, progress and
result go is the caller's :class:`RunOutput`: the runner's record channel in the
child, the terminal and a result file from the CLI.

Every early end goes through ``handle.stop(exit_code=…)``, whatever caused it: the
first SIGTERM (143) or SIGINT (130), a timeout (124: ``--timeout`` in-process, or the
runner's own timeout, which it announces on the control channel before it signals the
group). Producers stop, in-flight items drain, and the engine returns a result with
that code, written like any other and recording the stop (``stop``: what asked, the
grace, whether the drain finished). If the drain outlasts its deadline, or a second
signal arrives, the process exits with that code at once after writing a result built
from the live stats (``stop.drained`` false): ``after_run`` hooks do not run then,
because "at once" is what was asked for. In the runner's child the deadline is a little
shorter than ``grace``, so that result reaches the runner before its SIGKILL would.

A dead runner is not handled here: the child's lifetime guard ends the whole group
within a second (:mod:`minigun.child.guard`).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any, Protocol

from minigun._signals import install_stop_handlers, restore_handlers
from minigun.exit_codes import ExitCode

__all__ = ["DriveOptions", "RunOutput", "StopRequest", "drive", "stopped_result"]

#: How often the driver wakes to check signals and feed the progress reporter.
TICK = 0.1

_INFO, _WARNING, _ERROR = 20, 30, 40


class RunOutput(Protocol):
    """Where a driven run's messages and result go."""

    def say(self, message: str, level: int = _INFO) -> None:
        """One status line (``minigun: …`` on a terminal, a log record in the child)."""

    def failure(self, text: str) -> None:
        """A failed run's traceback, as it is (an ERROR record in the child)."""

    def result(self, data: dict[str, Any]) -> None:
        """The result JSON, once."""


class Reporter(Protocol):
    active: bool

    def update(self, snapshot: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class DriveOptions:
    label: str
    grace: float = 30.0
    timeout: float | None = None
    #: Leave this much of ``grace`` to hand over the result before the runner's SIGKILL.
    grace_margin: float = 0.0


class StopRequest:
    """Why and how the run is being stopped: signals, a timeout, the runner's message.

    The first request wins and sets the exit code. A second *signal* means "now". The
    runner announces its timeout on the control channel and then sends SIGTERM to the
    group; that SIGTERM belongs to the same request and is not a second one.
    """

    def __init__(self, peek: Callable[[], None] | None = None) -> None:
        #: Called first thing when a signal arrives: reads announcements already sent.
        self.peek = peek
        self.code: ExitCode | None = None
        self.reason: str | None = None
        self.urgent = False
        self._absorb_sigterm = False
        self._lock = threading.RLock()
        self._previous: dict[int, Any] = {}

    def request(self, code: ExitCode, reason: str, *, announced: bool = False) -> None:
        with self._lock:
            if self.code is None:
                self.code, self.reason = code, reason
                self._absorb_sigterm = announced

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.peek is not None:
            try:
                self.peek()
            except Exception:
                pass
        with self._lock:
            if self.code is None:
                self.code = _code_for(signum)
                self.reason = signal.Signals(signum).name
                return
            if self._absorb_sigterm and signum == signal.SIGTERM:
                self._absorb_sigterm = False
                return
            self.urgent = True

    def __enter__(self) -> StopRequest:
        self._previous = install_stop_handlers(self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        restore_handlers(self._previous)


def _code_for(signum: int) -> ExitCode:
    return ExitCode.INTERRUPTED if signum == signal.SIGINT else ExitCode.TERMINATED


def drive(
    start: Callable[[], Any],
    options: DriveOptions,
    *,
    output: RunOutput,
    reporter: Reporter,
    stop: StopRequest | None = None,
) -> int:
    """Start a background run with ``start()``, see it to its end, return the exit code.

    ``start`` returns an engine ``RunHandle``; it may raise
    ``PipelineDefinitionError`` (a usage error the caller presents). ``stop`` lets the
    caller request a stop from elsewhere (the child's control channel).
    """
    stop = stop if stop is not None else StopRequest()
    with stop:
        handle = start()
        try:
            result = _wait(handle, stop, options, output, reporter)
            if reporter.active and hasattr(reporter, "final"):
                _quietly(reporter.final, result.stats.to_dict())
        finally:
            _quietly(reporter.close)
    data = result.to_dict()
    if stop.code is not None:
        data["stop"] = _stop_record(stop, options, drained=True)
    output.result(data)
    report(options.label, result, output)
    return int(result.exit_code)


def _wait(
    handle: Any, stop: StopRequest, options: DriveOptions, output: RunOutput, reporter: Reporter
) -> Any:
    started = time.monotonic()
    stopping = False
    drain_until = 0.0
    while True:
        result = handle.wait(timeout=TICK)
        if result is not None:
            return result
        now = time.monotonic()
        if options.timeout is not None and now - started >= options.timeout:
            stop.request(ExitCode.TIMEOUT, "timeout")
        if not stopping and stop.code is not None:
            stopping = True
            handle.stop(exit_code=stop.code)
            drain_until = now + max(0.0, options.grace - options.grace_margin)
            output.say(_stopping_message(stop, options), _WARNING)
        elif stopping and (stop.urgent or now >= drain_until):
            _abandon(handle, stop, options, output)
        if reporter.active:
            try:
                reporter.update(handle.snapshot())
            except Exception:  # a progress display must never end a run
                pass


def _stopping_message(stop: StopRequest, options: DriveOptions) -> str:
    cause = (
        f"timed out after {options.timeout:g}s"
        if stop.reason == "timeout" and options.timeout is not None
        else "timed out"
        if stop.reason == "timeout"
        else f"{stop.reason} received"
    )
    again = " (send again to exit at once)" if stop.reason != "timeout" else ""
    return (
        f"{cause}: stopping {options.label}, draining in-flight items"
        f" for up to {options.grace:g}s{again}"
    )


def _abandon(handle: Any, stop: StopRequest, options: DriveOptions, output: RunOutput) -> None:
    """Exit now, after writing the result we can: the live stats, ``drained`` false."""
    assert stop.code is not None
    why = "second signal" if stop.urgent else f"did not drain within {options.grace:g}s"
    output.say(f"{options.label} {why}: exiting now ({int(stop.code)})", _WARNING)
    # Coroutines of async stages can be cancelled, unlike threads: their finally blocks
    # and async with exits run (connections closed, not dropped) in part of the margin
    # left before the runner's SIGKILL.
    _quietly(handle.cancel_in_flight, _cancel_wait(options))
    try:
        snapshot = handle.snapshot()
    except Exception:
        snapshot = {}
    output.result(stopped_result(stop, options, snapshot, drained=False))
    _hard_exit(stop.code)


#: Seconds in-flight coroutines get to unwind when the drain is cut short and no
#: runner will SIGKILL this process (``minigun run --in-process``).
CANCEL_WAIT = 1.0


def _cancel_wait(options: DriveOptions) -> float:
    """Half the margin the runner leaves before its SIGKILL, or :data:`CANCEL_WAIT`."""
    return options.grace_margin / 2 if options.grace_margin > 0 else CANCEL_WAIT


def stopped_result(
    stop: StopRequest, options: DriveOptions, stats: dict[str, Any], *, drained: bool
) -> dict[str, Any]:
    """The result of a run stopped without a finished engine result: ``stats`` are the
    live figures (or none, when the stop came before the pipeline started)."""
    from minigun.core.result import RESULT_SCHEMA

    assert stop.code is not None
    return {
        "schema": RESULT_SCHEMA,
        "pipeline": options.label,
        "status": "timeout" if stop.code == ExitCode.TIMEOUT else "stopped",
        "ok": False,
        "exit_code": int(stop.code),
        "duration": stats.get("duration"),
        "error": None,
        "stop": _stop_record(stop, options, drained=drained),
        "stats": stats,
    }


def _stop_record(stop: StopRequest, options: DriveOptions, *, drained: bool) -> dict[str, Any]:
    return {"requested_by": stop.reason, "grace": options.grace, "drained": drained}


def _hard_exit(code: int) -> None:
    """Leave now: engine threads may still be stuck in a stage, so skip joining them.

    Under a runner, the runner SIGKILLs whatever is left of the group as soon as this
    process has exited (and if the runner is gone, the lifetime guard already has).
    """
    for stream in (sys.stdout, sys.stderr):
        _quietly(stream.flush)
    os._exit(int(code))


def report(label: str, result: Any, output: RunOutput) -> None:
    """One summary line; the error with its traceback (ERROR) when the run failed."""
    from minigun.core.result import summary_line

    line = summary_line(result, label)
    output.say(line, _INFO if result.exit_code in (ExitCode.OK, ExitCode.SKIPPED) else _WARNING)
    error = result.error
    # A failure in user code is not bad input: its traceback belongs in the log.
    if error is not None and result.status == "failed":
        text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        output.failure(text.rstrip())


def _quietly(fn: Callable[..., Any], *args: Any) -> None:
    try:
        fn(*args)
    except Exception:
        pass
