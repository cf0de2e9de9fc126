"""minigun_task inside real Prefect 3: flows run against Prefect's test harness server.

One harness (a temporary local API server, about 25 s to start) serves the module.
Cancellation goes through Prefect's own machinery: the flow is deployed, started by a
``prefect.runner.Runner`` in a subprocess, and cancelled through the API; the Runner
delivers it to the flow process, where it must stop the pipeline's process group.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("prefect")

import anyio
from prefect import flow, get_client
from prefect.artifacts import Artifact
from prefect.runner import Runner
from prefect.states import Cancelling, State
from prefect.testing.utilities import prefect_test_harness

from minigun.adapters.prefect import PipelineRunFailed, minigun_task
from minigun.report.table import STAGE_COLUMNS, stage_table

from .conformance import (
    CANCEL_AFTER,
    GRACE,
    SCENARIO_NAMES,
    Expect,
    assert_no_survivors,
    marked_pids,
    scenarios,
    target,
)


@pytest.fixture(scope="module", autouse=True)
def harness() -> Any:
    with prefect_test_harness(server_startup_timeout=120):
        yield


def run_in_flow(task_obj: Any, **params: Any) -> State:
    """Call ``task_obj`` in a fresh flow run; return the task's final state."""
    box: dict[str, State] = {}

    @flow(name="minigun-conformance")
    def conformance_flow() -> None:
        box["state"] = task_obj(**params, return_state=True)

    conformance_flow(return_state=True)
    return box["state"]


def run_count(state: State) -> int:
    with get_client(sync_client=True) as client:
        return client.read_task_run(state.state_details.task_run_id).run_count


def cancel_through_runner(marker_dir: Path) -> State:
    """Serve prefect_flows.hang with a Runner, start a run, cancel it through the API.

    The Runner watches for cancellation and delivers it to the flow-run process it
    started, exactly as in a deployment; the flow must then stop the pipeline.
    """
    from .prefect_flows import hang  # a deployment needs a flow defined in a file

    def cancel_when_forks_run(flow_run_id: Any) -> None:
        deadline = time.monotonic() + 60
        while not marked_pids(marker_dir, "fork") and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(CANCEL_AFTER / 4)
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(flow_run_id, Cancelling(), force=True)

    async def serve_one_run() -> Any:
        runner = Runner(query_seconds=1, webserver=False)
        deployment_id = await runner.aadd_flow(hang, name="cancel-test")
        async with get_client() as client:
            flow_run = await client.create_flow_run_from_deployment(
                deployment_id, parameters={"marker_dir": str(marker_dir), "grace": GRACE}
            )
        threading.Thread(target=cancel_when_forks_run, args=(flow_run.id,), daemon=True).start()
        await runner.start(run_once=True)  # returns once the run's process has exited
        return flow_run.id

    previous = signal.getsignal(signal.SIGTERM)  # Runner.start installs its own handler
    try:
        flow_run_id = anyio.run(serve_one_run)
    finally:
        signal.signal(signal.SIGTERM, previous)
    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id).state


@pytest.mark.parametrize("name", SCENARIO_NAMES)
def test_conformance(tmp_path: Path, name: str) -> None:
    scenario = next(s for s in scenarios(tmp_path) if s.name == name)
    if scenario.cancel:
        started = time.monotonic()
        state = cancel_through_runner(scenario.marker_dir)  # type: ignore[arg-type]
        assert state.is_cancelled(), state
        assert time.monotonic() - started < scenario.max_seconds + 30
        assert_no_survivors(scenario.marker_dir)  # type: ignore[arg-type]
        return

    task_obj = minigun_task(scenario.pipeline, retries=1, **scenario.adapter_kwargs)
    started = time.monotonic()
    state = run_in_flow(task_obj, **scenario.params)
    elapsed = time.monotonic() - started

    if scenario.expect is Expect.SUCCEEDED:
        assert state.is_completed() and state.message != "skipped", state
        assert state.result()["exit_code"] == 0
    elif scenario.expect is Expect.SKIPPED:
        assert state.is_completed(), state
        assert state.message == "skipped"
        assert state.result()["exit_code"] == 99
    else:
        assert state.is_failed(), state
        with pytest.raises(PipelineRunFailed) as failure:
            state.result()
        # FAILED_FINAL is not retried although the task has retries=1.
        expected_runs = 1 if scenario.expect is Expect.FAILED_FINAL else 2
        assert run_count(state) == expected_runs
        if scenario.expect is Expect.FAILED_FINAL:
            assert failure.value.exit_code == 2
            assert elapsed < scenario.max_seconds
    if scenario.marker_dir is not None:
        assert_no_survivors(scenario.marker_dir, expect_forks=scenario.expect is Expect.STOPPED)


