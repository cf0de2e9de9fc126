"""The :class:`RunOutcome` of an isolated run and the mapping from child status to it.

The outcome is what an adapter translates into its platform's success, skip, retry or
failure; it carries the exit code of the contract (:class:`~minigun.ExitCode`), never a
raw ``returncode``, so no adapter has to know about signals.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import Any

from minigun.exit_codes import ExitCode

__all__ = ["AttemptRecord", "RunOutcome", "exit_code_from_returncode", "status_for"]

_STATUS: dict[int, str] = {
    ExitCode.OK: "succeeded",
    ExitCode.FAILED: "failed",
    ExitCode.USAGE: "usage_error",
    ExitCode.PARTIAL: "partial",
    ExitCode.TEMPFAIL: "failed",
    ExitCode.SKIPPED: "skipped",
    ExitCode.TIMEOUT: "timeout",
    ExitCode.INTERRUPTED: "stopped",
    ExitCode.KILLED: "killed",
    ExitCode.TERMINATED: "stopped",
}


def status_for(exit_code: int) -> str:
    """The outcome status for an exit code.

    The engine's statuses (``succeeded``, ``failed``, ``partial``, ``skipped``,
    ``stopped``, and ``timeout`` when a run stops itself at its timeout) plus those the
    runner adds: ``usage_error`` (the child refused the target, params or definition),
    ``timeout`` (the runner's own deadline) and ``killed``. Unknown codes are
    ``failed``.
    """
    return _STATUS.get(exit_code, "failed")


def exit_code_from_returncode(returncode: int) -> int:
    """Map ``Popen.returncode`` onto the contract: death by SIGKILL is 137, by signal N 128+N.

    A negative ``returncode`` means the child was killed by a signal; shells report
    that as 128+N, and so do we, so a SIGKILLed child (the OOM killer) reads as
    :attr:`ExitCode.KILLED`.
    """
    if returncode >= 0:
        code = returncode
    elif -returncode == signal.SIGKILL:
        code = int(ExitCode.KILLED)
    else:
        code = 128 - returncode
    try:
        return ExitCode(code)
    except ValueError:
        return code


@dataclass(frozen=True)
class AttemptRecord:
    """One attempt of an isolated run: its number (from 1), exit code and seconds.

    The result JSON is the last attempt's own record; what came before it (a failure
    the runner retried, a timeout) is only known to the runner, so it keeps this list.
    """

    attempt: int
    exit_code: int
    duration: float
    cancelled: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "attempt": self.attempt,
            "exit_code": self.exit_code,
            "status": status_for(self.exit_code),
            "duration": round(self.duration, 6),
            "cancelled": self.cancelled,
        }


@dataclass(frozen=True)
class RunOutcome:
    """How an isolated run ended, after all attempts.

    ``exit_code`` follows the contract (an :class:`ExitCode` when it is one of
    ours); ``status`` is :func:`status_for` of it. ``result`` is the child's result
    JSON (schema ``minigun.result/1``) from the last attempt, or ``None`` when the
    child wrote none (killed, bad target); it is the child's own record, so after a
    timeout it typically says ``stopped`` (the child saw a SIGTERM) while
    ``exit_code`` says 124. ``log_tail`` is the last lines of output
    (all streams, runner messages included). ``retryable`` says whether an
    orchestrator retrying the task could help: the exit code is in the spec's retry
    set. ``cancelled`` is true when the run ended because of ``cancel_event`` or a
    signal to the calling process. ``history`` has one :class:`AttemptRecord` per
    attempt, in order.
    """

    exit_code: int
    status: str
    attempts: int
    duration: float
    result: dict[str, Any] | None
    log_tail: str
    retryable: bool
    cancelled: bool = False
    history: tuple[AttemptRecord, ...] = ()

    @property
    def ok(self) -> bool:
        """True when the run succeeded (exit code 0)."""
        return self.exit_code == ExitCode.OK

    def runner_record(self) -> dict[str, Any]:
        """The runner's view of the run, as JSON: what ``minigun run --result-file``
        adds to the child's result under ``"runner"`` (``minigun report`` shows it)."""
        return {
            "attempts": self.attempts,
            "exit_code": int(self.exit_code),
            "status": self.status,
            "duration": round(self.duration, 6),
            "cancelled": self.cancelled,
            "history": [record.to_dict() for record in self.history],
        }
