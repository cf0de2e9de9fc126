"""Stopping a run whose ``async def`` stages cannot drain: the runner's cancel (SIGTERM
to the group) and timeout let them drain for grace, then the coroutines in flight are
cancelled, so their ``finally`` blocks run before the child exits."""

from __future__ import annotations

import threading
from pathlib import Path

from minigun.runner import ExitCode, RunOutcome, RunSpec, run_isolated
from support import child_env, read_ready, session_members, wait_until

TARGET = "pipelines.async_stages:AsyncHang"
GRACE = 2.0


def _spec(tmp_path: Path, **kwargs: object) -> RunSpec:
    params = {"ready": str(tmp_path / "ready"), "unwound": str(tmp_path / "unwound")}
    return RunSpec(TARGET, params=params, env=child_env(), grace=GRACE, **kwargs)  # type: ignore[arg-type]


def _unwound(tmp_path: Path) -> list[str]:
    path = tmp_path / "unwound"
    return path.read_text().split() if path.exists() else []


def test_cancel_drains_for_grace_then_cancels_the_coroutines(tmp_path: Path) -> None:
    cancel = threading.Event()
    box: list[RunOutcome] = []
    runner = threading.Thread(
        target=lambda: box.append(run_isolated(_spec(tmp_path), cancel_event=cancel))
    )
    runner.start()
    info = read_ready(tmp_path / "ready")
    assert _unwound(tmp_path) == []
    cancel.set()
    runner.join(60)
    assert box, "the runner returned"
    outcome = box[0]
    assert outcome.exit_code == ExitCode.TERMINATED, outcome.log_tail
    assert outcome.result is not None
    assert outcome.result["stop"]["drained"] is False
    # exactly the 8 in flight were cancelled, each ran its finally block
    assert len(_unwound(tmp_path)) == 8
    wait_until(lambda: session_members(info["sid"]) == [], what="an empty session")


def test_timeout_drains_for_grace_then_cancels_the_coroutines(tmp_path: Path) -> None:
    # 10 s: the coroutines are in flight long before (the ready file proves it below)
    outcome = run_isolated(_spec(tmp_path, timeout=10))
    assert outcome.exit_code == ExitCode.TIMEOUT, outcome.log_tail
    info = read_ready(tmp_path / "ready", timeout=1)
    assert outcome.result is not None and outcome.result["stop"]["drained"] is False
    assert len(_unwound(tmp_path)) == 8
    wait_until(lambda: session_members(info["sid"]) == [], what="an empty session")
