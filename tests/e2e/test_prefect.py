"""Prefect 3: ``prefect server start`` on loopback and a ``prefect.serve`` process
serving the flows of :mod:`prefect_serve`, driven through the REST API and the CLI.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("prefect")

from minigun.adapters._kill_windows import PREFECT

from .support import (
    HERE,
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

pytestmark = pytest.mark.timeout(900)  # the first test also waits for the servers

STARTUP = 300.0
KILL_WINDOW = PREFECT.seconds
LEVELS = {10: "DEBUG", 20: "INFO", 30: "WARNING", 40: "ERROR", 50: "CRITICAL"}


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


@dataclass
class Prefect:
    api: str
    env: dict[str, str]
    workdir: Path

    def run(self, flow: str, **parameters: Any) -> str:
        deployment = wait_for(
            lambda: http_json("GET", f"{self.api}/deployments/name/{flow}/e2e"),
            120,
            f"the served deployment {flow}/e2e",
        )
        # A busy server (SQLite, two loaded cores) may answer 503 for a while.
        run = wait_for(
            lambda: http_json(
                "POST",
                f"{self.api}/deployments/{deployment['id']}/create_flow_run",
                {"parameters": parameters},
            ),
            120,
            f"a flow run of {flow}/e2e",
            interval=2.0,
        )
        return str(run["id"])

    def state(self, flow_run_id: str) -> dict[str, Any]:
        return dict(http_json("GET", f"{self.api}/flow_runs/{flow_run_id}")["state"] or {})

    def wait_final(self, flow_run_id: str, timeout: float = 240) -> str:
        final = {"COMPLETED", "FAILED", "CANCELLED", "CRASHED"}
        return wait_for(
            lambda: t if (t := self.state(flow_run_id).get("type")) in final else None,
            timeout,
            f"flow run {flow_run_id} to finish",
            interval=1.0,
        )

    def task_states(self, flow_run_id: str) -> list[dict[str, Any]]:
        runs = http_json(
            "POST",
            f"{self.api}/task_runs/filter",
            {"flow_runs": {"id": {"any_": [flow_run_id]}}},
        )
        return [dict(r["state"] or {}) for r in runs]

    def stamped_lines(self, flow_run_id: str) -> list[tuple[float, str]]:
        """The flow run's logs as (time, "LEVEL message")."""
        stamped, offset = [], 0
        while True:
            page = http_json(
                "POST",
                f"{self.api}/logs/filter",
                {"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "sort": "TIMESTAMP_ASC",
                 "limit": 200, "offset": offset},
            )  # fmt: skip
            for log in page:
                level = LEVELS.get(int(log["level"]), str(log["level"]))
                for line in str(log["message"]).splitlines() or [""]:
                    stamped.append((_epoch(log["timestamp"]), f"{level} {line}"))
            if len(page) < 200:
                return stamped
            offset += len(page)

    def cancel(self, flow_run_id: str) -> None:
        prefect_bin = str(Path(sys.executable).with_name("prefect"))
        subprocess.run([prefect_bin, "flow-run", "cancel", flow_run_id], env=self.env,
                       check=True, capture_output=True, timeout=120)  # fmt: skip


@pytest.fixture(scope="module")
def prefect(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prefect]:
    home = tmp_path_factory.mktemp("prefect-home")
    workdir = tmp_path_factory.mktemp("prefect-work")
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": api,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "PREFECT_LOGGING_TO_API_BATCH_INTERVAL": "0.5",
    }
    prefect_bin = str(Path(sys.executable).with_name("prefect"))
    server = Server("prefect server", [prefect_bin, "server", "start", "--host", "127.0.0.1",
                    "--port", str(port)], env=env, cwd=home, log=home / "server.log")  # fmt: skip
    servers = [server]
    try:
        wait_for(lambda: server.check_alive() and http_ok(f"{api}/health"), STARTUP,
                 f"prefect server to answer on {api}", interval=2.0)  # fmt: skip
        serving = Server("prefect serve", [sys.executable, str(HERE / "prefect_serve.py")],
                         env=env, cwd=workdir, log=home / "serve.log")  # fmt: skip
        servers.append(serving)
        yield Prefect(api, env, workdir)
    finally:
        for each in reversed(servers):
            each.stop()


