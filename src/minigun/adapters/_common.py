"""What every adapter shares: building a RunSpec, running it cancellably, reading the outcome.

Nothing here imports an orchestrator or the engine. An adapter module is expected to
be a few dozen lines on top of this: platform configuration in, :func:`build_spec`,
:func:`run_cancellable`, then a branch on :func:`verdict` that raises or returns
whatever its platform understands.
"""

from __future__ import annotations

import enum
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from minigun.exit_codes import ExitCode
from minigun.report.table import STAGE_COLUMNS, stage_table
from minigun.runner import RunOutcome, RunSpec, run_isolated

__all__ = [
    "RUNNER_SETTINGS",
    "STAGE_COLUMNS",
    "InvalidRunSpec",
    "PipelineRunFailed",
    "RunnerSettings",
    "Verdict",
    "build_spec",
    "describe_outcome",
    "error_text",
    "failure_message",
    "log_tail",
    "outcome_summary",
    "relay_to",
    "run_announced",
    "run_cancellable",
    "spec_from_settings",
    "stage_rows",
    "verdict",
]

#: Seconds to wait for the runner thread beyond ``grace`` once a cancel is requested:
#: the runner sends SIGTERM, waits ``grace``, then SIGKILLs and reaps the group.
_CANCEL_SLACK = 30.0

_INFO = 20

#: Seconds between relays of the child's log lines to the platform's logger.
_RELAY_INTERVAL = 0.1

#: Exit codes for which retrying the whole task cannot change the answer.
_FINAL_FAILURES = frozenset({ExitCode.USAGE, ExitCode.PARTIAL})


class Verdict(enum.Enum):
    """How an adapter should present a run's outcome to its platform."""

    SUCCEEDED = "succeeded"
    """Exit 0: return the result JSON."""
    SKIPPED = "skipped"
    """Exit 99 (``mg.Skip``): the platform's idea of skipped or "completed, nothing done"."""
    FAILED_FINAL = "failed_final"
    """Exit 2 (bad target/params/definition) or 3 (partial): fail, and do not retry."""
    FAILED_TRANSIENT = "failed_transient"
    """Exit 75 (``mg.TransientError``) after the runner's own retries: fail, retry later."""
    FAILED = "failed"
    """Anything else (1, 124, 137, 143, ...): an ordinary failure the platform may retry."""


def verdict(outcome: RunOutcome) -> Verdict:
    """Classify ``outcome`` by its exit code (the contract in :mod:`minigun.exit_codes`)."""
    code = outcome.exit_code
    if code == ExitCode.OK:
        return Verdict.SUCCEEDED
    if code == ExitCode.SKIPPED:
        return Verdict.SKIPPED
    if code in _FINAL_FAILURES:
        return Verdict.FAILED_FINAL
    if code == ExitCode.TEMPFAIL:
        return Verdict.FAILED_TRANSIENT
    return Verdict.FAILED


class InvalidRunSpec(ValueError):
    """The adapter's settings cannot make a valid RunSpec (bad target form, params that
    are not JSON, a negative timeout...). Like exit code 2, retrying cannot help."""

    final = True


class PipelineRunFailed(Exception):
    """A pipeline run ended in failure; carries the exit code and the runner's outcome.

    Adapters whose platform fails a task by an exception (Prefect, Luigi) raise this;
    the others put the same message into their platform's failure type.
    """

    def __init__(self, pipeline: str, outcome: RunOutcome) -> None:
        super().__init__(failure_message(pipeline, outcome))
        self.pipeline = pipeline
        self.outcome = outcome
        self.exit_code = int(outcome.exit_code)
        self.result: dict[str, Any] | None = outcome.result

    def __reduce__(self) -> tuple[Any, ...]:
        # Orchestrators pickle exceptions (Prefect persists failed states' data).
        return (type(self), (self.pipeline, self.outcome))

    @property
    def final(self) -> bool:
        """True when retrying the task cannot help (exit 2 or 3)."""
        return self.exit_code in _FINAL_FAILURES


