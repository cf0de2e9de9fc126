"""Volume: ten million items through a thread stage and an ipc_fork stage, counted
exactly, in bounded memory.

The memory bound. The figure measured is the peak, sampled every 50 ms, of the sum of
the RSS of this process and all its children (the two ipc_fork workers). RSS counts a
page shared copy-on-write once per process, so the sum over-states the real use: it
is an upper bound. Each worker is a fork of this process, so it starts at most at
this process's RSS, ``base``. Everything in flight is bounded by the queues (1000
items per stage inbox by default) and the chunks on the pipes, a few megabytes of
small ints at most. The bound asserted is therefore ``3 * base + 100 MB``: three
interpreters at their starting size plus a generous 100 MB for everything in flight
and allocator slack. A pipeline that held the stream instead of streaming it would
need more than 10,000,000 x 36 bytes = 360 MB for the ints and list slots alone.
Measured here (2 loaded cores, Python 3.11): about 20 s for 10M, peak 61 MB with a
25 MB base (the same peak as for 1M items: memory does not grow with the count).

``MINIGUN_RELIABILITY_VOLUME`` sets the number of items (default 10,000,000).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import psutil
import pytest

import minigun as mg
from reliability.support import VOLUME, assert_conserved, count

N = int(os.environ.get("MINIGUN_RELIABILITY_VOLUME", "") or 10_000_000)
MB = 1_000_000


class Volume(mg.Pipeline):
    def __init__(self, n: int) -> None:
        self.n = n
        self.count = 0
        self.total = 0

    @mg.producer
    def numbers(self) -> Any:
        yield from range(self.n)

    @mg.processor(threads=2)
    def plus_one(self, x: int) -> int:
        return x + 1

    @mg.processor(execution="ipc_fork", processes=2)
    def double(self, x: int) -> int:
        return 2 * x

    @mg.consumer(threads=1)
    def tally(self, x: int) -> None:
        self.count += 1
        self.total += x


class PeakTreeRss:
    """Samples the RSS of this process plus its children until stopped."""

    def __init__(self, every: float = 0.05) -> None:
        self.every = every
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-rss", daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = me.memory_info().rss
            for child in me.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except psutil.Error:
                    continue
            self.peak = max(self.peak, total)
            self.samples += 1
            self._stop.wait(self.every)

    def __enter__(self) -> PeakTreeRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


@pytest.mark.timeout(900)
def test_ten_million_items_exact_counts_bounded_memory(capsys: pytest.CaptureFixture[str]) -> None:
    import gc

    gc.collect()
    base = psutil.Process().memory_info().rss
    bound = 3 * base + 100 * MB
    pipeline = Volume(N)
    started = time.monotonic()
    with PeakTreeRss() as rss:
        handle = pipeline.run(background=True)
        result = handle.wait(800)
    took = time.monotonic() - started
    assert result is not None, "the volume run did not finish in 800 s"
    count(VOLUME, pipeline.count)
    with capsys.disabled():
        print(
            f"\nreliability: volume {N:,} items in {took:.1f}s, peak tree RSS "
            f"{rss.peak / MB:.0f} MB (base {base / MB:.0f} MB, bound {bound / MB:.0f} MB, "
            f"{rss.samples} samples)"
        )
    assert (result.status, result.exit_code) == ("succeeded", mg.ExitCode.OK), result.error
    assert pipeline.count == N
    assert pipeline.total == N * (N + 1)  # sum of 2 * (x + 1) for x < N
    stages = result.stats.stages
    assert_conserved(stages)
    assert result.stats.total_produced == N
    assert result.stats.total_consumed == N
    for name in ("plus_one", "double", "tally"):
        assert stages[name]["items_in"] == stages[name]["processed"] == N, name
    assert rss.samples > 0
    assert rss.peak < bound, f"peak {rss.peak / MB:.0f} MB >= bound {bound / MB:.0f} MB"
