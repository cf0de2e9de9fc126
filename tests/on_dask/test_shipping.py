"""How a dask stage uses its cluster: the instance shipped once per worker, setup once
per worker, items in chunks, at most ``max_in_flight`` chunks out, backpressure."""

from __future__ import annotations

import itertools
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("distributed")

import minigun as mg
from on_dask.conftest import DaskCluster
from support import (
    assert_conserved,
    child_env,
    full_env,
    read_ready,
    session_members,
    wait_until,
)

#: A runner in a process of its own, as an orchestrator's task process runs it.
RUNNER = textwrap.dedent(
    """
    import json, sys
    from minigun.runner import RunSpec, run_isolated
    run_isolated(RunSpec(**json.loads(sys.argv[1])), on_log=lambda line: None)
    """
)


class Tally:
    """Appends this process's pid to ``path`` each time it is unpickled: counts how often
    the instance holding it is rebuilt, in which processes."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        with open(self.path, "a") as f:
            f.write(f"{os.getpid()}\n")


class TwoStages(mg.Pipeline):
    def __init__(self, unpickled: str = "", setups: str = "", n: int = 2000) -> None:
        self.tally = Tally(Path(unpickled))
        self.setups = setups
        self.n = n
        self.sink: list[tuple[int, int]] = []

    @mg.after_fork
    def connect(self) -> None:
        with open(self.setups, "a") as f:
            f.write(f"{os.getpid()}\n")

    @mg.producer
    def numbers(self) -> Any:
        yield from range(self.n)

    @mg.processor(execution="dask", chunk=10)
    def first(self, x: int) -> int:
        return x + 1

    @mg.processor(execution="dask", chunk=10)
    def second(self, x: int) -> tuple[int, int]:
        return (x, os.getpid())

    @mg.consumer
    def save(self, pair: tuple[int, int]) -> None:
        self.sink.append(pair)


def test_the_instance_is_shipped_and_set_up_once_per_worker(
    cluster: DaskCluster, tmp_path: Path
) -> None:
    """Two dask stages, 400 chunks: each worker process unpickles the instance once
    and runs ``after_fork`` once, for both stages together."""
    unpickled, setups = tmp_path / "unpickled", tmp_path / "setups"
    pipeline = TwoStages(str(unpickled), str(setups))
    result = pipeline.run(dask_address=cluster.address)
    assert result.status == "succeeded", result.error
    assert sorted(x for x, _ in pipeline.sink) == list(range(1, 2001))
    workers = {pid for _, pid in pipeline.sink}
    assert os.getpid() not in workers
    rebuilt = Counter(int(pid) for pid in unpickled.read_text().split())
    assert set(rebuilt) == workers and set(rebuilt.values()) == {1}, rebuilt
    set_up = Counter(int(pid) for pid in setups.read_text().split())
    assert set(set_up) == workers and set(set_up.values()) == {1}, set_up
    assert_conserved(result)


def _task_keys(n: int, **options: Any) -> type[mg.Pipeline]:
    class Keys(mg.Pipeline):
        """Each item comes back with the key of the dask task that ran it."""

        def __init__(self) -> None:
            self.sink: list[tuple[int, str]] = []

        @mg.producer
        def numbers(self) -> Any:
            yield from range(n)

        @mg.processor(execution="dask", **options)
        def which(self, x: int) -> tuple[int, str]:
            from distributed import get_worker

            return (x, str(get_worker().get_current_task()))

        @mg.consumer
        def save(self, pair: tuple[int, str]) -> None:
            self.sink.append(pair)

    return Keys


def test_small_items_travel_in_chunks(cluster: DaskCluster) -> None:
    pipeline = _task_keys(20_000)()
    result = pipeline.run(dask_address=cluster.address)
    assert result.status == "succeeded", result.error
    assert sorted(x for x, _ in pipeline.sink) == list(range(20_000))
    tasks = Counter(key for _, key in pipeline.sink)
    # One item per task until the first reply tells how long an item takes; then
    # chunks of thousands: a task per item would be 20,000 tasks.
    assert len(tasks) < 200, len(tasks)
    assert max(tasks.values()) >= 1000


@pytest.mark.parametrize("chunk", [1, 7])
def test_chunk_fixes_the_items_per_task(cluster: DaskCluster, chunk: int) -> None:
    n = 300
    pipeline = _task_keys(n, chunk=chunk)()
    result = pipeline.run(dask_address=cluster.address)
    assert result.status == "succeeded", result.error
    tasks = Counter(key for _, key in pipeline.sink)
    assert max(tasks.values()) <= chunk
    assert len(tasks) >= math.ceil(n / chunk)


def _timed(n: int, **options: Any) -> mg.Pipeline:
    class Timed(mg.Pipeline):
        """Each item comes back with when its work started and ended (wall clock)."""

        def __init__(self) -> None:
            self.sink: list[tuple[float, float]] = []

        @mg.producer
        def numbers(self) -> Any:
            yield from range(n)

        @mg.processor(execution="dask", chunk=1, **options)
        def work(self, x: int) -> tuple[float, float]:
            started = time.time()
            time.sleep(0.02)
            return (started, time.time())

        @mg.consumer
        def save(self, span: tuple[float, float]) -> None:
            self.sink.append(span)

    return Timed()


def _overlaps(spans: list[tuple[float, float]]) -> int:
    spans = sorted(spans)
    return sum(1 for a, b in itertools.pairwise(spans) if b[0] < a[1])


def test_max_in_flight_bounds_the_chunks_outstanding(cluster: DaskCluster) -> None:
    """With one chunk in flight, two workers never run items at the same time; with
    the default (three per worker thread) they do."""
    one = _timed(30, max_in_flight=1)
    result = one.run(dask_address=cluster.address)
    assert result.status == "succeeded", result.error
    assert len(one.sink) == 30 and _overlaps(one.sink) == 0
    default = _timed(30)
    result = default.run(dask_address=cluster.address)
    assert result.status == "succeeded", result.error
    assert _overlaps(default.sink) > 0


def test_a_slow_dask_stage_holds_back_its_producer(cluster: DaskCluster) -> None:
    """Backpressure: however fast the producer is, it runs ahead of the consumer by at
    most what the queues and the chunks in flight hold (without it: by hundreds)."""

    class Lagging(mg.Pipeline):
        def __init__(self) -> None:
            self.sink: list[int] = []
            self.lag = 0

        @mg.producer
        def numbers(self) -> Any:
            for x in range(400):
                self.lag = max(self.lag, x - len(self.sink))
                time.sleep(0.0001)  # slower than the engine's "fast source": one per hand-over
                yield x

        @mg.processor(execution="dask", chunk=1, max_in_flight=2, queue_size=20)
        def work(self, x: int) -> int:
            time.sleep(0.005)
            return x

        @mg.consumer(queue_size=10)
        def save(self, x: int) -> None:
            self.sink.append(x)

    pipeline = Lagging()
    result = pipeline.run(dask_address=cluster.address)
    assert result.status == "succeeded", result.error
    assert sorted(pipeline.sink) == list(range(400))
    # 20 queued for the dask stage, 2 in flight, 10 queued for the consumer, and an
    # item or two in hand at each hand-over
    assert pipeline.lag <= 40, pipeline.lag
    assert_conserved(result)


def _runs_held(cluster: DaskCluster) -> dict[str, int]:
    """How many runs' stages each worker of ``cluster`` holds."""
    from distributed import Client

    def held(dask_worker: Any) -> int:
        from minigun.core.executors import _dask_worker

        state = _dask_worker._workers.get(dask_worker)
        return 0 if state is None else len(state.loaded)

    with Client(cluster.address, set_as_default=False) as client:
        return dict(client.run(held))


