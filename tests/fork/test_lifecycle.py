"""Fork hooks, shared memory, worker state, stopping, fallback, and process lifetimes."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import psutil
import pytest

import minigun as mg
from minigun.core.executors import _fork_safety
from support import assert_conserved, wait_until

FORKS = ["cow_fork", "ipc_fork"]


@pytest.mark.parametrize("kind", FORKS)
def test_before_fork_runs_once_in_the_parent_and_after_fork_in_every_child(
    kind: str, tmp_path: Path
) -> None:
    log = tmp_path / "hooks"

    class Hooked(mg.Pipeline):
        @mg.before_fork
        def close_connections(self) -> None:
            with open(log, "a") as f:
                f.write(f"before {os.getpid()}\n")

        @mg.after_fork
        def reconnect(self) -> None:
            with open(log, "a") as f:
                f.write(f"after {os.getpid()}\n")

        @mg.producer
        def numbers(self) -> Any:
            yield from range(10)

        @mg.processor(execution=kind, processes=2, chunk=1)
        def work(self, x: int) -> int:
            return os.getpid()

        @mg.processor(execution=kind, processes=2, chunk=1)
        def again(self, pid: int) -> int:
            return pid

    result = Hooked().run()
    assert result.status == "succeeded", result.error
    lines = [line.split() for line in log.read_text().splitlines()]
    befores = [pid for what, pid in lines if what == "before"]
    afters = [pid for what, pid in lines if what == "after"]
    assert befores == [str(os.getpid())]  # once per run, in the parent, for both stages
    assert str(os.getpid()) not in afters
    # cow_fork: one child per item in each stage; ipc_fork: one per worker per stage.
    assert len(set(afters)) == len(afters) == (20 if kind == "cow_fork" else 4)


def test_ipc_fork_worker_state_from_after_fork_survives_across_items() -> None:
    class Model(mg.Pipeline):
        def __init__(self) -> None:
            self.model: dict[str, int] | None = None
            self.rows: list[tuple[int, int]] = []

        @mg.after_fork
        def load_model(self) -> None:
            self.model = {"pid": os.getpid(), "calls": 0}

        @mg.producer
        def numbers(self) -> Any:
            yield from range(30)

        @mg.processor(execution="ipc_fork", processes=2, chunk=1)
        def score(self, x: int) -> tuple[int, int]:
            assert self.model is not None
            self.model["calls"] += 1
            return (self.model["pid"], self.model["calls"])

        @mg.consumer
        def save(self, row: tuple[int, int]) -> None:
            self.rows.append(row)

    pipeline = Model()
    result = pipeline.run()
    assert result.status == "succeeded", result.error
    by_pid: dict[int, list[int]] = {}
    for pid, calls in pipeline.rows:
        by_pid.setdefault(pid, []).append(calls)
    assert 1 <= len(by_pid) <= 2
    for calls in by_pid.values():
        assert sorted(calls) == list(range(1, len(calls) + 1))
    assert pipeline.model is None  # built in the workers only


@pytest.mark.parametrize("kind", FORKS)
def test_children_see_data_loaded_before_the_run_and_cannot_change_the_parents(
    kind: str,
) -> None:
    class Shared(mg.Pipeline):
        @mg.before_run
        def load(self) -> None:
            self.table = {i: i * i for i in range(1000)}

        @mg.producer
        def keys(self) -> Any:
            yield from range(0, 1000, 100)

        @mg.processor(execution=kind, processes=2)
        def lookup(self, key: int) -> int:
            value = self.table[key]
            self.table[key] = -1  # the child's copy only
            return value

        @mg.consumer
        def save(self, value: int) -> None:
            self.total = getattr(self, "total", 0) + value

    pipeline = Shared()
    result = pipeline.run()
    assert result.status == "succeeded", result.error
    assert pipeline.total == sum(k * k for k in range(0, 1000, 100))
    assert all(v >= 0 for v in pipeline.table.values())


def test_gc_is_frozen_while_fork_stages_run_and_unfrozen_after() -> None:
    assert gc.get_freeze_count() == 0

    class Frozen(mg.Pipeline):
        @mg.producer
        def numbers(self) -> Any:
            yield 1

        @mg.processor(execution="cow_fork", processes=1)
        def work(self, x: int) -> int:
            return gc.get_freeze_count()

        @mg.consumer
        def save(self, count: int) -> None:
            self.count = count

    pipeline = Frozen()
    result = pipeline.run()
    assert result.status == "succeeded", result.error
    assert pipeline.count > 1000  # the child inherited the frozen heap
    assert gc.get_freeze_count() == 0


@pytest.mark.parametrize("kind", FORKS)
def test_stop_drains_fork_stages_and_accounts_every_item(kind: str) -> None:
    class Endless(mg.Pipeline):
        @mg.producer
        def numbers(self) -> Any:
            i = 0
            while True:
                yield i
                i += 1

        @mg.processor(execution=kind, processes=2, queue_size=50)
        def work(self, x: int) -> int:
            time.sleep(0.002)
            return x

        @mg.consumer
        def save(self, x: int) -> None:
            self.last = x

    handle = Endless().run(background=True)
    wait_until(
        lambda: handle.snapshot()["stages"]["save"]["processed"] > 0,
        what="an item through the fork stage",
    )
    handle.stop()
    result = handle.wait(60)
    assert result is not None, "the run did not end after stop()"
    assert result.status == "stopped"
    assert result.exit_code == mg.ExitCode.TERMINATED
    work = result.stats.stages["work"]
    assert work["items_in"] > 0
    assert work["processed"] == work["items_in"] == result.stats.stages["save"]["items_in"]
    assert_conserved(result)


@pytest.mark.parametrize("kind", FORKS)
def test_sigterm_to_the_children_does_not_lose_their_items(kind: str, tmp_path: Path) -> None:
    """The runner signals the whole process group: children leave the decision to the
    parent (which drains) instead of dying with their items."""
    ready = tmp_path / "ready"

    class Slow(mg.Pipeline):
        @mg.producer
        def numbers(self) -> Any:
            yield from range(8)

        @mg.processor(execution=kind, processes=2, chunk=1)
        def work(self, x: int) -> int:
            ready.touch()
            time.sleep(0.2)
            return x

        @mg.consumer
        def save(self, x: int) -> None:
            self.n = getattr(self, "n", 0) + 1

    def terminate_children() -> None:
        while not ready.exists():
            time.sleep(0.005)
        for child in psutil.Process().children(recursive=True):
            child.send_signal(signal.SIGTERM)
            child.send_signal(signal.SIGINT)

    thread = threading.Thread(target=terminate_children)
    thread.start()
    pipeline = Slow()
    result = pipeline.run()
    thread.join()
    assert result.status == "succeeded", result.error
    assert pipeline.n == 8


@pytest.mark.parametrize("kind", FORKS)
def test_without_fork_stages_fall_back_to_threads_with_one_warning(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mg.platform, "fork_supported", lambda: False)

    class NoFork(mg.Pipeline):
        @mg.producer
        def numbers(self) -> Any:
            yield from range(20)

        @mg.processor(execution=kind, processes=2)
        def work(self, x: int) -> int:
            return os.getpid()

        @mg.processor(execution=kind, processes=2)
        def again(self, pid: int) -> int:
            return pid

        @mg.consumer
        def save(self, pid: int) -> None:
            self.pids = getattr(self, "pids", set()) | {pid}

    pipeline = NoFork()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = pipeline.run()
    assert result.status == "succeeded", result.error
    assert pipeline.pids == {os.getpid()}
    fork_warnings = [w for w in caught if "fork is not available" in str(w.message)]
    assert len(fork_warnings) == 1


def test_children_die_with_the_parent_even_when_it_is_killed(tmp_path: Path) -> None:
    """SIGKILL the pipeline process mid-run: its fork workers must not survive it."""
    pids = tmp_path / "pids"
    script = textwrap.dedent(
        f"""
        import os, time
        import minigun as mg

        class Forever(mg.Pipeline):
            @mg.producer
            def numbers(self):
                yield from range(4)

            @mg.processor(execution="ipc_fork", processes=2, chunk=1)
            def work(self, x):
                with open({str(pids)!r}, "a") as f:
                    f.write(f"{{os.getpid()}}\\n")
                time.sleep(120)

        Forever().run()
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if pids.exists() and len(pids.read_text().split()) >= 2:
                break
            time.sleep(0.02)
        workers = [int(p) for p in pids.read_text().split()]
        assert len(workers) == 2
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 30
    alive = workers
    while alive and time.monotonic() < deadline:
        alive = [p for p in workers if psutil.pid_exists(p) and _not_zombie(p)]
        time.sleep(0.02)
    for pid in alive:  # do not leave them behind when this test fails
        os.kill(pid, signal.SIGKILL)
    assert not alive, f"fork workers outlived their parent: {alive}"


