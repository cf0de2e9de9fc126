"""How long each platform waits between asking a task to stop and killing it.

A stopped pipeline drains for ``grace`` seconds, then the runner SIGKILLs its process
group. That only works while the runner is alive: when the platform SIGKILLs the task
process first, the drain is cut short (the child's lifetime guard then ends the group
at once, without a finished drain). So each adapter's default ``grace`` must fit inside
its platform's *kill window* (the time from the platform's stop signal to its SIGKILL)
with a margin for the runner's own SIGKILL, the reaping, and the task reporting its
outcome. This module is the one place that knows those windows; adapters read their
defaults from it and call :meth:`KillWindow.check_grace` so that a grace that cannot
fit is logged, not discovered in production.

The figures were read from the platforms' sources (versions in the e2e env):

- **Airflow 3** (Task SDK supervisor, ``ActivitySubprocess.kill(signal.SIGTERM,
  force=True)`` with its default ``escalation_delay=5.0``): a task marked failed or
  cleared, a lost heartbeat, or overtime gets SIGTERM, then SIGKILL 5 s later. The task
  runner's SIGTERM handler calls the operator's ``on_kill``. The delay is hard-coded:
  it cannot be lengthened. ``execution_timeout`` is different: SIGALRM raises
  ``AirflowTaskTimeout`` inside the task and no SIGKILL follows, so the drain gets the
  whole grace.
- **Prefect 3** (runner cancellation, ``ProcessManager.kill(flow_run_id,
  grace_seconds=30)``): cancelling a flow run of a served deployment sends SIGTERM to the
  flow run's process (raised in it as ``TerminationSignal``), then SIGKILL 30 s later
  (checked every 3 s). Also hard-coded.
- **Dagster** (``DefaultRunLauncher.terminate`` → gRPC ``cancel_execution`` → the run
  worker's termination thread → the multiprocess executor sets each step's termination
  event → the step process sends itself SIGINT, raised in the op as
  ``DagsterExecutionInterruptedError``): no SIGKILL follows; the run stays CANCELING
  until the step ends. With run monitoring enabled, ``cancel_timeout_seconds``
  (default 180) marks the run CANCELED without killing anything.
- **Luigi** (``TaskProcess.terminate``/``_recursive_terminate``, used for
  ``worker_timeout`` and when a worker exits normally): SIGTERM to the task process,
  then an unbounded ``wait()`` — no SIGKILL. But a worker that is itself killed
  (SIGTERM has no handler in the worker) dies at once and nobody waits for its task
  processes; the adapter notices (see :mod:`minigun.adapters.luigi`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["AIRFLOW", "DAGSTER", "LUIGI", "PREFECT", "KillWindow"]

#: What a drain must leave free of a kill window: the runner's SIGKILL and reaping of
#: the group, and the task reporting its outcome before the platform's SIGKILL.
#: A quarter of the window, at least 1.5 s.
_MIN_MARGIN = 1.5
_MARGIN_SHARE = 0.25


class _Warns(Protocol):
    """What :meth:`KillWindow.check_grace` needs of a platform's logger."""

    def warning(self, msg: str, /) -> Any: ...


@dataclass(frozen=True)
class KillWindow:
    """One platform's stop: how it is delivered and how long until SIGKILL."""

    platform: str
    seconds: float | None
    """Seconds from the platform's stop signal to its SIGKILL; None: no SIGKILL follows."""
    stop: str
    """How the stop reaches the task (for messages)."""
    lengthen: str
    """What to do for a longer drain (for the warning)."""
    default_grace: float
    """The adapter's default ``grace``: fits :meth:`max_grace` with margin."""

    @property
    def max_grace(self) -> float | None:
        """The longest grace that still leaves the margin free (None: unbounded)."""
        if self.seconds is None:
            return None
        margin = max(_MIN_MARGIN, self.seconds * _MARGIN_SHARE)
        return max(0.0, self.seconds - margin)

    def fits(self, grace: float) -> bool:
        limit = self.max_grace
        return limit is None or float(grace) <= limit

    def check_grace(self, grace: float, logger: _Warns | None = None) -> bool:
        """Log a warning when ``grace`` cannot fit; return whether it fits.

        The message is formatted here (platform loggers differ in how they take
        arguments: Airflow's is structlog-based)."""
        if self.fits(grace):
            return True
        (logger or logging.getLogger("minigun.adapters")).warning(self.misfit(grace))
        return False

    def misfit(self, grace: float) -> str:
        """Why ``grace`` does not fit, and what to do instead."""
        return (
            f"minigun: grace={grace:g}s does not fit {self.platform}'s kill window: "
            f"{self.stop}, then SIGKILL {self.seconds:g}s later; a drain must end by "
            f"{self.max_grace:g}s to leave a margin. When {self.platform} kills the task, "
            f"the pipeline's process group is ended at once and its drain is cut short. "
            f"{self.lengthen}"
        ).rstrip()


AIRFLOW = KillWindow(
    platform="Airflow",
    seconds=5.0,
    stop="the task supervisor sends SIGTERM (mark failed/success, clear, lost heartbeat)",
    lengthen=(
        "Airflow's 5 s escalation is fixed; for a deadline with a full drain use the "
        "operator's timeout= or Airflow's execution_timeout, which stop the pipeline "
        "from inside the task with the whole grace."
    ),
    default_grace=3.0,
)

PREFECT = KillWindow(
    platform="Prefect",
    seconds=30.0,
    stop="the runner sends SIGTERM to the flow run's process when the run is cancelled",
    lengthen=(
        "Prefect's 30 s cancellation kill is fixed; for a deadline with a full drain use "
        "timeout= (the runner's) or timeout_seconds= on the task."
    ),
    default_grace=20.0,
)

DAGSTER = KillWindow(
    platform="Dagster",
    seconds=None,
    stop="run termination interrupts the step (SIGINT raised as an exception in the op)",
    lengthen="",
    default_grace=30.0,
)

LUIGI = KillWindow(
    platform="Luigi",
    seconds=None,
    stop="the worker sends SIGTERM to the task process (worker_timeout) and waits",
    lengthen="",
    default_grace=30.0,
)
