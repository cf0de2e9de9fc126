"""The exit-code contract shared by the engine, the runner, the CLI and every adapter.

It lives outside ``core`` and ``runner`` because both sides speak it: the engine
stamps a code on every :class:`~minigun.RunResult`, the runner maps a child's exit
status onto it, and adapters translate it into their platform's idea of success,
skip, retry and failure. Changing a value here is a breaking change.
"""

from __future__ import annotations

import enum

__all__ = ["DEFAULT_RETRYABLE", "NEVER_RETRY", "ExitCode"]


class ExitCode(enum.IntEnum):
    """Process exit codes with one meaning everywhere.

    The same code means the same thing from ``Pipeline.run()``, ``minigun run``, the
    runner and every adapter; the table, with which codes the runner retries, is in
    the docs' "Errors, retries and dead letters" page (Exit codes).
    """

    OK = 0
    """Succeeded (dead letters, if any, within ``max_dead_letters``)."""
    FAILED = 1
    """A stage or hook raised."""
    USAGE = 2
    """Bad target, bad params, or an invalid pipeline definition."""
    PARTIAL = 3
    """Finished, but dead letters exceeded ``max_dead_letters``."""
    TEMPFAIL = 75
    """``mg.TransientError``: try again later."""
    SKIPPED = 99
    """``mg.Skip``: nothing to do this time."""
    TIMEOUT = 124
    """The runner's timeout expired."""
    INTERRUPTED = 130
    """Stopped by SIGINT."""
    KILLED = 137
    """Killed by SIGKILL (OOM killer, operator)."""
    TERMINATED = 143
    """Stopped by SIGTERM (or ``stop()``), drained within grace."""

    @classmethod
    def describe(cls, code: int) -> str:
        """A short human name for any integer exit status, known or not."""
        try:
            return cls(code).name.lower()
        except ValueError:
            if code < 0:
                return f"signal {-code}"
            return f"exit {code}"


#: Exit codes the runner retries unless told otherwise.
DEFAULT_RETRYABLE: frozenset[int] = frozenset(
    {ExitCode.FAILED, ExitCode.TEMPFAIL, ExitCode.TIMEOUT, ExitCode.KILLED}
)

#: Exit codes that are never retried, whatever ``retry_on`` says: retrying a usage
#: error, a partial run, a skip or an operator's stop cannot change the answer.
NEVER_RETRY: frozenset[int] = frozenset(
    {
        ExitCode.USAGE,
        ExitCode.PARTIAL,
        ExitCode.SKIPPED,
        ExitCode.INTERRUPTED,
        ExitCode.TERMINATED,
    }
)