def test_workers_forget_a_run_once_it_is_over(cluster: DaskCluster) -> None:
    pipeline = _timed(200)
    handle = pipeline.run(background=True, dask_address=cluster.address)
    wait_until(lambda: len(pipeline.sink) >= 10, 60, "the run to be under way")
    assert sum(_runs_held(cluster).values()) >= 1
    result = handle.wait(timeout=120)
    assert result is not None and result.status == "succeeded", result
    wait_until(lambda: not any(_runs_held(cluster).values()), 60, "the workers to forget it")


def test_workers_forget_a_run_whose_runner_was_killed(cluster: DaskCluster, tmp_path: Path) -> None:
    """The run's process group dies with its runner; the scheduler drops its client, and
    the workers drop its stages: nothing of a killed run stays on a shared cluster."""
    ready = tmp_path / "ready"
    spec = {
        "pipeline": "on_dask.pipelines:Steady",
        "params": {"n": None, "sleep": 0.005, "ready": str(ready)},
        "env": child_env(MINIGUN_DASK_ADDRESS=cluster.address),
    }
    runner = subprocess.Popen(
        [sys.executable, "-c", RUNNER, json.dumps(spec)],
        cwd=tmp_path,
        env=full_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        sid = read_ready(ready, 120)["sid"]
        assert sum(_runs_held(cluster).values()) >= 1
        runner.send_signal(signal.SIGKILL)
        runner.wait(timeout=10)
        wait_until(lambda: not session_members(sid), 10, "the run's group to die")
        wait_until(lambda: not any(_runs_held(cluster).values()), 60, "the workers to forget it")
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
