"""Soak: 500 runs from one long-lived process leave nothing behind.

The mix: in-process runs on thread, ipc_fork and cow_fork stages (succeeding, with
dead letters written to a directory, failing, stopped mid-way from another thread),
and every 20th run a real ``run_isolated`` child. After a warm-up (lazy imports,
caches, the first fork's bookkeeping, glibc's per-thread malloc arenas), open fds,
threads and child processes must be flat and RSS must grow by less than 5 MB over
the 500 runs.

RSS is read after ``gc.collect()`` and glibc's ``malloc_trim(0)``: the question is
whether the engine keeps memory, not how much freed memory the allocator caches.
Without the trim, RSS here grows by 15-25 MB over 500 runs under pytest (freed
memory held in the arenas of the many short-lived threads a run starts; the Python
object count stays flat and a trim gives it back); the test prints both figures.

The loop also runs a full ``gc.collect()`` every 50 runs. A run is freed by the cyclic
collector, not by reference counting (100-280 objects in cycles per run: cells,
locks, conditions, deques), and CPython's automatic full collections grow rarer as a
process's long-lived heap grows; left to pile up, that garbage fragments the heap
so that RSS stays about 12 MB higher even after the final collection and trim. That
is reported on issue 10 as a finding; what this test guards is that nothing a run
leaves is *reachable*.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import threading
from pathlib import Path
from typing import Any

import psutil
import pytest

import minigun as mg
from minigun.runner import RunSpec, run_isolated
from reliability.support import SOAKED, assert_conserved, count, wait_for

TESTS_DIR = Path(__file__).resolve().parents[1]
RUNS = 500
WARM_UP = 100
#: A full collection every this many runs (see the module docstring).
COLLECT_EVERY = 50
MB = 1_000_000


class Mixed(mg.Pipeline):
    """20 items through a thread stage, an ipc_fork stage and a cow_fork stage."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.seen = 0

    @mg.producer
    def numbers(self) -> Any:
        yield from range(20)

    @mg.processor(threads=2)
    def plus(self, x: int) -> int:
        return x + 1

    @mg.processor(execution="ipc_fork", processes=2, on_error="dead_letter")
    def check(self, x: int) -> int:
        if self.mode == "dead_letters" and x % 5 == 0:
            raise ValueError(f"bad {x}")
        return x

    @mg.processor(execution="cow_fork", processes=2)
    def fork(self, x: int) -> int:
        if self.mode == "failing" and x == 7:
            raise RuntimeError("boom")
        return x

    @mg.consumer
    def sink(self, x: int) -> None:
        self.seen += 1


def settled_rss() -> tuple[int, int]:
    """(RSS, RSS after giving glibc's cached free memory back), after a collection."""
    gc.collect()
    untrimmed = psutil.Process().memory_info().rss
    libc_name = ctypes.util.find_library("c")
    if libc_name:
        trim = getattr(ctypes.CDLL(libc_name), "malloc_trim", None)
        if trim is not None:
            trim(0)
    return untrimmed, psutil.Process().memory_info().rss


def footprint() -> tuple[int, int, int]:
    """Open fds, OS threads and live-or-zombie children of this process."""
    me = psutil.Process()
    return me.num_fds(), me.num_threads(), len(me.children(recursive=True))


def one_run(i: int, tmp: Path) -> None:
    if i % 20 == 10:
        spec = RunSpec(
            "reliability.faulty:Small",
            env={"PYTHONPATH": str(TESTS_DIR)},
            cwd=str(TESTS_DIR),
            grace=30,
        )
        outcome = run_isolated(spec)
        assert outcome.exit_code == mg.ExitCode.OK, outcome.log_tail
        assert outcome.result is not None
        assert_conserved(outcome.result["stats"]["stages"])
        return
    mode = ("ok", "dead_letters", "failing", "stopped")[i % 4]
    if mode == "stopped":
        run_stopped(tmp)
        return
    pipeline = Mixed(mode)
    overrides: dict[str, Any] = {}
    if mode == "dead_letters":
        overrides["dead_letter_dir"] = str(tmp / "dead-letters")
    result = pipeline.run(**overrides)
    assert_conserved(result.stats.stages)
    if mode == "ok":
        assert result.status == "succeeded", result.error
        assert pipeline.seen == 20
    elif mode == "dead_letters":
        assert result.status == "succeeded", result.error
        assert pipeline.seen == 16
        assert len(result.dead_letters) == 4
    else:
        assert (result.status, result.exit_code) == ("failed", mg.ExitCode.FAILED)
        assert pipeline.seen <= 19


class Slow(mg.Pipeline):
    """Items at a pace, so that ``stop()`` lands mid-run; small queues keep the drain
    after ``stop()`` short."""

    queue_size = 4

    def __init__(self, gate: threading.Event) -> None:
        self.gate = gate
        self.seen = 0

    @mg.producer
    def numbers(self) -> Any:
        for x in range(1000):
            if x == 5:
                self.gate.set()
            yield x

    @mg.processor(execution="ipc_fork", processes=1, chunk=1)
    def slow(self, x: int) -> int:
        import time

        time.sleep(0.001)
        return x

    @mg.consumer
    def sink(self, x: int) -> None:
        self.seen += 1


def run_stopped(tmp: Path) -> None:
    gate = threading.Event()
    pipeline = Slow(gate)
    handle = pipeline.run(background=True)
    assert gate.wait(60), "the producer never got going"
    handle.stop()
    result = handle.wait(120)
    assert result is not None, "stop() did not end the run"
    assert (result.status, result.exit_code) == ("stopped", mg.ExitCode.TERMINATED)
    assert_conserved(result.stats.stages)
    assert pipeline.seen == result.stats.stages["sink"]["processed"]


@pytest.mark.timeout(2400)  # 50 s here unloaded; 15 min under a load of 35
def test_500_runs_leave_fds_threads_children_flat_and_rss_within_5_mb(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for i in range(WARM_UP):
        one_run(i, tmp_path)
    wait_for(lambda: not psutil.Process().children(recursive=True), 60, "warm-up children")
    before = footprint()
    raw_before, rss_before = settled_rss()
    for i in range(RUNS):
        one_run(i, tmp_path)
        count(SOAKED)
        if i % COLLECT_EVERY == COLLECT_EVERY - 1:
            gc.collect()
    # A run's last threads and children may still be on their way out when run()
    # returns a moment earlier; a leak is one per run, i.e. hundreds, and stays.
    wait_for(
        lambda: all(a <= b for a, b in zip(footprint(), before)),
        60,
        f"fds/threads/children back to {before} (now {footprint()})",
    )
    raw_after, rss_after = settled_rss()
    growth = rss_after - rss_before
    with capsys.disabled():
        print(
            f"\nreliability: soak {RUNS} runs, fds/threads/children {before} -> "
            f"{footprint()}, RSS {rss_before / MB:.1f} -> {rss_after / MB:.1f} MB "
            f"(untrimmed {raw_before / MB:.1f} -> {raw_after / MB:.1f} MB)"
        )
    assert growth < 5 * MB, f"RSS grew by {growth / MB:.1f} MB over {RUNS} runs"