def _not_zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_no_registry_leftovers_after_runs() -> None:
    """Parent-side pipe ends and child pids are released after every run."""

    class Quick(mg.Pipeline):
        @mg.producer
        def numbers(self) -> Any:
            yield from range(20)

        @mg.processor(execution="ipc_fork", processes=2)
        def a(self, x: int) -> int:
            return x

        @mg.processor(execution="cow_fork", processes=2)
        def b(self, x: int) -> int:
            return x

    fds_before = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    assert Quick().run().status == "succeeded"
    assert not _fork_safety._CHILDREN
    assert not _fork_safety._PARENT_FDS
    if fds_before is not None:
        assert len(os.listdir("/proc/self/fd")) <= fds_before


def test_before_fork_hook_error_fails_the_run_before_anything_forks() -> None:
    class BadHook(mg.Pipeline):
        @mg.before_fork
        def close_connections(self) -> None:
            raise RuntimeError("cannot close the pool")

        @mg.producer
        def numbers(self) -> Any:
            yield from range(5)

        @mg.processor(execution="cow_fork", processes=2)
        def work(self, x: int) -> int:
            return x

    result = BadHook().run()
    assert result.status == "failed"
    assert isinstance(result.error, RuntimeError)
    assert "cannot close the pool" in str(result.error)


@pytest.mark.parametrize("kind", FORKS)
def test_stats_report_the_time_children_spend_on_items(kind: str) -> None:
    class Timed(mg.Pipeline):
        @mg.producer
        def numbers(self) -> Any:
            yield from range(10)

        @mg.processor(execution=kind, processes=2)
        def work(self, x: int) -> int:
            time.sleep(0.02)
            return x

    result = Timed().run()
    assert result.status == "succeeded", result.error
    work = result.stats.stages["work"]
    assert work["executor"] == kind
    assert work["workers"] == 2
    # The children's time on items: at least what the items slept, at most what two
    # workers could spend in the whole run (a loaded machine moves both together).
    assert 0.15 <= work["busy_seconds"] <= 2 * result.duration
    assert 0.015 <= work["latency_p50"] <= result.duration
