"""Exceptions a pipeline author raises or receives.

``Skip`` and ``TransientError`` are control flow for the whole run (they map onto
exit codes 99 and 75); ``PipelineDefinitionError`` is a usage error found before
anything runs (exit code 2). Each knows its exit code, like click's exceptions do,
so the CLI and the runner never keep a second table.
"""

from __future__ import annotations

from minigun.exit_codes import ExitCode

__all__ = [
    "ChildDied",
    "ItemTimeout",
    "MinigunError",
    "PipelineDefinitionError",
    "RemoteError",
    "Skip",
    "TransientError",
]


class MinigunError(Exception):
    """Base class of minigun's own exceptions."""

    exit_code: ExitCode = ExitCode.FAILED


class PipelineDefinitionError(MinigunError, ValueError):
    """The pipeline definition is invalid; the message names the stage and the fix."""

    exit_code = ExitCode.USAGE


class Skip(MinigunError):
    """Raise anywhere in a pipeline to end the run as *skipped* (exit code 99)."""

    exit_code = ExitCode.SKIPPED


class TransientError(MinigunError):
    """Raise to end the run as a temporary failure (exit code 75); the runner retries it.

    Per-item ``retries`` still apply first; once they are used up a
    ``TransientError`` fails the run whatever the stage's ``on_error`` says, because
    skipping or dead-lettering an item whose failure is "try again later" would lose
    data that a retry of the run could still process.
    """

    exit_code = ExitCode.TEMPFAIL


class ItemTimeout(MinigunError, TimeoutError):
    """A stage took longer than its per-item ``timeout`` on one item."""


class ChildDied(MinigunError):
    """A forked child died while processing an item (signal or exit status in the message)."""


class RemoteError(MinigunError):
    """An exception raised in another process whose type could not be rebuilt here.

    ``remote_type`` and ``remote_traceback`` keep what the child reported.
    """

    def __init__(self, remote_type: str, message: str, remote_traceback: str = "") -> None:
        super().__init__(f"{remote_type}: {message}")
        self.remote_type = remote_type
        self.remote_traceback = remote_traceback