class RunnerSettings:
    """The runner settings every adapter exposes, under the same names.

    Declared once, here; each adapter takes them in its platform's own way: Luigi's
    ``MinigunTask`` inherits these class attributes, Dagster's ``MinigunResource`` gets
    them as config fields generated from these annotations, Prefect's ``minigun_task``
    accepts them as keyword arguments, and Airflow's operator takes them as keyword
    parameters of its ``__init__`` (Airflow applies ``default_args`` only to
    parameters its signature names; a test keeps that signature equal to this class).
    Each adapter sets ``grace`` to fit its platform's kill window
    (:mod:`minigun.adapters._kill_windows`).
    """

    #: The pipeline's interpreter (default: this one), e.g. another virtualenv's.
    python: str | None = None
    #: Environment variables added to the pipeline's (``None`` values remove one).
    env: dict[str, str] | None = None
    #: The pipeline's working directory (file targets resolve against it).
    cwd: str | None = None
    #: Seconds per runner attempt before the run is stopped (exit 124).
    timeout: float | None = None
    #: The runner's retries of retryable exit codes inside one platform attempt.
    runner_retries: int = 0
    #: Seconds before the runner's first retry; doubles each time, with jitter.
    runner_retry_delay: float = 1.0
    #: Seconds to drain after a stop (timeout, cancel) before SIGKILL.
    grace: float = 30.0
    #: Run override of every stage's executor (``None``: the pipeline's own).
    execution: str | None = None
    #: Run override (a cap) of the pipeline's ``max_processes``.
    max_processes: int | None = None
    #: Run override (a cap) of the pipeline's ``max_threads``.
    max_threads: int | None = None


#: The runner settings' names, in declaration order.
RUNNER_SETTINGS = tuple(RunnerSettings.__annotations__)


def spec_from_settings(
    pipeline: str, params: Mapping[str, Any] | None, settings: object
) -> RunSpec:
    """:func:`build_spec` with the runner settings read from ``settings``' attributes
    (an operator, a resource, a task class)."""
    return build_spec(
        pipeline, params, **{name: getattr(settings, name) for name in RUNNER_SETTINGS}
    )


#: Runner settings that are run overrides: they travel in the spec's ``options``.
_RUN_OVERRIDES = ("execution", "max_processes", "max_threads")


def build_spec(
    pipeline: str,
    params: Mapping[str, Any] | None = None,
    *,
    options: Mapping[str, Any] | None = None,
    **settings: Any,
) -> RunSpec:
    """The one place adapter settings (:class:`RunnerSettings`) become a :class:`RunSpec`.

    ``runner_retries``/``runner_retry_delay`` are the runner's in-attempt retries, kept
    apart from the orchestrator's own retry settings. ``execution``, ``max_processes``
    and ``max_threads`` are run overrides; ``None`` leaves the pipeline's own setting.
    A setting not given takes :class:`RunnerSettings`' default.
    """
    if not isinstance(pipeline, str):
        # A malformed string is refused by RunSpec below (or by the child, exit 2);
        # a non-string is a programming error.
        raise TypeError(f"pipeline must be a 'module:Class' string, got {pipeline!r}")
    unknown = sorted(set(settings) - set(RUNNER_SETTINGS))
    if unknown:
        raise TypeError(
            f"unknown runner setting(s) {', '.join(unknown)}; known: {', '.join(RUNNER_SETTINGS)}"
        )
    values = {name: settings.get(name, getattr(RunnerSettings, name)) for name in RUNNER_SETTINGS}
    run_options: dict[str, Any] = dict(options or {})
    for key in _RUN_OVERRIDES:
        if values[key] is not None:
            run_options[key] = values[key]
    env = values["env"]
    try:
        return RunSpec(
            pipeline=pipeline,
            params=dict(params or {}),
            python=values["python"],
            env=dict(env) if env is not None else None,
            cwd=values["cwd"],
            timeout=values["timeout"],
            retries=values["runner_retries"],
            retry_delay=values["runner_retry_delay"],
            grace=values["grace"],
            options=run_options,
        )
    except ValueError as exc:
        raise InvalidRunSpec(f"cannot run {pipeline!r}: {exc}") from exc


