"""Airflow 3: ``airflow standalone`` (LocalExecutor, SQLite) on loopback, driven by its
REST API.

Airflow notices a task marked failed at the supervisor's next heartbeat check; the
checks run every second here (``[workers] min_heartbeat_interval``), so the stop
action's own latency stays well inside the contract's 5 s of slack.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import pytest

pytest.importorskip("airflow")

from minigun.adapters._kill_windows import AIRFLOW

from .airflow_dags import EXECUTION_TIMEOUT, render
from .support import (
    Server,
    assert_drain_lines_streamed,
    assert_group_gone_in_time,
    free_port,
    group_cleanup,
    http_json,
    http_ok,
    read_pgid,
    wait_for,
    wait_group_busy,
    watch_group_end,
)

#: ``airflow standalone`` migrates the database, then starts the API server, scheduler,
#: DAG processor and triggerer: more than a minute on a loaded machine.
STARTUP = 420.0
KILL_WINDOW = AIRFLOW.seconds
DEFAULT_GRACE = AIRFLOW.default_grace

pytestmark = pytest.mark.timeout(900)  # the first test also waits for the server


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


@dataclass
class Airflow:
    url: str
    workdir: Path
    token: str = ""

    def api(self, method: str, path: str, body: Any = None) -> Any:
        """One REST call. On SQLite the API server answers 500 "Database error" while
        another process (the scheduler, a task's heartbeat) holds the database lock;
        such a call is retried within a deadline, as a user would retry it."""
        headers = {"Authorization": f"Bearer {self.token}"}
        deadline = time.monotonic() + 60
        while True:
            try:
                return http_json(method, f"{self.url}/api/v2{path}", body, headers)
            except AssertionError as exc:
                if "-> HTTP 5" not in str(exc) or time.monotonic() > deadline:
                    raise
            time.sleep(0.5)

    def trigger(self, dag_id: str) -> str:
        wait_for(lambda: self.api("GET", f"/dags/{dag_id}"), 240, f"Airflow to parse {dag_id}")
        self.api("PATCH", f"/dags/{dag_id}", {"is_paused": False})
        run = self.api("POST", f"/dags/{dag_id}/dagRuns", {"logical_date": None})
        return str(run["dag_run_id"])

    def task(self, dag_id: str, run_id: str, task_id: str) -> dict[str, Any]:
        return dict(self.api("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}"))

    def wait_state(
        self, dag_id: str, run_id: str, task_id: str, states: set[str], timeout: float = 180
    ) -> str:
        return wait_for(
            lambda: s if (s := self.task(dag_id, run_id, task_id)["state"]) in states else None,
            timeout,
            f"{dag_id}.{task_id} to reach {sorted(states)}",
            interval=1.0,
        )

    def log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> list[Any]:
        path = f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}"
        content = self.api("GET", f"{path}?full_content=true")["content"]
        return list(content)

    def stamped_lines(self, dag_id: str, run_id: str, task_id: str) -> list[tuple[float, str]]:
        """The task log's entries as (time, "LEVEL event")."""
        stamped = []
        for entry in self.log(dag_id, run_id, task_id):
            if isinstance(entry, dict) and entry.get("timestamp"):
                text = f"{str(entry.get('level', '')).upper()} {entry.get('event', '')}"
                stamped.append((_epoch(entry["timestamp"]), text))
        return stamped


@pytest.fixture(scope="module")
def airflow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Airflow]:
    home = tmp_path_factory.mktemp("airflow-home")
    workdir = tmp_path_factory.mktemp("airflow-work")
    (home / "dags").mkdir()
    (home / "dags" / "minigun_e2e.py").write_text(render(workdir))
    port = free_port()
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.5",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    airflow_bin = str(Path(sys.executable).with_name("airflow"))
    server = Server("airflow standalone", [airflow_bin, "standalone"], env=env, cwd=home,
                    log=home / "standalone.log")  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(
            lambda: server.check_alive() and http_ok(f"{url}/api/v2/monitor/health"),
            STARTUP,
            f"airflow standalone to answer on {url}",
            interval=2.0,
        )
        passwords = home / "simple_auth_manager_passwords.json.generated"
        password = wait_for(
            lambda: json.loads(passwords.read_text()).get("admin"), 120, "the admin password"
        )
        token = http_json("POST", f"{url}/auth/token", {"username": "admin", "password": password})
        yield Airflow(url, workdir, token["access_token"])
    finally:
        server.stop()


def _drain_run(airflow: Airflow, dag_id: str) -> tuple[str, int]:
    run_id = airflow.trigger(dag_id)
    pgid = read_pgid(airflow.workdir / f"{dag_id}.pgid", timeout=240)
    wait_group_busy(pgid)
    time.sleep(2)  # a few working lines before the stop
    return run_id, pgid


