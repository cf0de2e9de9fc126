"""The conformance table every adapter is tested against, inside its real orchestrator.

Each scenario names a pipeline, the adapter settings to run it with, and the outcome
expected in terms of :class:`Expect`; each adapter's test module translates ``Expect``
into its platform's states (Airflow task state, Prefect state, Dagster step events,
Luigi's summary) and runs every scenario. The cancel scenario's trigger differs per
platform (Airflow ``execution_timeout``, Prefect cancellation, Dagster run
termination, SIGTERM to a Luigi task process) but its expectation does not: the task
fails and no process of the pipeline is left.
"""

from __future__ import annotations

import contextlib
import enum
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

PIPELINES = Path(__file__).with_name("pipelines.py")


def target(name: str) -> str:
    """A pipeline of :mod:`tests.adapters.pipelines` as a file-path target."""
    return f"{PIPELINES}:{name}"


class Expect(enum.Enum):
    SUCCEEDED = "succeeded"
    """Task succeeds; the result JSON is where the platform shows results."""
    FAILED = "failed"
    """Task fails in a way the platform may retry."""
    FAILED_FINAL = "failed_final"
    """Task fails fast and is not retried, whatever the platform's retry settings."""
    SKIPPED = "skipped"
    """The platform's idea of skipped."""
    STOPPED = "stopped"
    """Timed out or cancelled: the task fails and no pipeline process survives."""


#: Seconds after which the cancel scenario's platform-specific trigger fires.
CANCEL_AFTER = 6.0
#: The runner timeout of the timeout scenario, and the drain grace of both.
TIMEOUT = 5.0
GRACE = 2.0


@dataclass(frozen=True)
class Scenario:
    name: str
    pipeline: str
    expect: Expect
    params: dict[str, Any] = field(default_factory=dict)
    adapter_kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments every adapter accepts: timeout, runner_retries, ..."""
    marker_dir: Path | None = None
    """Where the pipeline's processes leave PID markers (checked for survivors)."""
    cancel: bool = False
    """The platform cancels or kills the task ``CANCEL_AFTER`` seconds in."""
    max_seconds: float = 60.0
    """Upper bound on the task's duration (fast failure, prompt stop)."""


def scenarios(workdir: Path) -> list[Scenario]:
    """The table, with marker paths under ``workdir`` (one directory per scenario)."""
    return [
        Scenario(
            "success",
            target("Succeeds"),
            Expect.SUCCEEDED,
            params={"n": 20, "marker_dir": str(workdir / "success")},
            marker_dir=workdir / "success",
        ),
        Scenario("stage_failure", target("Fails"), Expect.FAILED),
        Scenario(
            "transient_then_success",
            target("FlakyOnce"),
            Expect.SUCCEEDED,
            params={"marker": str(workdir / "transient_then_success" / "first-attempt")},
            adapter_kwargs={"runner_retries": 2, "runner_retry_delay": 0.1},
        ),
        Scenario("skip", target("Skips"), Expect.SKIPPED),
        Scenario(
            "big_params",  # params travel as data, never on argv (issue 9, item 8)
            target("BigParams"),
            Expect.SUCCEEDED,
            params={"blob": "x" * (10 * 1024 * 1024), "accented": "é" * 40_000},
        ),
        Scenario(
            "timeout",
            target("Hangs"),
            Expect.STOPPED,
            params={"marker_dir": str(workdir / "timeout")},
            adapter_kwargs={"timeout": TIMEOUT, "grace": GRACE},
            marker_dir=workdir / "timeout",
            # A bound on a hang (Hangs sleeps 300 s an item), not a speed test: a loaded
            # 2-core machine took 28 s for a platform task of 5 s + 2 s of grace.
            max_seconds=TIMEOUT + GRACE + 60,
        ),
        Scenario(
            "bad_target",
            target("NoSuchPipeline"),
            Expect.FAILED_FINAL,
            adapter_kwargs={"runner_retries": 3, "runner_retry_delay": 5.0},
            max_seconds=15.0,
        ),
        Scenario(
            "cancel",
            target("Hangs"),
            Expect.STOPPED,
            params={"marker_dir": str(workdir / "cancel")},
            adapter_kwargs={"grace": GRACE},
            marker_dir=workdir / "cancel",
            cancel=True,
            max_seconds=CANCEL_AFTER + GRACE + 30,
        ),
    ]


SCENARIO_NAMES = [s.name for s in scenarios(Path("."))]


def by_name(workdir: Path, name: str) -> Scenario:
    return next(s for s in scenarios(workdir) if s.name == name)


def marked_pids(marker_dir: Path, role: str | None = None) -> list[int]:
    """PIDs that left a marker (``<role>.<pid>``) in ``marker_dir``."""
    if not marker_dir.is_dir():
        return []
    pids = []
    for path in marker_dir.iterdir():
        kind, _, pid = path.name.rpartition(".")
        if pid.isdigit() and (role is None or kind == role):
            pids.append(int(pid))
    return pids


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def assert_no_survivors(marker_dir: Path, *, expect_forks: bool = True, wait: float = 30.0) -> None:
    """Every process that marked ``marker_dir`` is gone (allowing ``wait`` s for reaping)."""
    pids = marked_pids(marker_dir)
    assert marked_pids(marker_dir, "pipeline"), f"the pipeline never started: {marker_dir}"
    if expect_forks:
        assert marked_pids(marker_dir, "fork"), f"no fork child ever started: {marker_dir}"
    deadline = time.monotonic() + wait
    while (left := [p for p in pids if alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in left:  # fail, but leave nothing running behind the failure
        with contextlib.suppress(psutil.Error):
            psutil.Process(pid).kill()
    assert not left, f"processes outlived the task: {left}"
