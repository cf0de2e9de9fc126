"""Dask executor tests, against real clusters only.

``cluster`` is a cluster the tests start themselves from the ``dask scheduler`` and
``dask worker`` commands on loopback: a scheduler and two workers, each a separate
process (with its nanny, as ``dask worker`` runs by default), shared by the session.
Other tests let minigun start its own ``LocalCluster``. The directory is not called
``dask``: ``tests`` is on ``sys.path``, and a package of that name would hide the real
one.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from support import full_env, wait_until

#: Starting a Python process that imports distributed takes seconds on a loaded machine.
START_TIMEOUT = 120.0


@dataclass
class DaskCluster:
    """A scheduler and its workers, each in a session of its own."""

    address: str
    scheduler: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def nthreads(self) -> dict[str, int]:
        from distributed import Client

        with Client(self.address, set_as_default=False, timeout=30) as client:
            return dict(client.nthreads())

    def wait_for_workers(self, n: int) -> None:
        wait_until(lambda: len(self.nthreads()) >= n, START_TIMEOUT, f"{n} dask workers")

    def worker_processes(self) -> list[psutil.Process]:
        """The processes that run tasks: each ``dask worker``'s child (its nanny stays)."""
        found = []
        for launcher in self.workers:
            try:
                children = psutil.Process(launcher.pid).children()
            except psutil.NoSuchProcess:
                continue
            found += [c for c in children if "spawn_main" in " ".join(_cmdline(c))]
        return found


def _cmdline(proc: psutil.Process) -> list[str]:
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


def _dask_command() -> str:
    """The ``dask`` command of the environment running the tests."""
    found = shutil.which("dask", path=os.path.dirname(sys.executable))
    assert found, "the dask command is missing: install the dask extra"
    return found


def _launch(args: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """``dask ARGS`` (``dask scheduler …``, ``dask worker …``) in a session of its own."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            [_dask_command(), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )


def _end(proc: subprocess.Popen[bytes]) -> None:
    """End a launched command and everything in its session."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=20)
            return
        except subprocess.TimeoutExpired:
            continue


def _start_scheduler(where: Path, env: dict[str, str]) -> DaskCluster:
    """``dask scheduler`` on a free loopback port; returns once it has written its address."""
    scheduler_file = where / "scheduler.json"
    scheduler = _launch(
        [
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-dashboard",
            "--scheduler-file",
            str(scheduler_file),
        ],
        where / "scheduler.log",
        env,
    )
    try:
        wait_until(scheduler_file.exists, START_TIMEOUT, "the dask scheduler's file")
        address = wait_until(
            lambda: json.loads(scheduler_file.read_text() or "{}").get("address"),
            START_TIMEOUT,
            "the scheduler address",
        )
    except BaseException:
        _end(scheduler)
        raise
    return DaskCluster(address, scheduler)


@pytest.fixture(scope="session")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaskCluster]:
    where = tmp_path_factory.mktemp("dask-cluster")
    # Workers import the test modules by name, as workers of a real deployment import
    # the pipelines' package; minigun is installed in their environment.
    env = full_env()
    cluster = _start_scheduler(where, env)
    try:
        address = cluster.address
        for i in range(2):
            cluster.workers.append(
                _launch(
                    [
                        "worker",
                        address,
                        "--nworkers",
                        "1",
                        "--nthreads",
                        "1",
                        "--no-dashboard",
                        "--name",
                        f"w{i}",
                    ],
                    where / f"worker{i}.log",
                    env,
                )
            )
        cluster.wait_for_workers(2)
        yield cluster
    finally:
        for proc in [*cluster.workers, cluster.scheduler]:
            _end(proc)


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[DaskCluster]:
    """A scheduler and one worker process for a test that kills them."""
    env = full_env()
    cluster = _start_scheduler(tmp_path, env)
    try:
        cluster.workers.append(
            _launch(
                ["worker", cluster.address, "--nthreads", "1", "--no-dashboard"],
                tmp_path / "worker.log",
                env,
            )
        )
        cluster.wait_for_workers(1)
        yield cluster
    finally:
        for proc in [*cluster.workers, cluster.scheduler]:
            _end(proc)


@pytest.fixture
def workerless_scheduler(tmp_path: Path) -> Iterator[DaskCluster]:
    """A ``dask scheduler`` that never gets a worker."""
    cluster = _start_scheduler(tmp_path, full_env())
    try:
        yield cluster
    finally:
        _end(cluster.scheduler)


@pytest.fixture
def cluster(dask_cluster: DaskCluster) -> DaskCluster:
    """The shared cluster, with both workers up (a test may have killed one: its nanny
    starts a new one)."""
    dask_cluster.wait_for_workers(2)
    return dask_cluster


def local_cluster_workers() -> list[psutil.Process]:
    """Worker processes of a LocalCluster started in this process: its children made
    by multiprocessing's spawn (the external cluster's are grandchildren)."""
    return [
        child
        for child in psutil.Process().children()
        if "spawn_main" in " ".join(_cmdline(child)) and child.status() != psutil.STATUS_ZOMBIE
    ]


@pytest.fixture
def no_local_workers_left() -> Iterator[None]:
    """After the test: no LocalCluster worker process of this process is alive. Minigun
    closes the cluster it started before the run returns; the wait only allows for
    the reaping of a killed worker on a loaded machine."""
    yield
    wait_until(lambda: not local_cluster_workers(), 30, "the LocalCluster's workers to be gone")


def stage_stats(result: Any, name: str) -> dict[str, Any]:
    return dict(result.stats.stages[name])
