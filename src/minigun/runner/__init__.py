"""The subprocess-isolated runner: how every adapter and the CLI run a pipeline.

A pipeline never runs in the caller's process. :func:`run_isolated` starts
``python -m minigun run --in-process`` in a new session, relays its output line by
line, enforces the timeout, honours cancellation, retries retryable failures with
backoff and returns a :class:`RunOutcome` whose ``exit_code`` follows the contract in
:class:`ExitCode`. If the calling process is itself SIGKILLed, the child notices it was
orphaned and stops its own group within ``grace``. This package imports nothing from
the engine, so importing it in an orchestrator's worker is cheap and safe.

Modules: ``spec`` (what to run), ``isolated`` (attempts and retries), ``process`` (one
child's lifetime), ``cancel`` (cancel event and signals), ``retry`` (backoff),
``logs`` (output lines), ``outcome`` (the result and the exit-code mapping).
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # typing itself is not imported: `minigun run` starts its child first
if TYPE_CHECKING:
    from typing import Any

    from minigun.exit_codes import DEFAULT_RETRYABLE, NEVER_RETRY, ExitCode
    from minigun.runner.isolated import run_isolated
    from minigun.runner.logs import LogLine
    from minigun.runner.outcome import RunOutcome
    from minigun.runner.spec import RunSpec

# Resolved on first use, so the child, which needs only the protocol's constants,
# does not load the parent's machinery (subprocess, selectors, threads).
_EXPORTS = {
    "DEFAULT_RETRYABLE": "minigun.exit_codes",
    "ExitCode": "minigun.exit_codes",
    "NEVER_RETRY": "minigun.exit_codes",
    "LogLine": "minigun.runner.logs",
    "RunOutcome": "minigun.runner.outcome",
    "RunSpec": "minigun.runner.spec",
    "run_isolated": "minigun.runner.isolated",
}

__all__ = [
    "DEFAULT_RETRYABLE",
    "NEVER_RETRY",
    "ExitCode",
    "LogLine",
    "RunOutcome",
    "RunSpec",
    "run_isolated",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'minigun.runner' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