def test_airflow_success_skip_and_failure(airflow: Airflow) -> None:
    run_id = airflow.trigger("mg_basic")
    for task_id, state in (("success", "success"), ("skip", "skipped"), ("failure", "failed")):
        with group_cleanup(airflow.workdir / f"mg_basic.{task_id}.pgid"):
            assert airflow.wait_state("mg_basic", run_id, task_id, {state, "failed", "success",
                                      "skipped", "upstream_failed"}) == state  # fmt: skip
    xcom = airflow.api("GET", f"/dags/mg_basic/dagRuns/{run_id}/taskInstances/success"
                              "/xcomEntries/return_value?deserialize=true")  # fmt: skip
    assert "succeeded" in json.dumps(xcom["value"])


def test_airflow_failure_logs_the_traceback_at_error(airflow: Airflow) -> None:
    runs = airflow.api("GET", "/dags/mg_basic/dagRuns")["dag_runs"]
    run_id = runs[0]["dag_run_id"]
    airflow.wait_state("mg_basic", run_id, "failure", {"failed"})
    lines = airflow.stamped_lines("mg_basic", run_id, "failure")
    relayed = [
        text for _, text in lines
        if "ValueError: e2e: boom on item 2" in text and "minigun pipeline" not in text
    ]  # fmt: skip
    assert relayed, "the pipeline's traceback never reached the task log"
    assert all(line.startswith("ERROR") for line in relayed), relayed


def _mark_failed(airflow: Airflow, scenario: str, dag_id: str, grace: float) -> None:
    run_id, pgid = _drain_run(airflow, dag_id)
    with group_cleanup(airflow.workdir / f"{dag_id}.pgid"):
        airflow.api("PATCH", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/drain",
                    {"new_state": "failed"})  # fmt: skip
        action = time.time()  # the platform's action: the PATCH it accepted
        m = watch_group_end(scenario, pgid, action, grace=grace, window=KILL_WINDOW)
        m.state = airflow.wait_state(dag_id, run_id, "drain", {"failed", "success"})
        end = action + (m.gone_after if m.gone_after is not None else m.watched)
        lines = airflow.stamped_lines(dag_id, run_id, "drain")
        assert m.state == "failed"
        assert_group_gone_in_time(m)
        assert_drain_lines_streamed(lines, action, end, f"Airflow task log of {dag_id}")


def test_airflow_mark_failed_with_the_default_grace(airflow: Airflow) -> None:
    _mark_failed(airflow, f"airflow: mark failed, grace={DEFAULT_GRACE:g} (default)",
                 "mg_mark_failed_default_grace", DEFAULT_GRACE)  # fmt: skip


def test_airflow_mark_failed_with_grace_30_and_25s_items(airflow: Airflow) -> None:
    _mark_failed(airflow, "airflow: mark failed, grace=30, 25 s items",
                 "mg_mark_failed_grace30", 30.0)  # fmt: skip


def test_airflow_execution_timeout(airflow: Airflow) -> None:
    dag_id = "mg_execution_timeout"
    run_id, pgid = _drain_run(airflow, dag_id)
    with group_cleanup(airflow.workdir / f"{dag_id}.pgid"):
        started = _epoch(airflow.task(dag_id, run_id, "drain")["start_date"])
        action = started + EXECUTION_TIMEOUT  # Airflow raises AirflowTaskTimeout in the task
        m = watch_group_end(f"airflow: execution_timeout={EXECUTION_TIMEOUT}s, grace=3",
                            pgid, action, grace=DEFAULT_GRACE, window=None)  # fmt: skip
        m.state = airflow.wait_state(dag_id, run_id, "drain", {"failed", "success"})
        assert m.state == "failed"
        assert_group_gone_in_time(m)


def test_airflow_kill_9_of_the_task_process(airflow: Airflow) -> None:
    dag_id = "mg_kill9"
    run_id, pgid = _drain_run(airflow, dag_id)
    with group_cleanup(airflow.workdir / f"{dag_id}.pgid"):
        task_process = psutil.Process(pgid).ppid()  # the process that called run_isolated
        action = time.time()
        os.kill(task_process, signal.SIGKILL)
        m = watch_group_end("airflow: kill -9 of the task process", pgid, action,
                            grace=DEFAULT_GRACE, window=0.0)  # fmt: skip
        m.state = airflow.wait_state(dag_id, run_id, "drain", {"failed", "up_for_retry"})
        assert m.state == "failed"
        assert_group_gone_in_time(m)
