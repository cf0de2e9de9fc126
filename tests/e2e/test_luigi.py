"""Luigi: ``luigid`` on loopback and ``luigi --workers 2`` worker processes.

Luigi keeps no log store: the platform's log is the worker's output, each line
stamped by the harness when it arrives.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("luigi")

from .support import (
    HERE,
    LineLog,
    assert_drain_lines_streamed,
    assert_group_gone_in_time,
    group_cleanup,
    http_json,
    http_ok,
    kill_tree,
    read_pgid,
    wait_for,
    wait_group_busy,
    watch_group_end,
)

pytestmark = pytest.mark.timeout(600)

#: luigid forgets a silent worker after this many seconds and fails its RUNNING tasks.
WORKER_DISCONNECT_DELAY = 10


@dataclass
class Luigid:
    url: str
    port: int
    home: Path
    env: dict[str, str]

    def task_status(self, family: str, run_name: str) -> str | None:
        query = urllib.parse.quote(json.dumps({"task_str": family}))
        found = http_json("GET", f"{self.url}/api/task_search?data={query}")["response"]
        for status, tasks in found.items():
            for task_id, info in tasks.items():
                if run_name in task_id or run_name in json.dumps(info.get("params", {})):
                    return str(status)
        return None


@pytest.fixture(scope="module")
def luigid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Luigid]:
    home = tmp_path_factory.mktemp("luigi-home")
    from .support import free_port

    port = free_port()
    config = home / "luigi.cfg"
    config.write_text(
        "[scheduler]\n"
        f"worker_disconnect_delay = {WORKER_DISCONNECT_DELAY}\n"
        "retry_delay = 3600\n"
        f"state_path = {home / 'state.pickle'}\n"
        "[retcode]\n"
        "task_failed = 30\n"
        "[core]\n"
        "default_scheduler_host = 127.0.0.1\n"
        f"default_scheduler_port = {port}\n"
    )
    env = {**os.environ, "LUIGI_CONFIG_PATH": str(config), "PYTHONPATH": str(HERE)}
    pidfile = home / "luigid.pid"
    luigid_bin = Path(sys.executable).with_name("luigid")
    subprocess.run(
        [str(luigid_bin), "--background", "--pidfile", str(pidfile), "--logdir",
         str(home / "logs"), "--state-path", str(home / "state.pickle"),
         "--address", "127.0.0.1", "--port", str(port)],
        env=env, cwd=home, check=True, timeout=60,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: http_ok(f"{url}/api/task_list?data=%7B%7D"), 60, "luigid to answer")
        yield Luigid(url, port, home, env)
    finally:
        if pidfile.exists():
            kill_tree(int(pidfile.read_text().strip()))


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    log: LineLog
    run_name: str
    pgid_file: Path


def start_worker(
    luigid: Luigid, family: str, tmp_path: Path, *args: str, workers: int = 2
) -> Worker:
    run_name = tmp_path.name
    pgid_file = tmp_path / "pgid"
    process = subprocess.Popen(
        [sys.executable, "-m", "luigi", "--module", "luigi_tasks", family,
         "--pgid-file", str(pgid_file), "--run-name", run_name,
         "--scheduler-host", "127.0.0.1", "--scheduler-port", str(luigid.port),
         "--workers", str(workers), *args],
        env=luigid.env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    return Worker(process, LineLog(process.stdout, tmp_path / "worker.log"), run_name, pgid_file)


def finish(worker: Worker, timeout: float = 180) -> int:
    try:
        return worker.process.wait(timeout=timeout)
    finally:
        if worker.process.poll() is None:
            kill_tree(worker.process.pid)


def wait_status(luigid: Luigid, family: str, worker: Worker, want: str, timeout: float) -> str:
    return wait_for(
        lambda: s if (s := luigid.task_status(family, worker.run_name)) == want else None,
        timeout,
        f"luigid to show {family} {want} (last: {luigid.task_status(family, worker.run_name)})",
        interval=1.0,
    )


def result_json(worker: Worker) -> dict[str, Any]:
    (path,) = (worker.pgid_file.parent / "results").glob("*.json")
    return json.loads(path.read_text())


def test_luigi_success(luigid: Luigid, tmp_path: Path) -> None:
    worker = start_worker(luigid, "SucceedsTask", tmp_path)
    with group_cleanup(worker.pgid_file):
        assert finish(worker) == 0
        assert wait_status(luigid, "SucceedsTask", worker, "DONE", 30)
        assert result_json(worker)["status"] == "succeeded"


def test_luigi_skip(luigid: Luigid, tmp_path: Path) -> None:
    worker = start_worker(luigid, "SkipsTask", tmp_path)
    with group_cleanup(worker.pgid_file):
        assert finish(worker) == 0
        assert wait_status(luigid, "SkipsTask", worker, "DONE", 30)
        assert result_json(worker)["status"] == "skipped"


def test_luigi_failure_logs_the_traceback_at_error(luigid: Luigid, tmp_path: Path) -> None:
    worker = start_worker(luigid, "FailsTask", tmp_path)
    with group_cleanup(worker.pgid_file):
        assert finish(worker) == 30  # [retcode] task_failed
        assert wait_status(luigid, "FailsTask", worker, "FAILED", 30)
        # A record may span lines (a traceback is one record): its level is on the
        # first line of the record, the nearest level-prefixed line at or above.
        lines = [line for _, line in worker.log.lines]
        levels = []
        for index, line in enumerate(lines):
            if "ValueError: e2e: boom on item 2" in line:
                head = next(
                    (lines[i] for i in range(index, -1, -1) if re.match(r"^[A-Z]+: ", lines[i])),
                    "",
                )
                levels.append(head.split(":", 1)[0])
        assert levels, "the pipeline's traceback never reached the worker's log"
        assert set(levels) == {"ERROR"}, levels


def test_luigi_sigterm_to_a_worker_with_two_processes(luigid: Luigid, tmp_path: Path) -> None:
    worker = start_worker(luigid, "DrainsTask", tmp_path, workers=2)
    with group_cleanup(worker.pgid_file):
        pgid = read_pgid(worker.pgid_file)
        wait_group_busy(pgid)
        assert wait_status(luigid, "DrainsTask", worker, "RUNNING", 30)
        action = time.time()
        worker.process.send_signal(signal.SIGTERM)
        m = watch_group_end("luigi: SIGTERM to worker (--workers 2), grace=10", pgid, action,
                            grace=10.0, window=None)  # fmt: skip
        finish(worker, timeout=30)
        # luigid hears nothing from a killed worker: it fails the task once it drops
        # the silent worker.
        m.state = wait_status(luigid, "DrainsTask", worker, "FAILED", WORKER_DISCONNECT_DELAY + 60)
        end = action + (m.gone_after if m.gone_after is not None else m.watched)
        assert_group_gone_in_time(m)
        assert_drain_lines_streamed(worker.log.lines, action, end, "luigi worker log")


def test_luigi_worker_timeout(luigid: Luigid, tmp_path: Path) -> None:
    worker = start_worker(luigid, "WorkerTimeoutTask", tmp_path, workers=1)
    with group_cleanup(worker.pgid_file):
        pgid = read_pgid(worker.pgid_file)
        started = wait_for(
            lambda: next((t for t, line in worker.log.lines if "running   WorkerT" in line), None),
            30,
            "the worker to log the task's start",
        )
        wait_group_busy(pgid)
        action = started + 20  # WorkerTimeoutTask.worker_timeout: Luigi's SIGTERM
        m = watch_group_end("luigi: worker_timeout=20, grace=5", pgid, action,
                            grace=5.0, window=None)  # fmt: skip
        finish(worker, timeout=60)
        m.state = wait_status(luigid, "WorkerTimeoutTask", worker, "FAILED", 30)
        assert_group_gone_in_time(m)
