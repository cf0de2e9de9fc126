"""Timeouts and the grace period: the whole process group ends, nothing is left."""

from __future__ import annotations

import textwrap
import threading
from pathlib import Path

import pytest

from minigun.runner import ExitCode, RunOutcome, RunSpec, run_isolated
from support import (
    alive,
    child_env,
    read_ready,
    session_members,
    target,
    wait_until,
)

GRACE = 1.0


def test_timeout_kills_the_group_including_helper_processes(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    spec = RunSpec(
        target("SleepyWithChildren"),
        params={"ready": str(ready), "sleepers": 2},
        env=child_env(),
        timeout=3,
        grace=GRACE,
    )
    outcome = run_isolated(spec)
    assert outcome.exit_code == ExitCode.TIMEOUT, outcome.log_tail
    assert outcome.status == "timeout"
    assert outcome.retryable
    info = read_ready(ready)
    assert len(info["helpers"]) == 2
    # Soon after the run ends nothing of the group is left.
    wait_until(lambda: not session_members(info["sid"]), what="an empty session")
    assert not any(alive(pid) for pid in info["helpers"])
    assert "timed out after 3s" in outcome.log_tail


def test_stage_ignoring_sigterm_is_sigkilled_after_grace(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    spec = RunSpec(
        target("SleepyWithChildren"),
        params={"ready": str(ready), "sleepers": 1, "ignore_sigterm": True},
        env=child_env(),
        timeout=3,
        grace=GRACE,
    )
    outcome = run_isolated(spec)
    assert outcome.exit_code == ExitCode.TIMEOUT
    info = read_ready(ready)
    # The stubborn helper was given its chance to drain: the child keeps the last
    # quarter of grace (at most 1 s) to hand over its result, which says the drain
    # did not finish.
    assert outcome.duration >= 3 + GRACE * 0.75 - 0.1
    assert outcome.result is not None
    assert outcome.result["stop"] == {"requested_by": "timeout", "grace": GRACE, "drained": False}
    assert outcome.duration < 3 + GRACE + 30  # only catches a hang
    # SIGKILL has been sent to the whole group; its delivery is asynchronous.
    wait_until(lambda: not alive(info["helpers"][0]), 10, "the stubborn helper to die")
    wait_until(lambda: session_members(info["sid"]) == [], 10, "an empty session")


def test_timeout_is_retried_as_a_retryable_code(tmp_path: Path) -> None:
    # 3 s: long enough for a child under coverage on a loaded machine to have read its
    # spec (from then on a stop always leaves a result, even while importing).
    spec = RunSpec(
        target("Endless"),
        env=child_env(),
        timeout=3,
        grace=GRACE,
        retries=1,
        retry_delay=0,
    )
    outcome = run_isolated(spec)
    assert outcome.exit_code == ExitCode.TIMEOUT
    assert outcome.attempts == 2
    # Endless drains cleanly on SIGTERM, so the child's own result says "timeout".
    assert outcome.result is not None and outcome.result["status"] == "timeout"


@pytest.mark.parametrize("phase", ["import", "init"])
def test_a_stop_while_the_target_imports_or_builds_leaves_a_result(
    tmp_path: Path, phase: str
) -> None:
    """Nothing runs yet, so nothing drains: the attempt ends at once and says so."""
    ready = tmp_path / "ready"
    (tmp_path / "slow_target.py").write_text(
        textwrap.dedent(
            f"""
            import os, time
            import minigun as mg

            def announce():
                with open({str(ready)!r} + ".tmp", "w") as fh:
                    fh.write("ready")
                os.replace({str(ready)!r} + ".tmp", {str(ready)!r})
                time.sleep(120)

            if {phase!r} == "import":
                announce()

            class P(mg.Pipeline):
                def __init__(self):
                    announce()

                @mg.producer
                def one(self):
                    yield 1

                @mg.consumer
                def sink(self, x):
                    pass
            """
        )
    )
    cancel = threading.Event()
    threading.Thread(
        target=lambda: (wait_until(ready.exists, what="the slow target"), cancel.set()),
        daemon=True,
    ).start()
    spec = RunSpec("slow_target.py:P", cwd=str(tmp_path), env=child_env(), grace=30)
    outcome = run_isolated(spec, cancel_event=cancel)
    assert outcome.exit_code == ExitCode.TERMINATED, outcome.log_tail
    assert outcome.duration < 30  # it did not sit out the grace period
    assert outcome.result is not None
    assert outcome.result["status"] == "stopped"
    assert outcome.result["stop"]["requested_by"] == "SIGTERM"
    assert "stopped before the pipeline started" in outcome.log_tail


@pytest.mark.parametrize("pipeline", ["SleepyCowFork", "SleepyIpcFork"])
def test_timeout_with_fork_executor_children_alive(tmp_path: Path, pipeline: str) -> None:
    ready = tmp_path / "ready"
    spec = RunSpec(
        target(pipeline),
        params={"ready": str(ready)},
        env=child_env(),
        timeout=4,
        grace=GRACE,
    )
    box: list[RunOutcome] = []
    runner = threading.Thread(target=lambda: box.append(run_isolated(spec)))
    runner.start()
    # ipc_fork may hand both items to one worker, so wait for whichever starts first.
    announced = wait_until(
        lambda: [p for p in (Path(f"{ready}.{i}") for i in range(2)) if p.exists()],
        20,
        "a forked child to start its item",
    )
    info = read_ready(announced[0])
    members = {p.pid for p in session_members(info["sid"])}
    runner.join(30)
    (outcome,) = box
    assert outcome.exit_code == ExitCode.TIMEOUT, outcome.log_tail
    # A forked child (not the leader) was alive in the group when the timeout fired...
    assert info["pid"] != info["pgid"] and info["pid"] in members
    assert info["pgid"] in members
    # ...and soon after the run ends nothing of the group is left.
    wait_until(lambda: not session_members(info["sid"]), what="an empty session")
