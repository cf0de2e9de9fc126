"""How many items a fork child gets: one per cow_fork child unless forking would
cost a noticeable share of the stage's time, ``chunk=N`` when the user says so."""

from __future__ import annotations

import os
import time
from collections import Counter
from typing import Any

import pytest

import minigun as mg
from minigun.core.executors import cow_fork, ipc_fork
from minigun.core.executors._chunk_size import ChunkSizer


@pytest.fixture
def child_cost(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Fix what one cow_fork child costs, instead of the machine's measured (and
    load-dependent) figure: the chunking rule is then a function of the items alone."""

    def fix(seconds: float) -> None:
        monkeypatch.setattr(cow_fork, "FIXED_CHILD_COST", seconds)

    return fix


def _pids(n: int, pause: float = 0.0, **options: Any) -> tuple[mg.RunResult, list[tuple[int, int]]]:
    """Run n items through a cow_fork stage that reports (item, pid of its child)."""
    seen: list[tuple[int, int]] = []

    class Pipe(mg.Pipeline):
        @mg.producer
        def numbers(self) -> Any:
            return range(n)

        @mg.processor(execution="cow_fork", processes=2, **options)
        def work(self, x: int) -> tuple[int, int]:
            if pause:
                time.sleep(pause)
            return x, os.getpid()

        @mg.consumer(execution="inline")
        def save(self, pair: tuple[int, int]) -> None:
            seen.append(pair)

    result = Pipe().run()
    assert result.ok, result.error
    assert sorted(x for x, _ in seen) == list(range(n))
    return result, seen


def test_cow_fork_shares_children_between_trivial_items_by_default(child_cost: Any) -> None:
    """Forking once per trivial item would spend nearly all the time forking."""
    child_cost(2e-3)  # a slow fork: a chunk should carry 0.2 s of work
    _, seen = _pids(3000)
    children = len({pid for _, pid in seen})
    assert children < 300
    assert os.getpid() not in {pid for _, pid in seen}


def test_cow_fork_keeps_one_child_per_slow_item_by_default(child_cost: Any) -> None:
    """Items far longer than a fork get a child each, as ``chunk=1`` would."""
    child_cost(2e-3)  # 1% of it is 0.2 s, well under an item; load only makes items longer
    _, seen = _pids(8, pause=0.5)
    assert len({pid for _, pid in seen}) == 8


def test_chunk_1_forks_once_per_item_even_for_trivial_items() -> None:
    _, seen = _pids(60, chunk=1)
    assert len({pid for _, pid in seen}) == 60


def test_chunk_n_fixes_the_items_per_child() -> None:
    _, seen = _pids(40, chunk=10)
    per_child = Counter(pid for _, pid in seen)
    assert sum(per_child.values()) == 40
    assert max(per_child.values()) <= 10
    assert len(per_child) >= 4


# ---------------------------------------------------------------------- the sizer


def test_sizer_sends_one_item_until_it_has_measured_something() -> None:
    sizer = ChunkSizer(None, 0.01, 100)
    assert sizer.limit() == 1
    sizer.learn(0, 1.0)  # nothing to learn from
    assert sizer.limit() == 1


def test_sizer_sizes_chunks_to_the_target_work() -> None:
    sizer = ChunkSizer(None, 0.05, 100)
    sizer.learn(10, 0.05)  # 5 ms per item
    assert sizer.limit() == 10
    sizer.target = None  # cow_fork before it knows what a child costs
    assert sizer.limit() == 1


@pytest.mark.parametrize(
    ("items", "busy", "expected"),
    [(1000, 1e-6, 100), (1, 10.0, 1), (5, 0.0, 1)],
)
def test_sizer_stays_within_one_and_the_maximum(items: int, busy: float, expected: int) -> None:
    sizer = ChunkSizer(None, 0.01, 100)
    sizer.learn(items, busy)
    assert sizer.limit() == expected


def test_a_fixed_chunk_ignores_what_was_measured() -> None:
    sizer = ChunkSizer(7, 0.01, 100)
    assert sizer.limit() == 7
    sizer.learn(1000, 1e-6)
    assert sizer.limit() == 7


# ---------------------------------------------------------------------- the inbox bound


def _peak_queued(kind: str, n: int, pause: float, queue_size: int) -> int:
    class Pipe(mg.Pipeline):
        @mg.producer
        def numbers(self) -> Any:
            return range(n)

        @mg.processor(execution=kind, processes=2)
        def work(self, x: int) -> int:
            if pause:
                time.sleep(pause)
            return x

    handle = Pipe().run(background=True, queue_size=queue_size)
    peak = 0
    while handle.running:
        peak = max(peak, handle.snapshot()["stages"]["work"]["queued"])
        time.sleep(0.001)
    result = handle.wait()
    assert result is not None and result.ok, result
    assert result.stats.stages["work"]["processed"] == n
    return peak


def test_an_ipc_fork_stage_keeps_queue_size_for_items_that_take_milliseconds() -> None:
    """Chunks of 5 ms items are two items (10 ms of work): the inbox stays as it is."""
    peak = _peak_queued("ipc_fork", 400, 0.005, 50)
    assert 0 < peak <= 50 + 256  # soft by one producer chunk, as on any stage


def test_an_ipc_fork_stage_widens_its_inbox_to_two_chunks_of_trivial_items(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A chunk target far above any trivial item's cost, however loaded or traced the
    # machine: every chunk is MAX_CHUNK items, so the inbox must widen.
    monkeypatch.setattr(ipc_fork, "TARGET_CHUNK_SECONDS", 10.0)
    peak = _peak_queued("ipc_fork", 300_000, 0.0, 100)
    assert 100 + 256 < peak <= 2 * ipc_fork.MAX_CHUNK + 256


def test_progress_windows_carry_about_the_given_work() -> None:
    """One item until something is measured (so the first chunks are exact), then
    enough items for ``seconds`` of work, within one and the maximum."""
    sizer = ChunkSizer(None, 0.01, 100)
    assert sizer.window(50e-6, 1024) == 1
    sizer.learn(1000, 1000 * 1e-7)  # 0.1 us per item
    assert sizer.window(50e-6, 1024) == 500
    assert sizer.window(50e-6, 256) == 256
    slow = ChunkSizer(None, 0.01, 100)
    slow.learn(2, 2 * 5e-3)  # 5 ms per item: a window of one, an exact index
    assert slow.window(50e-6, 1024) == 1


def test_the_estimate_weighs_replies_by_their_items() -> None:
    """A first reply of one slow item (a child's first touch of the stage) must not
    hold trivial items back for a dozen chunks: the next, larger reply settles it."""
    sizer = ChunkSizer(None, 0.01, 8192)
    sizer.learn(1, 40e-6)
    assert sizer.limit() == 250
    sizer.learn(250, 250 * 1e-7)
    assert sizer.limit() == 8192


def test_a_change_of_pace_shows_after_one_reply() -> None:
    sizer = ChunkSizer(None, 0.01, 8192)
    for _ in range(20):
        sizer.learn(8192, 8192 * 1e-7)
    assert sizer.limit() == 8192
    sizer.learn(8192, 8192 * 5e-3)  # the items became 5 ms each
    assert sizer.limit() < 10  # from 8192: about 10 ms of the new items
