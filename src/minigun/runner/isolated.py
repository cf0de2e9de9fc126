"""``run_isolated``: attempts, retries and the outcome, around :func:`run_child`.

This is the one entry point every adapter and the CLI use. It never imports the
engine: the pipeline only ever exists in the child, so a pipeline that forks, leaks or
crashes cannot take the orchestrator's worker down with it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from minigun._text import escape_controls
from minigun.exit_codes import ExitCode
from minigun.runner.cancel import Cancellation
from minigun.runner.logs import LogLine, LogTail
from minigun.runner.outcome import AttemptRecord, RunOutcome, status_for
from minigun.runner.process import run_child
from minigun.runner.retry import backoff_delay
from minigun.runner.spawn import Spawned
from minigun.runner.spec import RunSpec
from minigun.runner.warm import WarmChild

__all__ = ["run_isolated"]

OnLog = Callable[[LogLine], object]


def run_isolated(
    spec: RunSpec,
    *,
    on_log: OnLog | None = None,
    cancel_event: threading.Event | None = None,
    on_progress: Callable[[dict[str, Any]], object] | None = None,
    warm: WarmChild | None = None,
) -> RunOutcome:
    """Run ``spec`` in a child process group and return how it ended.

    Blocks until the last attempt is over. ``on_log`` receives every line the child
    prints (a :class:`~minigun.runner.logs.LogLine`, i.e. a ``str`` with a
    ``.stream``) as soon as it is complete, plus the runner's own messages (one per
    attempt with its exit code, retries, kills). Setting ``cancel_event`` -- or
    SIGTERM/SIGINT delivered to this process when called from the main thread -- ends
    the run through the same group tear-down as a timeout and returns 143 (130 after
    SIGINT); a second signal skips the grace period. Cancellation also cuts a
    back-off wait short and is never retried. ``warm`` is a child started ahead (see
    :mod:`minigun.runner.warm`): the first attempt uses it if it fits ``spec``, and it
    is ended otherwise; it is never left running.
    """
    if not isinstance(spec, RunSpec):
        if warm is not None:
            warm.discard()
        raise TypeError(f"run_isolated() needs a RunSpec, got {type(spec).__name__}")
    try:
        return _run_attempts(spec, on_log, cancel_event, on_progress, warm)
    finally:
        if warm is not None:
            warm.discard()


def _run_attempts(
    spec: RunSpec,
    on_log: OnLog | None,
    cancel_event: threading.Event | None,
    on_progress: Callable[[dict[str, Any]], object] | None,
    warm: WarmChild | None,
) -> RunOutcome:
    started = time.monotonic()
    tail = LogTail()

    def emit(line: LogLine) -> None:
        tail.add(line)
        if on_log is not None:
            on_log(line)

    def say(message: str) -> None:
        emit(LogLine(message, "runner"))

    retryable = spec.retryable_codes
    env = spec.child_env()
    attempt = 0
    exit_code: int = ExitCode.FAILED
    result: dict[str, Any] | None = None
    cancelled = False
    history: list[AttemptRecord] = []
    with Cancellation(cancel_event) as cancellation:
        while True:
            if cancellation.requested:  # before (re)starting: don't spawn just to kill
                cancellation.consume()
                exit_code, cancelled = cancellation.exit_code, True
                say(f"minigun: cancelled before attempt {attempt + 1}: exit {int(exit_code)}")
                break
            attempt += 1
            spawned = warm.claim(spec.command(), env, spec.cwd) if warm is not None else None
            exit_code, result, elapsed, cancelled = _attempt(
                spec, env, emit, cancellation, on_progress, spawned
            )
            history.append(AttemptRecord(attempt, int(exit_code), elapsed, cancelled))
            say(
                f"minigun: attempt {attempt}/{spec.retries + 1} of {spec.pipeline}"
                f" exited {int(exit_code)} ({ExitCode.describe(exit_code)}) after {elapsed:.2f}s"
            )
            if cancelled or exit_code not in retryable or attempt > spec.retries:
                break
            delay = backoff_delay(
                attempt,
                delay=spec.retry_delay,
                backoff=spec.retry_backoff,
                max_delay=spec.max_retry_delay,
            )
            say(f"minigun: retrying in {delay:.2f}s")
            cancellation.wait(delay)  # a cancel here is caught at the top of the loop
    return RunOutcome(
        exit_code=exit_code,
        status=status_for(exit_code),
        attempts=attempt,
        duration=time.monotonic() - started,
        result=result,
        log_tail=tail.text(),
        retryable=exit_code in retryable and not cancelled,
        cancelled=cancelled,
        history=tuple(history),
    )


def _attempt(
    spec: RunSpec,
    env: dict[str, str],
    emit: Callable[[LogLine], None],
    cancellation: Cancellation,
    on_progress: Callable[[dict[str, Any]], object] | None,
    spawned: Spawned | None,
) -> tuple[int, dict[str, Any] | None, float, bool]:
    """One child, start to end: ``(exit_code, result, seconds, cancelled)``.

    The result comes back on the child's record channel, so an attempt leaves no file
    behind, even when this process is SIGKILLed.
    """
    try:
        child = run_child(
            spec.command(),
            spec=spec.child_spec(),
            env=env,
            cwd=spec.cwd,
            timeout=spec.timeout,
            grace=spec.grace,
            on_line=emit,
            cancellation=cancellation,
            on_progress=on_progress,
            spawned=spawned,
        )
    except OSError as exc:
        # A missing interpreter or cwd is configuration: retrying won't fix it.
        # Anything else (EAGAIN, ENOMEM) may pass.
        missing = isinstance(exc, (FileNotFoundError, PermissionError, NotADirectoryError))
        what = escape_controls(f"{spec.python or 'python'}: {exc}")
        emit(LogLine(f"minigun: error: cannot start {what}", "runner"))
        return (ExitCode.USAGE if missing else ExitCode.FAILED), None, 0.0, False
    return (
        child.exit_code,
        agree(child.result, child.exit_code),
        child.duration,
        (child.ended_by == "cancel"),
    )


def agree(result: dict[str, Any] | None, exit_code: int) -> dict[str, Any] | None:
    """The child's result, made to tell the same story as the exit code.

    The child records why it stopped (it is told about a timeout before the group is
    signalled), so the two normally agree already. When the runner had to decide
    alone -- the group was SIGKILLed at the end of grace after the child had sent a
    result, or the child exited with a code outside the contract -- the exit code is
    the truth and the result says so, keeping the child's own view under ``child``.
    """
    if result is None or result.get("exit_code") == int(exit_code):
        return result
    fixed = dict(result)
    fixed["child"] = {"status": result.get("status"), "exit_code": result.get("exit_code")}
    fixed["exit_code"] = int(exit_code)
    fixed["status"] = status_for(exit_code)
    fixed["ok"] = exit_code == ExitCode.OK
    return fixed