def relay_to(logger: Any) -> Callable[[str], None]:
    """An ``on_log`` that writes each child line to ``logger`` at the line's own level.

    ``logger`` is anything with ``log(level, msg, *args)`` (a :class:`logging.Logger`,
    a ``LoggerAdapter``, Prefect's run logger, Dagster's log manager). Lines carry their
    level (:class:`~minigun.runner.LogLine`): a traceback is ERROR, a stop notice
    WARNING, a progress line INFO, so the platform shows each as what it is.
    """

    def relay(line: str) -> None:
        logger.log(getattr(line, "level", _INFO), "%s", line)

    return relay


def run_announced(
    spec: RunSpec,
    log: Callable[[str], None],
    *,
    on_log: Callable[[str], None] | None = None,
    cancel_event: threading.Event | None = None,
) -> RunOutcome:
    """:func:`run_cancellable`, telling the task's ``log`` that the run starts and how
    it ended (:func:`describe_outcome`): the lines every adapter writes around a run.
    The child's own lines go to ``on_log``, by default to ``log`` too."""
    log(f"minigun: running {spec.pipeline} in an isolated process group")
    outcome = run_cancellable(spec, on_log=on_log or log, cancel_event=cancel_event)
    log(describe_outcome(spec.pipeline, outcome))
    return outcome


def run_cancellable(
    spec: RunSpec,
    *,
    on_log: Callable[[str], None] | None = None,
    cancel_event: threading.Event | None = None,
) -> RunOutcome:
    """Run ``spec`` through the runner so that anything that interrupts us cancels it.

    The runner works on a helper thread while the calling thread waits and relays the
    child's log lines to ``on_log`` (so platform loggers, which are often bound to the
    task's thread, are only ever called from it). Orchestrators end a task by raising
    into its thread (Airflow's execution timeout, Prefect's cancellation and timeouts,
    Dagster's interrupts); whatever is raised here sets ``cancel_event``, waits for the
    runner to stop the child's process group (SIGTERM, ``grace``, SIGKILL) and then
    propagates. Setting ``cancel_event`` from elsewhere (``on_kill``, a signal handler)
    cancels the run the same way, and the outcome is returned as usual.
    """
    cancel = cancel_event if cancel_event is not None else threading.Event()
    lines: queue.SimpleQueue[str] = queue.SimpleQueue()
    done = threading.Event()
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["outcome"] = run_isolated(spec, on_log=lines.put, cancel_event=cancel)
        except BaseException as exc:
            box["error"] = exc
        finally:
            done.set()

    def relay() -> None:
        while True:
            try:
                line = lines.get_nowait()
            except queue.Empty:
                return
            if on_log is not None:
                on_log(line)  # a LogLine: level, time and stream travel with it

    # Wait on an Event, not Thread.join(): on CPython <= 3.12 an exception raised into
    # a join (from a signal handler) can leave the thread marked as stopped while it
    # still runs, and we would stop waiting for the runner's tear-down (seen here).
    threading.Thread(target=work, name=f"minigun-runner[{spec.pipeline}]", daemon=True).start()
    try:
        while not done.wait(_RELAY_INTERVAL):
            relay()
    except BaseException:
        cancel.set()
        # Keep relaying while the pipeline drains: what it says while stopping is what
        # explains the stop, and the platform should show it as it happens.
        give_up = time.monotonic() + float(spec.grace) + _CANCEL_SLACK
        while not done.wait(_RELAY_INTERVAL) and time.monotonic() < give_up:
            try:
                relay()
            except Exception:  # the platform's logger may be torn down already
                pass
        try:
            relay()
        except Exception:
            pass
        raise
    relay()
    if "error" in box:
        raise box["error"]
    outcome: RunOutcome = box["outcome"]
    return outcome


