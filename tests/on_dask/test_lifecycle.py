"""The LocalCluster minigun starts: sized to the machine, gone when the run ends, and
inside the runner gone with the run whatever ends it -- a timeout, a cancel, a dead
runner."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("distributed")

import minigun as mg
from minigun.core.executors.dask import local_cluster_size
from minigun.runner import ExitCode, RunOutcome, RunSpec, run_isolated
from on_dask.conftest import local_cluster_workers, stage_stats
from support import (
    assert_conserved,
    child_env,
    full_env,
    read_ready,
    session_members,
    wait_until,
)

#: A dead runner's group is gone within this many seconds (as in tests/runner).
GONE_WITHIN = 2.0
#: Starting a LocalCluster (processes that import distributed) on a loaded machine.
CLUSTER_START = 120.0

TARGET = "on_dask.pipelines:Steady"


class Squares(mg.Pipeline):
    def __init__(self, n: int = 300, sleep: float = 0.0) -> None:
        self.n = n
        self.sleep = sleep
        self.sink: list[int] = []

    @mg.producer
    def numbers(self) -> Any:
        yield from range(self.n)

    @mg.processor(execution="dask")
    def square(self, x: int) -> int:
        time.sleep(self.sleep)
        return x * x

    @mg.consumer
    def save(self, x: int) -> None:
        self.sink.append(x)


def test_a_local_cluster_is_started_for_the_run_and_closed_after_it(
    no_local_workers_left: None,
) -> None:
    pipeline = Squares()
    result = pipeline.run(max_processes=1)  # a cap lowers the cluster's size too
    assert result.status == "succeeded", result.error
    assert sorted(pipeline.sink) == [x * x for x in range(300)]
    cluster = stage_stats(result, "square")["cluster"]
    assert cluster["started_by_minigun"] is True
    assert cluster["workers"] == 1 and cluster["threads"] == 1
    assert cluster["address"].startswith("tcp://127.0.0.1:")
    assert_conserved(result)


def test_a_local_worker_sigkilled_mid_run_loses_no_item(no_local_workers_left: None) -> None:
    pipeline = Squares(n=300, sleep=0.02)
    handle = pipeline.run(background=True)
    wait_until(lambda: len(pipeline.sink) >= 20, CLUSTER_START, "the run to be under way")
    workers = local_cluster_workers()
    assert len(workers) == local_cluster_size()
    workers[0].send_signal(signal.SIGKILL)
    at_kill = len(pipeline.sink)
    result = handle.wait(timeout=240)
    assert result is not None, "the run did not end"
    assert at_kill < 300, "the worker died after the run's last item"
    assert result.status == "succeeded", result.error
    assert Counter(pipeline.sink) == Counter(x * x for x in range(300))
    assert stage_stats(result, "square")["errors"] == 0
    assert_conserved(result)


def _run_in_thread(spec: RunSpec, cancel: threading.Event | None = None) -> dict[str, Any]:
    box: dict[str, Any] = {}

    def target() -> None:
        box["outcome"] = run_isolated(spec, on_log=lambda line: None, cancel_event=cancel)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    box["thread"] = thread
    return box


def _outcome(box: dict[str, Any], timeout: float) -> RunOutcome:
    box["thread"].join(timeout)
    assert "outcome" in box, "the runner did not return"
    outcome: RunOutcome = box["outcome"]
    return outcome


def test_cancel_drains_and_closes_the_local_cluster_with_its_workers(tmp_path: Path) -> None:
    """Cancel: SIGTERM to the run's group (the LocalCluster's workers included, which
    leave it to the run), the run drains, closes the cluster and exits 143; the result
    records the cluster. Nothing of the session is left."""
    ready = tmp_path / "ready"
    cancel = threading.Event()
    spec = RunSpec(
        TARGET,
        params={"n": None, "sleep": 0.005, "ready": str(ready)},
        env=child_env(),
        cwd=str(tmp_path),
        grace=60,
    )
    box = _run_in_thread(spec, cancel)
    sid = read_ready(ready, CLUSTER_START)["sid"]
    workers = [p for p in session_members(sid) if "spawn_main" in " ".join(p.cmdline())]
    assert len(workers) == local_cluster_size(), "the LocalCluster's workers are in the group"
    cancel.set()
    outcome = _outcome(box, 180)
    assert outcome.exit_code == ExitCode.TERMINATED, outcome.log_tail[-3000:]
    assert outcome.result is not None
    assert outcome.result["stop"]["drained"] is True
    work = outcome.result["stats"]["stages"]["work"]
    assert work["cluster"]["started_by_minigun"] is True
    assert work["cluster"]["workers"] == local_cluster_size()
    assert work["cluster"]["address"].startswith("tcp://127.0.0.1:")
    assert work["items_in"] == work["processed"] > 0
    wait_until(lambda: not session_members(sid), 30, "the run's session to be empty")


def test_a_cancel_while_the_local_cluster_starts_still_drains(tmp_path: Path) -> None:
    """The SIGTERM reaches the cluster's worker processes while they start, before they
    can ignore it: the cluster is started again and the run drains what it holds."""
    started = tmp_path / "started"
    cancel = threading.Event()
    spec = RunSpec(
        TARGET,
        params={"n": 50, "sleep": 0.001, "started": str(started)},
        env=child_env(),
        cwd=str(tmp_path),
        grace=120,
    )
    box = _run_in_thread(spec, cancel)
    sid = read_ready(started, 60)["sid"]
    wait_until(
        lambda: any("spawn_main" in " ".join(p.cmdline()) for p in session_members(sid)),
        CLUSTER_START,
        "the cluster's first worker process",
        interval=0.002,
    )
    cancel.set()
    outcome = _outcome(box, 240)
    assert outcome.exit_code == ExitCode.TERMINATED, outcome.log_tail[-3000:]
    assert outcome.result is not None and outcome.result["stop"]["drained"] is True
    work = outcome.result["stats"]["stages"]["work"]
    assert work["items_in"] == work["processed"]
    wait_until(lambda: not session_members(sid), 30, "the run's session to be empty")


def test_a_timeout_ends_the_run_and_every_process_of_it(tmp_path: Path) -> None:
    """Wherever the timeout falls -- the cluster starting, items flowing -- the run ends
    with exit 124 and no process of its session is left."""
    started = tmp_path / "started"
    spec = RunSpec(
        TARGET,
        params={"n": None, "sleep": 0.001, "started": str(started)},
        env=child_env(),
        cwd=str(tmp_path),
        timeout=15,
        grace=60,
    )
    box = _run_in_thread(spec)
    sid = read_ready(started, 60)["sid"]
    outcome = _outcome(box, 240)
    assert outcome.exit_code == ExitCode.TIMEOUT, outcome.log_tail[-3000:]
    assert outcome.result is not None and outcome.result["status"] == "timeout"
    wait_until(lambda: not session_members(sid), 30, "the run's session to be empty")


_RUNNER = textwrap.dedent(
    """
    import json, sys
    from minigun.runner import RunSpec, run_isolated
    spec = RunSpec(**json.loads(sys.argv[1]))
    run_isolated(spec, on_log=lambda line: None)
    """
)


def test_a_killed_runner_takes_the_local_cluster_down_with_the_run(tmp_path: Path) -> None:
    """An orchestrator SIGKILLs the task process running the runner: the child's guard
    ends its whole group -- the LocalCluster's worker processes with it."""
    ready = tmp_path / "ready"
    spec = {
        "pipeline": TARGET,
        "params": {"n": None, "sleep": 0.005, "ready": str(ready)},
        "env": child_env(),
        "grace": 30,
    }
    runner = subprocess.Popen(
        [sys.executable, "-c", _RUNNER, json.dumps(spec)],
        cwd=tmp_path,
        env=full_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        sid = read_ready(ready, CLUSTER_START)["sid"]
        workers = [p for p in session_members(sid) if "spawn_main" in " ".join(p.cmdline())]
        assert len(workers) == local_cluster_size()
        runner.send_signal(signal.SIGKILL)
        runner.wait(timeout=10)
        wait_until(lambda: not session_members(sid), GONE_WITHIN, "the orphaned group to die")
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
