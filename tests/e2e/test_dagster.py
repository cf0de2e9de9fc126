"""Dagster: ``dagster dev`` (webserver, daemon, code server) on loopback, driven through
GraphQL (runs launched and terminated with ``DagsterGraphQLClient``, logs read with a
``logsForRun`` query).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("dagster_graphql")

from dagster_graphql import DagsterGraphQLClient

from minigun.adapters._kill_windows import DAGSTER

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

pytestmark = pytest.mark.timeout(900)  # the first test also waits for the server

STARTUP = 300.0
#: The terminate scenario's grace (run config of the ``minigun`` resource).
GRACE = 10.0

LOGS = """
query Logs($runId: ID!, $after: String) {
  logsForRun(runId: $runId, afterCursor: $after) {
    __typename
    ... on EventConnection {
      cursor
      hasMore
      events { __typename ... on MessageEvent { message timestamp level } }
    }
  }
}
"""


@dataclass
class Dagster:
    url: str
    client: DagsterGraphQLClient
    workdir: Path

    def run(self, job: str, grace: float | None = None, **params: Any) -> str:
        config: dict[str, Any] = {"ops": {f"{job}_op": {"config": {"params": params}}}}
        if grace is not None:
            config["resources"] = {"minigun": {"config": {"grace": grace}}}
        return str(
            wait_for(
                lambda: self.client.submit_job_execution(job, run_config=config),
                120,
                f"dagster to launch {job}",
                interval=2.0,
            )
        )

    def status(self, run_id: str) -> str:
        return str(self.client.get_run_status(run_id).value)

    def wait_final(self, run_id: str, timeout: float = 240) -> str:
        final = {"SUCCESS", "FAILURE", "CANCELED"}
        return wait_for(
            lambda: s if (s := self.status(run_id)) in final else None,
            timeout,
            f"run {run_id} to finish",
            interval=1.0,
        )

    def stamped_lines(self, run_id: str) -> list[tuple[float, str]]:
        """The run's event log messages as (time, "LEVEL message")."""
        stamped: list[tuple[float, str]] = []
        after = None
        while True:
            variables = {"runId": run_id, "after": after}
            body = {"query": LOGS, "variables": variables}
            reply = http_json("POST", f"{self.url}/graphql", body)
            connection = reply["data"]["logsForRun"]
            for event in connection.get("events", []):
                if "message" in event and event.get("timestamp"):
                    t = float(event["timestamp"]) / 1000
                    for line in str(event["message"]).splitlines() or [""]:
                        stamped.append((t, f"{event['level']} {line}"))
            if not connection.get("hasMore"):
                return stamped
            after = connection["cursor"]


@pytest.fixture(scope="module")
def dagster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dagster]:
    home = tmp_path_factory.mktemp("dagster-home")
    workdir = tmp_path_factory.mktemp("dagster-work")
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    port = free_port()
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    dagster_bin = str(Path(sys.executable).with_name("dagster"))
    server = Server("dagster dev", [dagster_bin, "dev", "-h", "127.0.0.1", "-p", str(port),
                    "-f", str(HERE / "dagster_defs.py")], env=env, cwd=workdir,
                    log=home / "dev.log")  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: server.check_alive() and http_ok(f"{url}/server_info"), STARTUP,
                 f"dagster dev to answer on {url}", interval=2.0)  # fmt: skip
        yield Dagster(url, DagsterGraphQLClient("127.0.0.1", port_number=port), workdir)
    finally:
        server.stop()


def test_dagster_success(dagster: Dagster) -> None:
    pgid_file = dagster.workdir / "success.pgid"
    with group_cleanup(pgid_file):
        assert dagster.wait_final(dagster.run("mg_success", pgid_file=str(pgid_file))) == "SUCCESS"


def test_dagster_skip(dagster: Dagster) -> None:
    pgid_file = dagster.workdir / "skip.pgid"
    with group_cleanup(pgid_file):
        run = dagster.run("mg_skip", pgid_file=str(pgid_file))
        assert dagster.wait_final(run) == "SUCCESS"
        assert any("skipped" in text for _, text in dagster.stamped_lines(run))


def test_dagster_failure(dagster: Dagster) -> None:
    pgid_file = dagster.workdir / "failure.pgid"
    with group_cleanup(pgid_file):
        assert dagster.wait_final(dagster.run("mg_failure", pgid_file=str(pgid_file))) == "FAILURE"


def test_dagster_failure_logs_the_traceback_at_error(dagster: Dagster) -> None:
    pgid_file = dagster.workdir / "failure-log.pgid"
    with group_cleanup(pgid_file):
        run = dagster.run("mg_failure", pgid_file=str(pgid_file))
        dagster.wait_final(run)
        relayed = [
            text for _, text in dagster.stamped_lines(run)
            if text.split(" ", 1)[-1].startswith("ValueError: e2e: boom on item 2")
        ]  # fmt: skip
        assert relayed, "the pipeline's traceback never reached the run's event log"
        assert all(line.startswith("ERROR") for line in relayed), relayed


def test_dagster_terminate_a_run(dagster: Dagster) -> None:
    pgid_file = dagster.workdir / "terminate.pgid"
    with group_cleanup(pgid_file):
        run = dagster.run("mg_drain", grace=GRACE, pgid_file=str(pgid_file), item_seconds=25.0)
        pgid = read_pgid(pgid_file, timeout=240)
        wait_group_busy(pgid)
        time.sleep(2)  # a few working lines before the stop
        action = time.time()
        dagster.client.terminate_run(run)
        m = watch_group_end(f"dagster: terminate run, grace={GRACE:g}", pgid, action,
                            grace=GRACE, window=DAGSTER.seconds)  # fmt: skip
        m.state = dagster.wait_final(run, timeout=120)
        end = action + (m.gone_after if m.gone_after is not None else m.watched)
        assert m.state == "CANCELED"
        assert_group_gone_in_time(m)
        assert_drain_lines_streamed(dagster.stamped_lines(run), action, end, "Dagster run logs")