def test_prefect_success(prefect: Prefect) -> None:
    pgid_file = prefect.workdir / "success.pgid"
    with group_cleanup(pgid_file):
        run = prefect.run("mg-success", pgid_file=str(pgid_file))
        assert prefect.wait_final(run) == "COMPLETED"


def test_prefect_skip_hands_the_flow_the_result_json(prefect: Prefect) -> None:
    pgid_file = prefect.workdir / "skip.pgid"
    with group_cleanup(pgid_file):
        run = prefect.run("mg-skip", pgid_file=str(pgid_file))
        assert prefect.wait_final(run) == "COMPLETED", prefect.state(run)
        (task_state,) = prefect.task_states(run)
        assert task_state["type"] == "COMPLETED" and task_state["message"] == "skipped"
    listed = http_json("POST", f"{prefect.api}/artifacts/filter",
                       {"artifacts": {"key": {"any_": ["minigun-skips"]}}})  # fmt: skip
    assert listed, "the run's artifact has no key, so `prefect artifact ls` does not list it"


def test_prefect_failure(prefect: Prefect) -> None:
    pgid_file = prefect.workdir / "failure.pgid"
    with group_cleanup(pgid_file):
        run = prefect.run("mg-failure", pgid_file=str(pgid_file))
        assert prefect.wait_final(run) == "FAILED"


def test_prefect_failure_logs_the_traceback_at_error(prefect: Prefect) -> None:
    pgid_file = prefect.workdir / "failure-log.pgid"
    with group_cleanup(pgid_file):
        run = prefect.run("mg-failure", pgid_file=str(pgid_file))
        prefect.wait_final(run)
        time.sleep(2)  # logs are shipped in batches
        relayed = [
            text for _, text in prefect.stamped_lines(run)
            if "ValueError: e2e: boom on item 2" in text and "minigun pipeline" not in text
        ]  # fmt: skip
        assert relayed, "the pipeline's traceback never reached the flow run's logs"
        assert all(line.startswith("ERROR") for line in relayed), relayed


def _cancel(prefect: Prefect, scenario: str, name: str, grace: float | None) -> None:
    pgid_file = prefect.workdir / f"{name}.pgid"
    with group_cleanup(pgid_file):
        params: dict[str, Any] = {"pgid_file": str(pgid_file), "item_seconds": 25.0}
        if grace is not None:
            params["grace"] = grace
        run = prefect.run("mg-drain", **params)
        pgid = read_pgid(pgid_file, timeout=240)
        wait_group_busy(pgid)
        time.sleep(2)  # a few working lines before the stop
        prefect.cancel(run)
        action = time.time()  # the cancel is recorded once the CLI returns
        effective = PREFECT.default_grace if grace is None else grace
        m = watch_group_end(scenario, pgid, action, grace=effective, window=KILL_WINDOW)
        m.state = prefect.wait_final(run, timeout=120)
        end = action + (m.gone_after if m.gone_after is not None else m.watched)
        time.sleep(2)  # logs are shipped in batches
        lines = prefect.stamped_lines(run)
        assert m.state == "CANCELLED"
        assert_group_gone_in_time(m)
        assert_drain_lines_streamed(lines, action, end, "Prefect flow run logs")


def test_prefect_cancel_with_the_default_grace(prefect: Prefect) -> None:
    _cancel(prefect, f"prefect: cancel, grace={PREFECT.default_grace:g} (default)",
            "cancel-default", None)  # fmt: skip


def test_prefect_cancel_with_grace_40_and_25s_items(prefect: Prefect) -> None:
    _cancel(prefect, "prefect: cancel, grace=40, 25 s items", "cancel-grace40", 40.0)