def log_tail(outcome: RunOutcome, lines: int = 20) -> list[str]:
    """The last ``lines`` lines the child printed (none for ``lines <= 0``)."""
    tail: Iterable[str] | str | None = outcome.log_tail
    if tail is None or lines <= 0:  # ``[-0:]`` would be every line
        return []
    if isinstance(tail, str):
        tail = tail.splitlines()
    return list(tail)[-lines:]


def failure_message(pipeline: str, outcome: RunOutcome, tail_lines: int = 20) -> str:
    """One readable paragraph: what ran, how it ended, the child's error and log tail."""
    code = int(outcome.exit_code)
    error = error_text(outcome.result)
    head = (
        f"minigun pipeline {pipeline} ended {ExitCode.describe(code)} (exit code {code}) "
        f"after {outcome.attempts} attempt(s) in {outcome.duration:.1f}s"
    )
    if error:
        head += f": {error}"
    tail = log_tail(outcome, tail_lines)
    if tail:
        head += "\n--- last lines of the pipeline's output ---\n" + "\n".join(tail)
    return head


def error_text(result: Mapping[str, Any] | None) -> str:
    """The result JSON's ``error`` as one line: ``stage: Type: message`` (or "")."""
    error = (result or {}).get("error")
    if not error:
        return ""
    if isinstance(error, Mapping):
        text = ": ".join(str(error[k]) for k in ("type", "message") if error.get(k))
        return f"stage {error['stage']}: {text}" if error.get("stage") else text
    return str(error)


def _stats(result: Mapping[str, Any] | None) -> Mapping[str, Any]:
    stats = (result or {}).get("stats")
    return stats if isinstance(stats, Mapping) else {}


def stage_rows(result: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Per-stage stats of a result JSON as table rows: the Prefect artifact, the Dagster
    metadata and the Airflow XCom ``minigun_stages``.

    The rows are :func:`minigun.report.table.stage_table`'s, the same as ``minigun
    report`` and the metrics show, with the columns of :data:`STAGE_COLUMNS`.
    """
    return stage_table(result)


def outcome_summary(outcome: RunOutcome) -> dict[str, Any]:
    """The figures worth showing next to a task: status, items, throughput, duration."""
    result = outcome.result or {}
    stats = _stats(result)
    return {
        "status": result.get("status", outcome.status),
        "exit_code": int(outcome.exit_code),
        "attempts": outcome.attempts,
        "duration": round(float(outcome.duration), 3),
        "items_produced": stats.get("total_produced"),
        "items_consumed": stats.get("total_consumed"),
        "throughput": stats.get("throughput"),
        "bottleneck": stats.get("bottleneck"),
        "dead_letter_count": result.get("dead_letter_count"),
        "dead_letter_file": result.get("dead_letter_file"),
    }


def describe_outcome(pipeline: str, outcome: RunOutcome) -> str:
    """A one-line log summary of a finished run."""
    s = outcome_summary(outcome)
    line = (
        f"minigun pipeline {pipeline}: {s['status']} (exit code {s['exit_code']}) "
        f"in {s['duration']:.2f}s, {s['attempts']} attempt(s)"
    )
    if s["items_produced"] is not None:
        line += f", {s['items_produced']} items produced, {s['items_consumed']} consumed"
    if isinstance(s["throughput"], (int, float)):
        line += f", {s['throughput']:.1f} items/s"
    if s["dead_letter_count"]:
        where = s["dead_letter_file"] or "memory only"
        line += f", {s['dead_letter_count']} dead letter(s) in {where}"
    return line
