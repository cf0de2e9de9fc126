"""Pipelines the fault-injection tests run through the isolated runner and the CLI.

They are importable by a child as ``reliability.faulty:Name`` with ``tests/`` on
``PYTHONPATH``. A pipeline the test must catch mid-run writes a "ready" file (pid,
process group, session) once it is in the state under test; the test waits for that
file instead of sleeping a guessed amount.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import minigun as mg


def announce(path: str, **extra: object) -> None:
    """Write the ready file atomically (the test polls for it)."""
    info = {"pid": os.getpid(), "pgid": os.getpgrp(), "sid": os.getsid(0), **extra}
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as fh:
        json.dump(info, fh)
    os.replace(tmp, path)


class Hang(mg.Pipeline):
    """One stage (on ``execution``) that announces itself and then never finishes its
    item: only the run timeout and the group kill can end this run."""

    def __init__(self, ready: str, execution: str = "thread") -> None:
        self.ready = ready
        self.execution_of_hang = execution

    @mg.producer
    def numbers(self) -> Any:
        yield from range(4)

    @mg.processor(processes=2, threads=2)
    def hang(self, x: int) -> int:
        announce(f"{self.ready}.{x}")
        while True:  # not even SIGTERM gets it out: the drain cannot finish
            time.sleep(0.5)

    @mg.consumer
    def sink(self, x: int) -> None:
        pass


def hang_on(execution: str) -> type[mg.Pipeline]:
    """``Hang`` with its hanging stage on ``execution`` (a stage option, not a run
    override, so the producer and sink stay on threads)."""
    return {"thread": Hang, "cow_fork": HangCow, "ipc_fork": HangIpc}[execution]


class HangCow(Hang):
    @mg.processor(execution="cow_fork", processes=2, chunk=1)
    def hang(self, x: int) -> int:
        announce(f"{self.ready}.{x}")
        while True:
            time.sleep(0.5)


class HangIpc(Hang):
    @mg.processor(execution="ipc_fork", processes=2, chunk=1)
    def hang(self, x: int) -> int:
        announce(f"{self.ready}.{x}")
        while True:
            time.sleep(0.5)


class Steady(mg.Pipeline):
    """``n`` items through a thread stage and an ipc_fork stage at a steady pace, so
    that a signal can land at any moment of the run; announces itself when it starts."""

    def __init__(self, ready: str, n: int = 400) -> None:
        self.ready = ready
        self.n = n

    @mg.before_run
    def started(self) -> None:
        announce(self.ready)

    @mg.producer
    def numbers(self) -> Any:
        yield from range(self.n)

    @mg.processor(threads=2)
    def pace(self, x: int) -> int:
        time.sleep(0.003)
        return x

    @mg.processor(execution="ipc_fork", processes=2, chunk=4)
    def square(self, x: int) -> int:
        time.sleep(0.002)
        return x * x

    @mg.consumer
    def sink(self, x: int) -> None:
        pass


class BigDeadLetters(mg.Pipeline):
    """Every item is dead-lettered; each record holds a ``size``-byte string, so the
    dead-letter file outgrows a small ``RLIMIT_FSIZE`` after a few records."""

    def __init__(self, n: int = 50, size: int = 4096) -> None:
        self.n = n
        self.size = size

    @mg.producer
    def items(self) -> Any:
        for i in range(self.n):
            yield f"{i:06d}" + "x" * self.size

    @mg.consumer(on_error="dead_letter")
    def reject(self, item: str) -> None:
        raise ValueError(f"rejected {item[:6]}")


class Small(mg.Pipeline):
    """A successful run with a result JSON of a few kilobytes and no dead letters."""

    @mg.producer
    def items(self) -> Any:
        yield from range(10)

    @mg.processor
    def double(self, x: int) -> int:
        return 2 * x

    @mg.consumer
    def sink(self, x: int) -> None:
        pass


class Typed(mg.Pipeline):
    """Constructor params with type hints, for the typed ``-p`` rows of the catalogue."""

    def __init__(self, day: str = "2026-11-30", pages: int = 1, ratio: float = 1.0) -> None:
        self.day = day
        self.pages = pages
        self.ratio = ratio

    @mg.producer
    def pages_of_the_day(self) -> Any:
        if not isinstance(self.day, str):  # `-p day=2026` must arrive as "2026"
            raise TypeError(f"day arrived as {type(self.day).__name__}")
        yield from range(self.pages)

    @mg.consumer
    def sink(self, x: int) -> None:
        pass


class OneThreadSink(mg.Pipeline):
    """A consumer declared with one thread (think SQLite): it fails the run if it ever
    sees two threads at once, which a ``--max-threads`` *cap* must never cause."""

    def __init__(self) -> None:
        import threading

        self.lock = threading.Lock()
        self.inside = 0
        self.overlaps = 0

    @mg.producer
    def numbers(self) -> Any:
        yield from range(200)

    @mg.consumer(threads=1)
    def save(self, x: int) -> None:
        with self.lock:
            self.inside += 1
            if self.inside > 1:
                self.overlaps += 1
        time.sleep(0.002)
        with self.lock:
            self.inside -= 1

    @mg.after_run
    def check(self, result: Any) -> None:
        if self.overlaps:
            raise RuntimeError("the one-thread consumer ran on several threads at once")
