"""``mg.RunResult``: the outcome of a run and its versioned JSON form.

The JSON form (``to_dict()``, schema ``minigun.result/1``) is the one
machine-readable record of a run: the CLI writes it, the runner reads it back from
the child, and every adapter returns it to its orchestrator.
"""

from __future__ import annotations

import time
from typing import Any

from minigun.core.dead_letters import DeadLetter
from minigun.core.stats import RunStats
from minigun.exit_codes import ExitCode

__all__ = ["RESULT_SCHEMA", "RunResult"]

RESULT_SCHEMA = "minigun.result/1"
#: Dead-letter records included in the JSON; the full list is in the JSON Lines file.
DEAD_LETTERS_IN_JSON = 100


class RunResult:
    """What ``Pipeline.run()`` returns.

    ``status`` is one of ``succeeded``, ``failed``, ``partial``, ``skipped``,
    ``stopped``, and always corresponds to ``exit_code`` (DESIGN 3.4). ``error`` is
    the original exception that failed (or skipped) the run.
    """

    def __init__(
        self,
        pipeline: str,
        status: str,
        exit_code: ExitCode,
        duration: float,
        stats: RunStats,
        started_at: float | None = None,
        error: BaseException | None = None,
        error_stage: str | None = None,
        error_traceback: str | None = None,
        dead_letters: list[DeadLetter] | None = None,
        dead_letter_file: str | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.status = status
        self.exit_code = exit_code
        self.duration = duration
        self.stats = stats
        self.started_at = time.time() if started_at is None else started_at
        self.error = error
        self.error_stage = error_stage
        self.error_traceback = error_traceback
        self.dead_letters = [] if dead_letters is None else dead_letters
        self.dead_letter_file = dead_letter_file

    @property
    def ok(self) -> bool:
        """True for ``succeeded`` (which includes dead letters within the limit)."""
        return self.status == "succeeded"

    def to_dict(self) -> dict[str, Any]:
        error = None
        if self.error is not None:
            error = {
                "type": type(self.error).__name__,
                "message": str(self.error),
                "stage": self.error_stage,
                "traceback": self.error_traceback,
            }
        return {
            "schema": RESULT_SCHEMA,
            "pipeline": self.pipeline,
            "status": self.status,
            "ok": self.ok,
            "exit_code": int(self.exit_code),
            "duration": self.duration,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started_at)),
            "error": error,
            "dead_letter_count": len(self.dead_letters),
            "dead_letter_file": self.dead_letter_file,
            "dead_letters": [d.to_dict() for d in self.dead_letters[:DEAD_LETTERS_IN_JSON]],
            "stats": self.stats.to_dict(),
        }

    def __repr__(self) -> str:
        return (
            f"RunResult(status={self.status!r}, exit_code={self.exit_code.name}, "
            f"duration={self.duration:.3f}s, stats={self.stats!r})"
        )
