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

__all__ = ["RESULT_SCHEMA", "RunResult", "summary_line"]

RESULT_SCHEMA = "minigun.result/1"
#: Dead-letter records included in the JSON; the full list is in the JSON Lines file.
DEAD_LETTERS_IN_JSON = 100


class RunResult:
    """What ``Pipeline.run()`` returns.

    ``status`` is one of ``succeeded``, ``failed``, ``partial``, ``skipped``,
    ``timeout``, ``stopped``, and always corresponds to ``exit_code``: ``succeeded``
    0, ``failed`` 1 (75 for ``mg.TransientError``), ``partial`` 3, ``skipped`` 99,
    ``timeout`` 124, ``stopped`` 143 (130 for SIGINT).
    ``error`` is the original exception that failed (or skipped) the run.
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
        dead_letters_written: int | None = None,
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
        #: How many of ``dead_letters`` are in ``dead_letter_file`` (fewer if writing failed).
        self.dead_letters_written = (
            len(self.dead_letters)
            if dead_letters_written is None and dead_letter_file
            else (dead_letters_written or 0)
        )

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
            # every dead letter of the run, not only the ones listed below
            "dead_letter_count": len(self.dead_letters),
            "dead_letter_file": self.dead_letter_file,
            "dead_letters_written": self.dead_letters_written,
            "dead_letters": [d.to_dict() for d in self.dead_letters[:DEAD_LETTERS_IN_JSON]],
            "stats": self.stats.to_dict(),
        }

    def __repr__(self) -> str:
        return (
            f"RunResult(status={self.status!r}, exit_code={self.exit_code.name}, "
            f"duration={self.duration:.3f}s, stats={self.stats!r})"
        )


def summary_line(result: RunResult, name: str | None = None) -> str:
    """The one-line summary of a run, as the CLI prints it at the end.

    ``NAME STATUS in 0.44s (exit 0): produced 5,000, consumed 4,167`` (items, a
    batch counted by its length) followed by dropped and skipped counts when
    nonzero, the throughput and the bottleneck, and the dead letters whenever there
    are any: where they were written, or that they exist only in memory. ``name``
    defaults to the pipeline's class name.
    """
    label = _printable(name if name is not None else result.pipeline.rpartition(":")[2])
    stats = result.stats
    parts = [f"produced {stats.total_produced:,}", f"consumed {stats.total_consumed:,}"]
    for key in ("dropped", "skipped"):
        total = sum(int(stage.get(key, 0) or 0) for stage in stats.stages.values())
        if total:
            parts.append(f"{key} {total:,}")
    parts.append(f"{stats.throughput:,.0f} items/s")
    if stats.bottleneck:
        parts.append(f"bottleneck {_printable(stats.bottleneck)}")
    count = len(result.dead_letters)
    if count:
        noun = "dead letter" if count == 1 else "dead letters"
        if not result.dead_letter_file:
            parts.append(f"{count:,} {noun} (in memory only: no dead-letter directory)")
        elif result.dead_letters_written < count:
            parts.append(
                f"{count:,} {noun}, only {result.dead_letters_written:,} written"
                f" to {_printable(result.dead_letter_file)}"
            )
        else:
            parts.append(f"{count:,} {noun} in {_printable(result.dead_letter_file)}")
    return (
        f"{label} {result.status} in {float(result.duration):.2f}s"
        f" (exit {int(result.exit_code)}): {', '.join(parts)}"
    )


def _printable(text: str) -> str:
    """Escape control characters (a path may hold any byte but ``/`` and NUL)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
