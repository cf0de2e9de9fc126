"""What to run and how: the :class:`RunSpec` an adapter or the CLI hands to the runner.

A spec is plain data (strings, numbers, JSON-able params) so that an orchestrator can
build it from its own configuration without importing the engine, and so that it can
be turned into a child command line with no shell in between.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from minigun.exit_codes import DEFAULT_RETRYABLE, NEVER_RETRY
from minigun.runner.spawn import (
    CHILD_BOOTSTRAP,
    RUNNER_PID_ENV,
    child_command,
    child_environment,
)

__all__ = [
    "CHILD_BOOTSTRAP",
    "RUNNER_PID_ENV",
    "RUN_OPTIONS",
    "RunSpec",
    "child_command",
    "child_environment",
]

#: Run overrides a spec may carry in ``options``: the pipeline-level settings the child
#: applies to its run (``execution``, caps, dead letters) and how it shows progress.
#: Kept to what the child honours, so an unknown option is refused when the spec is
#: built, not discovered in a log.
RUN_OPTIONS = (
    "execution",
    "max_threads",
    "max_processes",
    "concurrency",
    "dead_letter_dir",
    "max_dead_letters",
    "dask_address",
    "progress",
    "hud",
)


@dataclass(frozen=True)
class RunSpec:
    """One pipeline run, described for :func:`minigun.runner.run_isolated`.

    ``pipeline`` is ``"package.module:ClassName"`` or ``"path/to/file.py:ClassName"``
    (resolved in the child, relative to ``cwd``). ``params`` go to the class
    constructor as JSON. ``python`` is the child's interpreter (default: this one), so
    a pipeline can live in another virtualenv. ``env`` is *added* to this process's
    environment (a value of ``None`` removes a variable). ``timeout`` and ``grace``
    are per attempt, in seconds: on timeout the child's process group gets SIGTERM,
    then SIGKILL ``grace`` seconds later. ``retries`` extra attempts are made for the
    exit codes in ``retry_on`` (default :data:`~minigun.exit_codes.DEFAULT_RETRYABLE`),
    waiting ``retry_delay * retry_backoff**n`` seconds (capped at ``max_retry_delay``,
    with jitter). Codes in :data:`~minigun.exit_codes.NEVER_RETRY` are never retried.
    ``options`` are run overrides (see :data:`RUN_OPTIONS`).
    """

    pipeline: str
    params: Mapping[str, Any] = field(default_factory=dict)
    python: str | None = None
    env: Mapping[str, str | None] | None = None
    cwd: str | os.PathLike[str] | None = None
    timeout: float | None = None
    retries: int = 0
    retry_delay: float = 1.0
    retry_backoff: float = 2.0
    max_retry_delay: float = 300
    retry_on: Collection[int] | None = None
    grace: float = 30
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Validate here, in the orchestrator's process, so a typo fails the task at
        # once with a clear message instead of as a child's exit status.
        names_a_target = isinstance(self.pipeline, str) and (
            ":" in self.pipeline or self.pipeline.endswith(".py")
        )
        if not names_a_target:
            raise ValueError(
                f"pipeline must be 'package.module:ClassName' or 'path/to/file.py[:ClassName]',"
                f" got {self.pipeline!r}"
            )
        if not isinstance(self.params, Mapping):
            raise ValueError(f"params must be a mapping, got {type(self.params).__name__}")
        try:
            json.dumps(dict(self.params))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"params must be JSON-serialisable: {exc}") from None
        except RecursionError:
            raise ValueError("params are nested too deeply to serialise") from None
        if self.timeout is not None:
            _positive("timeout", self.timeout)
        if not isinstance(self.retries, int) or isinstance(self.retries, bool) or self.retries < 0:
            raise ValueError(f"retries must be an integer >= 0, got {self.retries!r}")
        _non_negative("retry_delay", self.retry_delay)
        _non_negative("max_retry_delay", self.max_retry_delay)
        _non_negative("grace", self.grace)
        if not _is_number(self.retry_backoff) or self.retry_backoff < 1:
            raise ValueError(f"retry_backoff must be a number >= 1, got {self.retry_backoff!r}")
        if self.retry_on is not None and not all(
            isinstance(c, int) and 0 <= c <= 255 for c in self.retry_on
        ):
            raise ValueError(f"retry_on must be exit codes (0-255), got {self.retry_on!r}")
        unknown = sorted(set(self.options) - set(RUN_OPTIONS))
        if unknown:
            raise ValueError(
                f"unknown run option(s) {', '.join(unknown)}; known: {', '.join(RUN_OPTIONS)}"
            )

    @property
    def retryable_codes(self) -> frozenset[int]:
        """The exit codes this spec retries: ``retry_on`` minus the never-retry set."""
        codes = DEFAULT_RETRYABLE if self.retry_on is None else frozenset(self.retry_on)
        return frozenset(int(c) for c in codes) - NEVER_RETRY

    def command(self) -> list[str]:
        """The child's argv (see :func:`~minigun.runner.spawn.child_command`)."""
        return child_command(self.python)

    def child_spec(self) -> dict[str, Any]:
        """What the child is told on its control channel (see :mod:`.protocol`)."""
        options = {key: value for key, value in self.options.items() if value is not None}
        return {
            "target": self.pipeline,
            "params": dict(self.params),
            "options": options,
            "grace": float(self.grace),
            "timeout": None if self.timeout is None else float(self.timeout),
        }

    def child_env(self) -> dict[str, str]:
        """The child's environment: see :func:`child_environment`."""
        return child_environment(self.env)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


#: Seconds beyond which a duration is a mistake (about 31 years), not a setting.
MAX_SECONDS = 1e9


def _positive(name: str, value: object) -> None:
    if not _is_number(value) or not 0 < value <= MAX_SECONDS:  # type: ignore[operator]
        raise ValueError(f"{name} must be a number > 0 and <= {MAX_SECONDS:g}, got {value!r}")


def _non_negative(name: str, value: object) -> None:
    if not _is_number(value) or not 0 <= value <= MAX_SECONDS:  # type: ignore[operator]
        raise ValueError(f"{name} must be a number >= 0 and <= {MAX_SECONDS:g}, got {value!r}")
