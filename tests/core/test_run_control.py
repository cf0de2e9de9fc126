"""Background runs, stop(), hooks, configuration precedence, backpressure, the result JSON."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time

import pytest

import minigun as mg
from minigun.core.graph import build_graph
from support import assert_conserved, untraced_env, wait_until


class Endless(mg.Pipeline):
    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.consumed = 0
        self.events: list[str] = []

    @mg.before_run
    def connect(self):
        self.events.append("before_run")

    @mg.producer
    def src(self):
        i = 0
        while True:
            yield i
            i += 1

    @mg.processor
    def work(self, x):
        if self.delay:
            time.sleep(self.delay)
        return x

    @mg.consumer
    def sink(self, x):
        self.consumed += 1

    @mg.after_run
    def report(self, result):
        self.events.append(f"after_run:{result.status}")


@pytest.mark.parametrize("execution", ["inline", "thread"])
def test_background_stop_drains_and_reports_stopped(execution: str) -> None:
    p = Endless(delay=0.0005)
    handle = p.run(background=True, execution=execution, queue_size=50)
    wait_until(lambda: p.consumed > 0, what="the first item consumed")
    assert handle.running
    live = handle.snapshot()
    assert live["total_produced"] > 0 and "work" in live["stages"]
    handle.stop()
    result = handle.wait(timeout=30)
    assert result is not None and not handle.running
    assert result.status == "stopped" and result.exit_code == mg.ExitCode.TERMINATED
    # everything produced was processed: in-flight items finish on stop
    assert result.stats.total_consumed == result.stats.total_produced == p.consumed
    assert p.events == ["before_run", "after_run:stopped"]
    assert_conserved(result)


def test_stop_with_interrupted_code() -> None:
    p = Endless()
    handle = p.run(background=True)
    wait_until(lambda: p.consumed > 0, what="the first item consumed")
    handle.stop(mg.ExitCode.INTERRUPTED)
    result = handle.wait(30)
    assert result is not None and result.exit_code == 130 and result.status == "stopped"


def test_wait_with_timeout_returns_none_while_running() -> None:
    handle = Endless(delay=0.001).run(background=True)
    assert handle.wait(timeout=0.05) is None
    handle.stop()
    assert handle.wait(30) is not None


def test_bounded_queues_keep_a_fast_producer_in_check() -> None:
    class P(mg.Pipeline):
        def __init__(self) -> None:
            self.max_queued = 0

        @mg.producer
        def src(self):
            yield from range(3000)

        @mg.processor
        def slow(self, x):
            time.sleep(0.0002)
            return x

        @mg.consumer
        def sink(self, x): ...

    p = P()
    handle = p.run(background=True, execution="thread", queue_size=100)
    peak = 0
    while handle.running:
        peak = max(peak, handle.snapshot()["stages"]["slow"]["queued"])
        time.sleep(0.002)
    result = handle.wait()
    assert result is not None and result.ok
    # capacity is soft by at most one producer chunk, itself at most half the capacity
    assert 0 < peak <= 100 + 100 // 2


def test_precedence_run_argument_over_env_over_stage_over_class(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class P(mg.Pipeline):
        execution = "inline"
        max_threads = 3

        @mg.producer
        def src(self):
            yield 1

        @mg.processor(threads=5)
        def staged(self, x):
            return x

        @mg.processor
        def plain(self, x):
            return x

        @mg.consumer(execution="thread")
        def sink(self, x): ...

    g = build_graph(P())
    assert g.nodes["staged"].execution == "inline"  # class attribute
    assert g.nodes["sink"].execution == "thread"  # stage option beats class attribute
    g = build_graph(P(), execution="thread")
    # max_threads is a cap (tests/core/test_caps.py): 5 lowered to 3, 1 stays 1
    assert g.nodes["staged"].workers == 3 and g.nodes["plain"].workers == 1
    monkeypatch.setenv("MINIGUN_MAX_THREADS", "7")
    monkeypatch.setenv("MINIGUN_EXECUTION", "thread")
    g = build_graph(P())
    assert g.nodes["staged"].workers == 3 and g.nodes["sink"].execution == "thread"
    g = build_graph(P(), max_threads=2, execution="inline")
    assert g.nodes["staged"].workers == 1 and g.nodes["staged"].execution == "inline"
    g = build_graph(P(), max_threads=2)
    assert g.nodes["staged"].workers == 2


def test_max_forks_alias_and_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    class P(mg.Pipeline):
        @mg.producer
        def src(self):
            yield 1

        @mg.processor(execution="cow_fork", processes=4, threads=9)
        def work(self, x):
            return x

        @mg.consumer
        def sink(self, x): ...

    assert build_graph(P()).nodes["work"].workers == 4  # threads= ignored on a fork stage
    monkeypatch.setenv("MINIGUN_MAX_FORKS", "2")
    assert build_graph(P()).nodes["work"].workers == 2
    monkeypatch.setenv("MINIGUN_EXECUTION", "thread")
    assert build_graph(P()).nodes["work"].workers == 9  # processes= ignored on a thread stage


def test_stats_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    class P(mg.Pipeline):
        @mg.producer
        def src(self):
            yield from range(100)

        @mg.consumer
        def sink(self, x): ...

    result = P().run(stats=False)
    assert result.stats.total_consumed == 100
    assert result.stats.stages["sink"]["busy_seconds"] == 0
    monkeypatch.setenv("MINIGUN_STATS", "0")
    assert P().run().stats.stages["sink"]["latency_p50"] == 0


def test_stats_and_result_json() -> None:
    class P(mg.Pipeline):
        @mg.producer
        def src(self):
            yield from range(200)

        @mg.processor(threads=2)
        def slow(self, x):
            time.sleep(0.001)
            return x

        @mg.consumer
        def sink(self, x): ...

    result = P().run()
    data = json.loads(json.dumps(result.to_dict()))
    assert data["schema"] == "minigun.result/1"
    assert data["status"] == "succeeded" and data["exit_code"] == 0 and data["ok"] is True
    stats = data["stats"]
    assert stats["total_produced"] == 200 and stats["total_consumed"] == 200
    assert stats["bottleneck"] == "slow"
    slow = stats["stages"]["slow"]
    for key in (
        "items_in",
        "items_out",
        "dropped",
        "skipped",
        "errors",
        "dead_letters",
        "retries",
        "busy_seconds",
        "latency_p50",
        "latency_p95",
        "latency_p99",
        "throughput",
        "utilisation",
    ):
        assert key in slow
    # Service time, not queue wait: all 200 items queue at once, so a latency that
    # counted the wait would have a median near half the run, not 1/100 of it.
    assert 0.0008 < slow["latency_p50"] < data["duration"] / 10
    assert slow["latency_p50"] <= slow["latency_p95"] <= slow["latency_p99"]
    assert slow["busy_seconds"] >= 0.2
    assert 0 < slow["utilisation"] <= 1
    # what each stage is and how big its queue is, for readers without the code
    assert [stats["stages"][n]["kind"] for n in ("src", "slow", "sink")] == [
        "producer",
        "processor",
        "consumer",
    ]
    assert slow["queue_capacity"] == 1000 and slow["queued"] == 0
    assert "queue_capacity" not in stats["stages"]["src"]  # a producer has no inbox


def test_threads_run_concurrently() -> None:
    class P(mg.Pipeline):
        def __init__(self) -> None:
            self.active = 0
            self.peak = 0
            self.lock = threading.Lock()

        @mg.producer
        def src(self):
            yield from range(40)

        @mg.processor(threads=8)
        def io(self, x):
            with self.lock:
                self.active += 1
                self.peak = max(self.peak, self.active)
            # Each item waits until all 8 threads were busy at once: a pool that ran
            # items one by one would time out here instead of passing slowly.
            with contextlib.suppress(AssertionError):
                wait_until(lambda: self.peak >= 8, timeout=10, interval=0.001)
            with self.lock:
                self.active -= 1
            return x

        @mg.consumer
        def sink(self, x): ...

    p = P()
    p.run()
    assert p.peak == 8


def test_subclass_without_super_init_and_inherited_stages() -> None:
    class Base(mg.Pipeline):
        @mg.producer
        def src(self):
            yield from range(3)

        @mg.processor
        def work(self, x):
            return x

        @mg.consumer
        def sink(self, x):
            self.out.append(x)

    class Child(Base):
        def __init__(self) -> None:
            self.out: list[int] = []

        @mg.processor
        def work(self, x):  # overrides, keeps its position
            return x * 100

    c = Child()
    c.run(execution="inline")
    assert c.out == [0, 100, 200]


def test_import_is_light() -> None:
    code = (
        "import sys, minigun; heavy = [m for m in ('rich', 'click', 'dask', 'distributed', "
        "'airflow', 'prefect', 'dagster', 'luigi', 'inspect', 'multiprocessing', "
        "'asyncio', 'uvloop', 'httpx', 'aiohttp') "
        "if m in sys.modules]; print(heavy)"
    )
    # What minigun imports, not what a coverage tracer started in the child would.
    env = untraced_env()
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == "[]"


class EndlessCrawler(mg.Pipeline):
    """Every page links to a new page: only stop() can end this cycle."""

    def __init__(self) -> None:
        self.saved = 0

    @mg.producer
    def seeds(self):
        yield 0

    @mg.processor
    def fetch(self, page, out):
        time.sleep(0.0005)
        out.to("fetch").emit(page + 1)
        out.emit(page)

    @mg.consumer
    def save(self, page):
        self.saved += 1


@pytest.mark.parametrize("execution", ["inline", "thread"])
def test_stop_ends_an_endless_cycle(execution: str) -> None:
    p = EndlessCrawler()
    handle = p.run(background=True, execution=execution)
    wait_until(lambda: p.saved > 10, what="ten pages saved")
    handle.stop()
    result = handle.wait(timeout=30)
    assert result is not None and result.status == "stopped"
    assert result.stats.discarded >= 1
    assert_conserved(result)
