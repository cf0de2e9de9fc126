"""The subprocess-isolated runner: how every adapter and the CLI run a pipeline.

A pipeline never runs in the caller's process. :func:`run_isolated` starts
``python -m minigun run --in-process`` in a new session, relays its output line by
line, enforces the timeout, honours cancellation, retries retryable failures with
backoff and returns a :class:`RunOutcome` whose ``exit_code`` follows the contract in
:class:`ExitCode`. This package imports nothing from the engine, so importing it in an
orchestrator's worker is cheap and safe.
"""

from minigun.exit_codes import DEFAULT_RETRYABLE, NEVER_RETRY, ExitCode
from minigun.runner.isolated import run_isolated
from minigun.runner.logs import LogLine
from minigun.runner.outcome import RunOutcome
from minigun.runner.spec import RunSpec

__all__ = [
    "DEFAULT_RETRYABLE",
    "NEVER_RETRY",
    "ExitCode",
    "LogLine",
    "RunOutcome",
    "RunSpec",
    "run_isolated",
]
