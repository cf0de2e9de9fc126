"""Pipelines the adapter tests run, each showing one behaviour of the exit-code contract.

Adapters address them by file path (``.../tests/adapters/pipelines.py:Succeeds``) so the
child process finds them whatever its working directory. Pipelines that take a
``marker_dir`` leave one empty file per process that ran pipeline code, named
``<role>.<pid>``, so a test can check afterwards that none of those processes survived.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import minigun as mg


def _mark(marker_dir: str | None, role: str) -> None:
    if marker_dir:
        Path(marker_dir).mkdir(parents=True, exist_ok=True)
        Path(marker_dir, f"{role}.{os.getpid()}").touch()


class Succeeds(mg.Pipeline):
    """Squares ``n`` numbers on threads.

    With ``record_env``, writes that environment variable's value to
    ``marker_dir/env.txt`` (to check what environment the adapter gave the child).
    """

    def __init__(
        self, n: int = 20, marker_dir: str | None = None, record_env: str | None = None
    ) -> None:
        self.n = int(n)
        self.marker_dir = marker_dir
        self.record_env = record_env

    @mg.producer
    def numbers(self):
        _mark(self.marker_dir, "pipeline")
        if self.marker_dir and self.record_env:
            Path(self.marker_dir, "env.txt").write_text(os.environ.get(self.record_env, ""))
        yield from range(self.n)

    @mg.processor
    def square(self, x):
        return x * x

    @mg.consumer
    def discard(self, x):
        pass


class ForksChildren(mg.Pipeline):
    """A cow_fork stage: each item is processed in a forked child that marks its PID."""

    def __init__(self, n: int = 4, marker_dir: str | None = None) -> None:
        self.n = int(n)
        self.marker_dir = marker_dir

    @mg.producer
    def numbers(self):
        _mark(self.marker_dir, "pipeline")
        yield from range(self.n)

    @mg.processor(execution="cow_fork", processes=2)
    def in_child(self, x):
        _mark(self.marker_dir, "fork")
        return x + 1

    @mg.consumer
    def discard(self, x):
        pass


class Fails(mg.Pipeline):
    """A stage raises on the third item (exit code 1)."""

    @mg.producer
    def numbers(self):
        yield from range(10)

    @mg.processor
    def explode(self, x):
        if x == 3:
            raise ValueError("boom on item 3")
        return x

    @mg.consumer
    def discard(self, x):
        pass


class FlakyOnce(mg.Pipeline):
    """Raises ``mg.TransientError`` (exit 75) until ``marker`` exists; creates it on the way."""

    def __init__(self, marker: str) -> None:
        self.marker = Path(marker)

    @mg.producer
    def numbers(self):
        if not self.marker.exists():
            self.marker.parent.mkdir(parents=True, exist_ok=True)
            self.marker.touch()
            raise mg.TransientError("upstream not ready (first attempt)")
        yield from range(5)

    @mg.consumer
    def discard(self, x):
        pass


class BigParams(mg.Pipeline):
    """Succeeds only if its two params arrived whole: 10 MB of ASCII, 80 KB of UTF-8."""

    def __init__(self, blob: str, accented: str) -> None:
        if (len(blob), set(blob)) != (10 * 1024 * 1024, {"x"}):
            raise ValueError(f"blob arrived as {len(blob)} characters")
        if (len(accented), set(accented)) != (40_000, {"é"}):
            raise ValueError(f"accented arrived as {len(accented)} characters")

    @mg.producer
    def one(self):
        yield 1

    @mg.consumer
    def discard(self, x):
        pass


class Skips(mg.Pipeline):
    """Nothing to do: raises ``mg.Skip`` (exit 99)."""

    @mg.producer
    def numbers(self):
        raise mg.Skip("no new data")
        yield  # pragma: no cover - makes this a generator

    @mg.consumer
    def discard(self, x):
        pass


class Hangs(mg.Pipeline):
    """Never finishes on its own: a cow_fork stage sleeps for ``seconds`` per item.

    Used for timeouts and cancellation: the pipeline process and its forked children
    leave PID markers, and none of them may outlive the task.
    """

    def __init__(self, marker_dir: str, seconds: float = 300.0) -> None:
        self.marker_dir = marker_dir
        self.seconds = float(seconds)

    @mg.producer
    def numbers(self):
        _mark(self.marker_dir, "pipeline")
        yield from range(4)

    @mg.processor(execution="cow_fork", processes=2)
    def sleep(self, x):
        _mark(self.marker_dir, "fork")
        time.sleep(self.seconds)
        return x

    @mg.consumer
    def discard(self, x):
        pass
