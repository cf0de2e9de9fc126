"""Driving one in-process run to its end: signals, timeout, progress, result file.

This is the code that runs *inside* the runner's child (``minigun run --in-process``)
and behind ``minigun replay``. The run is started in the background so this thread
stays free to watch for signals and to draw progress.

Every early end goes through ``handle.stop(exit_code=…)``, whatever caused it: the
first SIGTERM (143) or SIGINT (130), or ``--timeout`` (124). Producers stop,
in-flight items drain, and the engine returns a result with status ``stopped`` that
is written like any other. If the drain outlasts ``grace``, or a second signal
arrives, the process exits at once with that code and no result file: the runner
would SIGKILL it at that point anyway. If the runner itself dies (SIGKILL cannot be
forwarded), the child notices it was orphaned and stops the same way; then, at the end
of grace, it kills its own process group, since no runner is left to do it.
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
from typing import Any

from minigun.cli._output import say, write_json_atomic
from minigun.cli._progress import FinalSnapshot, make_reporter
from minigun.exit_codes import ExitCode

__all__ = ["DriveOptions", "drive"]

#: How often the driver wakes to check signals and feed the progress reporter.
TICK = 0.1

#: How often a child started by the runner checks that its runner is still alive.
RUNNER_POLL = 0.5


@dataclass(frozen=True)
class DriveOptions:
    label: str
    grace: float = 30.0
    timeout: float | None = None
    result_file: str | None = None
    progress: bool | None = None
    hud: bool = False


class _Signals:
    """SIGTERM/SIGINT while a run is in flight: remember the first, die on the second."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.orphaned = False
        self.previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
            return
        code = _code_for(self.signum)
        os.write(2, f"minigun: second signal: exiting now ({int(code)})\n".encode())
        _hard_exit(code)

    def __enter__(self) -> _Signals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous = signal.getsignal(sig)
                if previous is None or previous == signal.SIG_IGN:
                    continue
                self.previous[sig] = previous
                signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self.previous.items():
            signal.signal(sig, previous)


def _code_for(signum: int) -> ExitCode:
    return ExitCode.INTERRUPTED if signum == signal.SIGINT else ExitCode.TERMINATED


def _hard_exit(code: int, *, take_group: bool = False) -> None:
    """Leave now: engine threads may still be stuck in a stage, so skip joining them.

    With ``take_group`` (the runner that would have cleaned up is gone) and when this
    process leads its group, the whole group is SIGKILLed, this process included, so
    that nothing the run started is left behind.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    if take_group and os.getpgrp() == os.getpid():
        os.killpg(os.getpgrp(), signal.SIGKILL)
    os._exit(int(code))


def _watch_runner(signals: _Signals) -> None:
    """Stop the run if the runner that started this process dies.

    A runner killed with SIGKILL cannot forward anything to its child's process group,
    which lives in its own session and would run on unsupervised. The runner names
    itself in ``MINIGUN_RUNNER_PID``; when this process's parent is no longer that pid
    (it was reparented), the run is stopped as if by SIGTERM. The variable is removed
    from the environment so that processes this run starts do not inherit it.
    """
    from minigun.runner.spec import RUNNER_PID_ENV

    raw = os.environ.pop(RUNNER_PID_ENV, None)
    if raw is None or not raw.isdigit() or int(raw) != os.getppid():
        return  # not started by a runner (or already orphaned at start: nothing to watch)
    runner = int(raw)

    def watch() -> None:
        while os.getppid() == runner:
            time.sleep(RUNNER_POLL)
        signals.orphaned = True
        if signals.signum is None:
            signals.signum = signal.SIGTERM
        say(f"runner (pid {runner}) is gone: stopping")

    threading.Thread(target=watch, name="minigun-runner-watch", daemon=True).start()


def drive(start: Callable[[], Any], options: DriveOptions) -> int:
    """Start a background run with ``start()``, see it to its end, return the exit code.

    ``start`` returns an engine ``RunHandle``; it may raise
    ``PipelineDefinitionError`` (a usage error the caller presents).
    """
    with _Signals() as signals:
        _watch_runner(signals)
        handle = start()
        reporter = make_reporter(options.label, progress=options.progress, hud=options.hud)
        try:
            result = _wait(handle, signals, options, reporter.update if reporter.active else None)
            if reporter.active and isinstance(reporter, FinalSnapshot):
                reporter.final(result.stats.to_dict())
        finally:
            reporter.close()
    if options.result_file:
        write_json_atomic(options.result_file, result.to_dict())
    _report(options.label, result)
    return int(result.exit_code)


def _wait(
    handle: Any,
    signals: _Signals,
    options: DriveOptions,
    update: Callable[[dict[str, Any]], None] | None,
) -> Any:
    started = time.monotonic()
    stop_code: ExitCode | None = None
    drain_until = 0.0
    while True:
        result = handle.wait(timeout=TICK)
        if result is not None:
            return result
        now = time.monotonic()
        if stop_code is None:
            if signals.signum is not None:
                stop_code = _code_for(signals.signum)
                handle.stop(exit_code=stop_code)
                name = signal.Signals(signals.signum).name
                say(
                    f"{name} received: stopping {options.label}, draining in-flight items"
                    f" for up to {options.grace:g}s (send again to exit at once)"
                )
            elif options.timeout is not None and now - started >= options.timeout:
                stop_code = ExitCode.TIMEOUT
                handle.stop(exit_code=stop_code)
                say(f"timed out after {options.timeout:g}s: stopping {options.label}")
            drain_until = now + options.grace
        elif now >= drain_until:
            say(f"{options.label} did not drain within {options.grace:g}s: exiting now")
            _hard_exit(stop_code, take_group=signals.orphaned)
        if update is None:
            continue
        try:
            snapshot = handle.snapshot()
        except Exception:  # a progress display must never end a run
            continue
        update(snapshot)


def _report(label: str, result: Any) -> None:
    """One summary line on stderr; the error (with traceback) when the run failed."""
    data = result.to_dict()
    stats = data.get("stats") or {}
    say(
        f"{label} {result.status} in {float(result.duration):.2f}s"
        f" (exit {int(result.exit_code)}): produced {stats.get('total_produced', 0):,},"
        f" consumed {stats.get('total_consumed', 0):,}"
    )
    error = result.error
    # A failure in user code is not bad input: its traceback belongs in the log.
    if error is not None and result.status == "failed":
        text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        try:
            sys.stderr.write(text)
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
