"""Pipelines the real schedulers run in the e2e env, addressed by file path.

Every pipeline writes its process-group id to ``pgid_file`` (a param) from the
pipeline process, so the test can watch the whole group: the runner starts the child
in a session of its own, and the cow_fork and ipc_fork stages below add forked
children and grandchildren to that group. Loaded by the platforms from this file's
path, so it imports nothing from the tests package.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import minigun as mg


def record_group(pgid_file: str) -> None:
    path = Path(pgid_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(str(os.getpgid(0)))
    tmp.replace(path)  # the test never reads half a number


class Succeeds(mg.Pipeline):
    """A few items through a cow_fork and an ipc_fork stage."""

    def __init__(self, pgid_file: str, n: int = 6) -> None:
        self.pgid_file = pgid_file
        self.n = int(n)

    @mg.producer
    def numbers(self):
        record_group(self.pgid_file)
        yield from range(self.n)

    @mg.processor(execution="cow_fork", processes=2)
    def square(self, x):
        return x * x

    @mg.processor(execution="ipc_fork", processes=2)
    def plus_one(self, x):
        return x + 1

    @mg.consumer
    def report(self, x):
        print(f"e2e: consumed {x}", flush=True)


class Skips(mg.Pipeline):
    """Nothing to do (exit 99)."""

    def __init__(self, pgid_file: str) -> None:
        self.pgid_file = pgid_file

    @mg.producer
    def numbers(self):
        record_group(self.pgid_file)
        raise mg.Skip("e2e: no new data")
        yield  # pragma: no cover - makes this a generator

    @mg.consumer
    def discard(self, x):
        pass


class Fails(mg.Pipeline):
    """A stage raises (exit 1): its traceback must reach the platform at ERROR."""

    def __init__(self, pgid_file: str) -> None:
        self.pgid_file = pgid_file

    @mg.producer
    def numbers(self):
        record_group(self.pgid_file)
        yield from range(5)

    @mg.processor
    def explode(self, x):
        if x == 2:
            raise ValueError("e2e: boom on item 2")
        return x

    @mg.consumer
    def discard(self, x):
        pass


def say(line: str, stream: Any = None) -> None:
    """Print ``line``, carrying on if the stream is gone, as :mod:`logging` does.

    When the runner is killed the child's output pipes lose their reader. An item that
    died of the resulting ``BrokenPipeError`` would end the drain at once and hide a
    process group that outlives its runner (issue 9, item 1); real pipelines log
    through :mod:`logging`, which swallows write errors and keeps working.
    """
    try:
        print(line, file=stream or sys.stdout, flush=True)
    except (OSError, ValueError):
        pass


class Drains(mg.Pipeline):
    """Slow items for the stop scenarios: each takes ``item_seconds`` in a cow_fork
    child, printing a line every second (the lines a drain must deliver to the
    platform's log with their own times); an ipc_fork stage keeps two long-lived
    workers in the group too."""

    def __init__(self, pgid_file: str, item_seconds: float = 25.0, items: int = 1000) -> None:
        self.pgid_file = pgid_file
        self.item_seconds = float(item_seconds)
        self.items = int(items)

    @mg.producer
    def numbers(self):
        record_group(self.pgid_file)
        yield from range(self.items)

    @mg.processor(execution="cow_fork", processes=2)
    def work(self, x):
        started = time.monotonic()
        tick = 0
        while (left := self.item_seconds - (time.monotonic() - started)) > 0:
            say(f"e2e: item {x} working, tick {tick}")
            tick += 1
            time.sleep(min(1.0, left))
        say(f"e2e: item {x} done")
        return x

    @mg.processor(execution="ipc_fork", processes=2)
    def relay(self, x):
        return x

    @mg.consumer
    def report(self, x):
        say(f"e2e: consumed {x}", sys.stderr)