def test_decorated_pipeline_class_is_a_task_taking_params_as_keywords(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from .prefect_flows import Countdown

    # Countdown lives in a package module (adapters.prefect_flows): the child imports it
    # by that name, so it needs the tests directory on its path.
    tests_dir = str(Path(__file__).parents[1])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([tests_dir, os.environ.get("PYTHONPATH", "")]))
    state = run_in_flow(Countdown, n=7)
    assert state.is_completed(), state
    assert state.result()["stats"]["total_produced"] == 7


def test_example_flow_runs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # the example ETL writes etl.sqlite into its cwd
    example = Path(__file__).parents[2] / "examples" / "prefect_flow.py"
    spec = importlib.util.spec_from_file_location("prefect_flow", example)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "prefect_flow", module)
    spec.loader.exec_module(module)
    result = module.example_flow(rows=300)
    assert result["status"] == "succeeded"
    assert result["stats"]["total_produced"] == 300


def test_stage_stats_table_artifact_is_published() -> None:
    state = run_in_flow(minigun_task(target("Succeeds"), artifact_key="minigun-stats"), n=5)
    assert state.is_completed()
    artifact = Artifact.get("minigun-stats")
    assert artifact is not None and artifact.type == "table"
    rows = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
    # the one stage table (minigun report, Dagster, Airflow): same columns, same rows
    assert rows == stage_table(state.result())
    assert [row["stage"] for row in rows] == ["numbers", "square", "discard"]
    assert all(list(row) == [c.key for c in STAGE_COLUMNS] for row in rows)


def test_prefect_timeout_seconds_stops_the_pipeline(tmp_path: Path) -> None:
    task_obj = minigun_task(target("Hangs"), timeout_seconds=CANCEL_AFTER, grace=GRACE)
    state = run_in_flow(task_obj, marker_dir=str(tmp_path))
    assert state.is_failed(), state
    assert_no_survivors(tmp_path)


def test_pipeline_runs_outside_the_task_process(tmp_path: Path) -> None:
    state = run_in_flow(minigun_task(target("ForksChildren")), marker_dir=str(tmp_path))
    assert state.is_completed()
    (pipeline_pid,) = marked_pids(tmp_path, "pipeline")
    assert pipeline_pid != os.getpid()  # sync Prefect tasks run in this process
    assert_no_survivors(tmp_path, expect_forks=True)


def test_same_params_twice_runs_the_pipeline_twice(tmp_path: Path) -> None:
    """No silent caching: a pipeline run is a side effect."""
    task_obj = minigun_task(target("Succeeds"))

    @flow(name="minigun-twice")
    def twice() -> None:
        task_obj(n=2, marker_dir=str(tmp_path))
        task_obj(n=2, marker_dir=str(tmp_path))

    twice()
    assert len(marked_pids(tmp_path, "pipeline")) == 2


def test_settings_that_make_no_run_fail_without_retry() -> None:
    state = run_in_flow(minigun_task("no target here", retries=2))
    assert state.is_failed(), state
    assert run_count(state) == 1


def test_a_skipped_run_hands_the_flow_the_result_json() -> None:
    skips = minigun_task(target("Skips"))

    @flow(name="minigun-reads-skip")
    def reads_status() -> str:
        return skips()["status"]

    assert reads_status() == "skipped"


def test_artifacts_are_keyed_by_default_so_prefect_lists_them() -> None:
    state = run_in_flow(minigun_task(target("Succeeds"), name="NightlySync"), n=3)
    assert state.is_completed()
    artifact = Artifact.get("minigun-nightly-sync")
    assert artifact is not None and artifact.type == "table"


def test_default_grace_fits_prefects_kill_window(monkeypatch: pytest.MonkeyPatch) -> None:
    from minigun.adapters import prefect as adapter
    from minigun.adapters._kill_windows import PREFECT

    seen: dict[str, Any] = {}
    real_build_spec = adapter.build_spec

    def spying_build_spec(*args: Any, **kwargs: Any) -> Any:
        seen.update(kwargs)
        return real_build_spec(*args, **kwargs)

    monkeypatch.setattr(adapter, "build_spec", spying_build_spec)
    assert run_in_flow(minigun_task(target("Succeeds")), n=1).is_completed()
    assert PREFECT.fits(seen["grace"]), seen
    assert not PREFECT.fits(40)
