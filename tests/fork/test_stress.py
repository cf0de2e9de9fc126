"""Forking while other threads log and print at full speed must never hang a child.

The parent's threads write to pipes that are drained slowly, so they spend most of
their time blocked inside ``write`` *holding the stream's buffer lock*: the worst
case for a fork. The children log and print too. A child that inherited a held
lock would hang on its first write; the run would then never end.
"""

from __future__ import annotations

import io
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import psutil
import pytest

import minigun as mg
from support import assert_conserved

N_ITEMS = 5000
#: Seconds without a single item settling: a child deadlocked. (A whole healthy run
#: takes 5-20 s on two busy cores, minutes under coverage on a loaded machine, so the
#: watchdog looks at progress, not at the total.)
STALL = 60.0

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


class SlowPipe:
    """A text stream on a pipe whose reader takes its time."""

    def __init__(self) -> None:
        self.read_fd, write_fd = os.pipe()
        self.stream = io.TextIOWrapper(io.BufferedWriter(io.FileIO(write_fd, "w"), 4096))
        self.stop = threading.Event()
        self.lines = 0
        self.thread = threading.Thread(target=self._drain, daemon=True)
        self.thread.start()

    def _drain(self) -> None:
        while True:
            data = os.read(self.read_fd, 4096)
            if not data:
                return
            self.lines += data.count(b"\n")
            time.sleep(0.0002)

    def close(self) -> None:
        self.stream.close()
        self.thread.join(10)
        os.close(self.read_fd)


@pytest.fixture
def noisy_parent(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """sys.stdout and a logger on slow pipes, and two threads writing to them flat out."""
    out, log = SlowPipe(), SlowPipe()
    monkeypatch.setattr(sys, "stdout", out.stream)
    logger = logging.getLogger("minigun.tests.stress")
    handler = logging.StreamHandler(log.stream)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    stop = threading.Event()

    def printer() -> None:
        # The same object as sys.stdout during the test; named explicitly because
        # pytest swaps sys.stdout back and forth between the phases of a test.
        stream = out.stream
        while not stop.is_set():
            print("p" * 300, file=stream)

    def logger_thread() -> None:
        while not stop.is_set():
            logger.info("l" * 300)

    threads = [threading.Thread(target=f, daemon=True) for f in (printer, logger_thread)]
    for thread in threads:
        thread.start()
    try:
        yield {"logger": logger, "stdout": out, "log": log}
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
        logger.removeHandler(handler)
        monkeypatch.undo()
        out.close()
        log.close()


def _noisy_pipeline(kind: str) -> type[mg.Pipeline]:
    class Noisy(mg.Pipeline):
        @mg.producer
        def numbers(self) -> Any:
            yield from range(N_ITEMS)

        @mg.processor(threads=2)
        def chatty_thread_stage(self, x: int) -> int:
            logging.getLogger("minigun.tests.stress").info("thread stage %d", x)
            return x

        # chunk=1: a fork (or a round trip) per item, every one of them a chance to
        # catch a thread inside print() or a log call.
        @mg.processor(execution=kind, processes=2, chunk=1)
        def forked(self, x: int) -> int:
            if x % 100 == 0:  # the children write through the same streams
                print(f"child {os.getpid()} item {x}")
                logging.getLogger("minigun.tests.stress").info("child item %d", x)
            return x + 1

        @mg.consumer
        def total(self, x: int) -> None:
            self.sum = getattr(self, "sum", 0) + x

    return Noisy


def _settled(handle: mg.RunHandle) -> int:
    stages = handle.snapshot()["stages"].values()
    return sum(s["processed"] + s["dropped"] + s["skipped"] + s["failed"] for s in stages)


def _run_or_fail_on_hang(pipeline: mg.Pipeline) -> mg.RunResult:
    handle = pipeline.run(background=True)
    settled = -1
    while (result := handle.wait(STALL)) is None and _settled(handle) > settled:
        settled = _settled(handle)
    if result is None:
        stuck = psutil.Process().children(recursive=True)
        deadline = time.monotonic() + 60
        while handle.running and time.monotonic() < deadline:  # each new child hangs too
            for child in psutil.Process().children(recursive=True):
                child.kill()
            handle.wait(0.05)
        pytest.fail(f"run hung: {len(stuck)} children stuck (a child deadlocked on a lock)")
    return result


@pytest.mark.parametrize("repeat", range(2))
def test_5000_cow_fork_items_while_threads_log_and_print_never_hang(
    noisy_parent: dict[str, Any], repeat: int
) -> None:
    pipeline = _noisy_pipeline("cow_fork")()
    result = _run_or_fail_on_hang(pipeline)
    assert result.status == "succeeded", result.error
    assert pipeline.sum == sum(range(1, N_ITEMS + 1))
    assert_conserved(result)
    assert noisy_parent["stdout"].lines > 0


def test_ipc_fork_workers_respawned_under_noise_never_hang(noisy_parent: dict[str, Any]) -> None:
    """Respawns happen mid-run, with every thread busy: the riskiest forks."""

    class Respawning(mg.Pipeline):
        @mg.producer
        def numbers(self) -> Any:
            yield from range(400)

        @mg.processor(execution="ipc_fork", processes=2, chunk=1, on_error="skip")
        def forked(self, x: int) -> int:
            print(f"worker {os.getpid()} item {x}")
            logging.getLogger("minigun.tests.stress").info("worker item %d", x)
            if x % 10 == 0:
                os._exit(1)  # a fresh worker is forked for the next item
            return x

    result = _run_or_fail_on_hang(Respawning())
    assert result.status == "succeeded", result.error
    assert result.stats.stages["forked"]["skipped"] == 40
    assert result.stats.stages["forked"]["processed"] == 360
