"""minigun_op / MinigunResource inside real Dagster: in-process execution of real jobs.

The cancel scenario runs a job in a separate Python process (as a Dagster run worker
would) and terminates it the way Dagster terminates a run: an interrupt (SIGINT) that
Dagster turns into an execution interrupt inside the step.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

dg = pytest.importorskip("dagster")

from minigun.adapters.dagster import MinigunResource, minigun_asset, minigun_op  # noqa: E402
from minigun.report.table import STAGE_COLUMNS, stage_table  # noqa: E402

from .conformance import (  # noqa: E402
    CANCEL_AFTER,
    GRACE,
    SCENARIO_NAMES,
    Expect,
    assert_no_survivors,
    marked_pids,
    scenarios,
    target,
)


def run_job(op_def: dg.OpDefinition, resource: MinigunResource, *, downstream: bool = False):
    if downstream:

        @dg.op
        def after(result: dict) -> int:
            return result["exit_code"]

        @dg.job
        def job_with_downstream() -> None:
            after(op_def())

        job = job_with_downstream
    else:

        @dg.job
        def single_op_job() -> None:
            op_def()

        job = single_op_job
    return job.execute_in_process(resources={"minigun": resource}, raise_on_error=False)


def events(result: Any, kind: str) -> list[Any]:
    return [e for e in result.all_events if e.event_type_value == kind]


def run_worker_script(marker_dir: Path) -> str:
    return textwrap.dedent(
        f"""
        import dagster as dg
        from minigun.adapters.dagster import MinigunResource, minigun_op

        hang = minigun_op(name="hang", pipeline={target("Hangs")!r},
                          params={{"marker_dir": {str(marker_dir)!r}}})

        @dg.job
        def cancel_job():
            hang()

        instance = dg.DagsterInstance.get()
        result = cancel_job.execute_in_process(
            instance=instance, raise_on_error=False,
            resources={{"minigun": MinigunResource(grace={GRACE})}})
        print("RUN_STATUS", instance.get_run_by_id(result.run_id).status.value, flush=True)
        """
    )


@pytest.mark.parametrize("name", SCENARIO_NAMES)
def test_conformance(tmp_path: Path, name: str) -> None:
    scenario = next(s for s in scenarios(tmp_path) if s.name == name)
    if scenario.cancel:
        assert scenario.marker_dir is not None
        script = tmp_path / "run_worker.py"
        script.write_text(run_worker_script(scenario.marker_dir))
        env = dict(os.environ, DAGSTER_HOME=str(tmp_path))
        (tmp_path / "dagster.yaml").touch()
        proc = subprocess.Popen(
            [sys.executable, str(script)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 60
        while not marked_pids(scenario.marker_dir, "fork") and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(CANCEL_AFTER / 4)
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=scenario.max_seconds)
        assert "RUN_STATUS" in output, output[-3000:]
        status = output.split("RUN_STATUS", 1)[1].split()[0]
        assert status in {"CANCELED", "FAILURE"}, output[-3000:]
        assert_no_survivors(scenario.marker_dir)
        return

    op_def = minigun_op(
        name=scenario.name,
        pipeline=scenario.pipeline,
        params=scenario.params,
        retry_policy=dg.RetryPolicy(max_retries=1),
    )
    resource = MinigunResource(**scenario.adapter_kwargs)
    started = time.monotonic()
    result = run_job(op_def, resource, downstream=True)
    elapsed = time.monotonic() - started
    retries = len(events(result, "STEP_UP_FOR_RETRY"))

    if scenario.expect is Expect.SUCCEEDED:
        assert result.success
        value = result.output_for_node(scenario.name)
        assert value["exit_code"] == 0
    elif scenario.expect is Expect.SKIPPED:
        assert result.success
        assert not events(result, "STEP_OUTPUT")
        assert events(result, "STEP_SKIPPED"), "the downstream op should be skipped"
    else:
        assert not result.success
        (failure,) = events(result, "STEP_FAILURE")
        metadata = failure.event_specific_data.error_display_string
        assert "exit code" in metadata
        if scenario.expect is Expect.FAILED_FINAL:
            assert retries == 0  # Failure(allow_retries=False) beats the RetryPolicy
            assert elapsed < scenario.max_seconds
        else:
            assert retries == 1
    if scenario.marker_dir is not None:
        assert_no_survivors(scenario.marker_dir, expect_forks=scenario.expect is Expect.STOPPED)


def test_output_metadata_carries_items_throughput_duration_and_stage_table(
    tmp_path: Path,
) -> None:
    op_def = minigun_op(name="succeeds", pipeline=target("Succeeds"), params={"n": 9})
    result = run_job(op_def, MinigunResource())
    assert result.success
    (output,) = events(result, "STEP_OUTPUT")
    metadata = output.event_specific_data.metadata
    assert metadata["items_produced"].value == 9
    assert {"throughput", "duration", "attempts"} <= set(metadata)
    table = metadata["stages"].value
    assert {record.data["stage"] for record in table.records} == {"numbers", "square", "discard"}
    # the one stage table (minigun report, Prefect, Airflow): same columns, same rows
    expected = stage_table(result.output_for_node("succeeds"))
    assert [dict(record.data) for record in table.records] == expected
    assert [c.name for c in table.schema.columns] == [c.key for c in STAGE_COLUMNS]
    types = {c.name: c.type for c in table.schema.columns}
    assert (types["stage"], types["items_in"], types["latency_p99"]) == ("string", "int", "float")


def test_settings_that_make_no_run_fail_without_retry() -> None:
    op_def = minigun_op(
        name="invalid", pipeline="no target here", retry_policy=dg.RetryPolicy(max_retries=2)
    )
    result = run_job(op_def, MinigunResource())
    assert not result.success
    assert not events(result, "STEP_UP_FOR_RETRY")


def test_transient_failure_requests_a_dagster_retry(tmp_path: Path) -> None:
    op_def = minigun_op(
        name="flaky", pipeline=target("FlakyOnce"), params={"marker": str(tmp_path / "m")}
    )
    result = run_job(op_def, MinigunResource(runner_retries=0))
    assert result.success
    assert len(events(result, "STEP_UP_FOR_RETRY")) == 1


def test_run_config_params_override_static_params() -> None:
    op_def = minigun_op(name="succeeds", pipeline=target("Succeeds"), params={"n": 9})

    @dg.job
    def configured() -> None:
        op_def()

    result = configured.execute_in_process(
        resources={"minigun": MinigunResource()},
        run_config={"ops": {"succeeds": {"config": {"params": {"n": 4}}}}},
    )
    assert result.output_for_node("succeeds")["stats"]["total_produced"] == 4


def test_asset_factory_materialises_the_result_json() -> None:
    asset = minigun_asset(name="squares", pipeline=target("Succeeds"), params={"n": 3})
    result = dg.materialize([asset], resources={"minigun": MinigunResource()})
    assert result.success
    assert result.output_for_node("squares")["stats"]["total_produced"] == 3


def test_pipeline_runs_outside_the_step_process(tmp_path: Path) -> None:
    op_def = minigun_op(
        name="forks", pipeline=target("ForksChildren"), params={"marker_dir": str(tmp_path)}
    )
    assert run_job(op_def, MinigunResource()).success
    (pipeline_pid,) = marked_pids(tmp_path, "pipeline")
    assert pipeline_pid != os.getpid()  # the in-process executor runs steps here
    assert_no_survivors(tmp_path, expect_forks=True)


def test_example_definitions_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # the example ETL writes etl.sqlite into its cwd
    example = Path(__file__).parents[2] / "examples" / "dagster_defs.py"
    spec = importlib.util.spec_from_file_location("dagster_defs", example)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    job = module.defs.resolve_job_def("nightly_etl_job")  # resources bound by the defs
    result = job.execute_in_process(
        run_config={"ops": {"nightly_etl": {"config": {"params": {"rows": 300}}}}}
    )
    assert result.success
    assert result.output_for_node("nightly_etl")["stats"]["total_produced"] == 300
    assert dg.materialize(
        [module.orders_table], resources={"minigun": module.MinigunResource()}
    ).success


def test_failure_description_leaves_the_log_tail_to_its_metadata() -> None:
    op_def = minigun_op(name="fails", pipeline=target("Fails"))
    result = run_job(op_def, MinigunResource())
    (failure,) = events(result, "STEP_FAILURE")
    user_failure = failure.step_failure_data.user_failure_data
    tail = user_failure.metadata["log_tail"].value
    assert "boom on item 3" in user_failure.description  # the error, once
    assert len(tail.splitlines()) > 1
    assert user_failure.description.count("\n") == 0, user_failure.description


def test_default_grace_fits_dagsters_kill_window() -> None:
    from minigun.adapters._kill_windows import DAGSTER

    assert DAGSTER.fits(MinigunResource().grace)
