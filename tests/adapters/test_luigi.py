"""MinigunTask inside real Luigi: ``luigi.build(..., local_scheduler=True)``.

The cancel scenario uses Luigi's own kill path: a task with ``worker_timeout`` run by a
multi-process worker, which Luigi terminates with SIGTERM when the timeout expires.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

luigi = pytest.importorskip("luigi")

from luigi.execution_summary import LuigiStatusCode  # noqa: E402

from minigun.adapters.luigi import MinigunTask, PipelineRunFailed  # noqa: E402

from .conformance import (  # noqa: E402
    CANCEL_AFTER,
    SCENARIO_NAMES,
    Expect,
    Scenario,
    assert_no_survivors,
    marked_pids,
    scenarios,
    target,
)

FAILURES: dict[str, BaseException] = {}


@MinigunTask.event_handler(luigi.Event.FAILURE)
def remember_failure(task: MinigunTask, exception: BaseException) -> None:
    FAILURES[task.task_id] = exception


def _parameter(value: Any) -> luigi.Parameter:
    if isinstance(value, bool):
        return luigi.BoolParameter(default=value)
    if isinstance(value, int):
        return luigi.IntParameter(default=value)
    return luigi.Parameter(default=value)


def task_class(scenario: Scenario, result_dir: Path) -> type[MinigunTask]:
    """A MinigunTask subclass for ``scenario``: its params become Luigi Parameters."""
    attrs: dict[str, Any] = {
        "pipeline": scenario.pipeline,
        "result_dir": str(result_dir),
        **scenario.adapter_kwargs,
        **{name: _parameter(value) for name, value in scenario.params.items()},
        # Makes every test's task distinct: Luigi caches instances by parameters.
        "run_dir": luigi.Parameter(default=str(result_dir)),
    }
    if scenario.cancel:
        attrs["worker_timeout"] = CANCEL_AFTER
    cls = type(f"Conformance_{scenario.name}", (MinigunTask,), attrs)

    def pipeline_params(self: MinigunTask) -> dict[str, Any]:
        params = MinigunTask.pipeline_params(self)
        params.pop("run_dir")
        return params

    cls.pipeline_params = pipeline_params  # type: ignore[method-assign]
    return cls


@pytest.mark.parametrize("name", SCENARIO_NAMES)
def test_conformance(tmp_path: Path, name: str) -> None:
    scenario = next(s for s in scenarios(tmp_path) if s.name == name)
    task = task_class(scenario, tmp_path / "results")()
    started = time.monotonic()
    # Two worker processes make Luigi run the task in its own process, which its
    # worker_timeout terminates with SIGTERM (the cancel scenario).
    result = luigi.build(
        [task], local_scheduler=True, detailed_summary=True, workers=2 if scenario.cancel else 1
    )
    elapsed = time.monotonic() - started
    assert elapsed < scenario.max_seconds

    if scenario.expect in (Expect.SUCCEEDED, Expect.SKIPPED):
        assert result.status in (LuigiStatusCode.SUCCESS, LuigiStatusCode.SUCCESS_WITH_RETRY)
        assert task.complete()
        written = json.loads(Path(task.output().path).read_text())
        expected = 0 if scenario.expect is Expect.SUCCEEDED else 99
        assert written["exit_code"] == expected
        if scenario.expect is Expect.SKIPPED:
            assert written["status"] == "skipped"
    else:
        assert result.status is LuigiStatusCode.FAILED, result.summary_text
        assert not task.output().exists()
        if not scenario.cancel:
            failure = FAILURES[task.task_id]
            assert isinstance(failure, PipelineRunFailed)
            if scenario.expect is Expect.FAILED_FINAL:
                assert failure.exit_code == 2
                assert failure.outcome.attempts == 1
            elif scenario.name == "timeout":
                assert failure.exit_code == 124
            else:
                assert failure.exit_code == 1
    if scenario.marker_dir is not None:
        assert_no_survivors(scenario.marker_dir, expect_forks=scenario.expect is Expect.STOPPED)


class SucceedsTask(MinigunTask):
    pipeline = target("Succeeds")
    n = luigi.IntParameter(default=5)
    marker_dir = luigi.Parameter()


class ForksTask(MinigunTask):
    pipeline = target("ForksChildren")
    marker_dir = luigi.Parameter()


def test_luigi_parameters_become_pipeline_params(tmp_path: Path) -> None:
    task = SucceedsTask(n=7, marker_dir=str(tmp_path))
    task.result_dir = str(tmp_path / "results")
    assert luigi.build([task], local_scheduler=True)
    assert json.loads(Path(task.output().path).read_text())["stats"]["total_produced"] == 7


def test_output_is_written_atomically_under_result_dir(tmp_path: Path) -> None:
    task = SucceedsTask(marker_dir=str(tmp_path / "m"))
    task.result_dir = str(tmp_path / "results")
    assert luigi.build([task], local_scheduler=True)
    assert [p.name for p in (tmp_path / "results").iterdir()] == [f"{task.task_id}.json"]


def test_pipeline_runs_outside_the_task_process(tmp_path: Path) -> None:
    task = ForksTask(marker_dir=str(tmp_path))
    task.result_dir = str(tmp_path / "results")
    assert luigi.build([task], local_scheduler=True)  # one worker: the task runs here
    (pipeline_pid,) = marked_pids(tmp_path, "pipeline")
    assert pipeline_pid != os.getpid()
    assert_no_survivors(tmp_path, expect_forks=True)


def test_example_tasks_run_from_the_command_line(tmp_path: Path) -> None:
    example = Path(__file__).parents[2] / "examples" / "luigi_tasks.py"
    proc = subprocess.run(
        [sys.executable, str(example), "Report", "--rows", "300", "--local-scheduler"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = (tmp_path / "minigun-results" / "report-300.txt").read_text()
    status, loaded = report.split(": ")
    assert status == "succeeded" and 0 < int(loaded.split()[0]) <= 300


def test_sigterm_to_a_multi_process_worker_stops_the_pipeline(tmp_path: Path) -> None:
    """``--workers 2`` forks a task process; SIGTERM kills only the worker (no handler).

    The orphaned task process must notice and stop the pipeline's process group, not
    keep it producing after its worker is gone.
    """
    marker_dir = tmp_path / "markers"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
    worker = subprocess.Popen(
        [sys.executable, "-m", "luigi", "--module", "luigi_tasks", "HangsTask",
         "--marker-dir", str(marker_dir), "--local-scheduler", "--workers", "2"],
        env=env, cwd=tmp_path,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not marked_pids(marker_dir, "fork") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert marked_pids(marker_dir, "fork"), "the pipeline never forked"
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
        assert_no_survivors(marker_dir, wait=2.0 + 5.0)  # grace + tear-down
    finally:
        if worker.poll() is None:
            worker.kill()


class WorkerTimeoutTask(MinigunTask):
    """Luigi terminates it after ``worker_timeout``; the drain must fit in that budget."""

    pipeline = target("Hangs")
    worker_timeout = 12
    grace = 6.0
    marker_dir = luigi.Parameter()


def test_worker_timeout_is_the_whole_budget_not_timeout_plus_grace(tmp_path: Path) -> None:
    task = WorkerTimeoutTask(marker_dir=str(tmp_path / "markers"))
    task.result_dir = str(tmp_path / "results")
    started = time.monotonic()
    # worker_timeout makes Luigi run the task in a TaskProcess it can terminate.
    result = luigi.build([task], local_scheduler=True, detailed_summary=True, workers=1)
    elapsed = time.monotonic() - started
    assert result.status is LuigiStatusCode.FAILED, result.summary_text
    # The runner's own deadline (worker_timeout - grace - 1 s) stops it; Luigi's
    # SIGTERM at 12 s, followed by a drain, is never needed.
    assert elapsed < WorkerTimeoutTask.worker_timeout, elapsed
    assert_no_survivors(tmp_path / "markers")


def test_default_grace_fits_luigis_kill_window() -> None:
    from minigun.adapters._kill_windows import LUIGI

    assert LUIGI.fits(MinigunTask.grace)
