"""Pipelines with dask stages that the runner's child runs (``on_dask.pipelines:Name``)."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import minigun as mg


def write_ready(path: str, **extra: Any) -> None:
    """Atomically write ``{"sid": …, "pid": …}`` (and ``extra``) to ``path``."""
    with open(path + ".tmp", "w") as fh:
        json.dump({"sid": os.getsid(0), "pid": os.getpid(), **extra}, fh)
    os.replace(path + ".tmp", path)


class Steady(mg.Pipeline):
    """``n`` items (None: endless) of ``sleep`` seconds each on a dask stage; it writes
    ``started`` as the run starts and ``ready`` once items come back from the cluster."""

    def __init__(
        self, n: int | None = 200, sleep: float = 0.01, ready: str = "", started: str = ""
    ) -> None:
        self.n = n
        self.sleep = sleep
        self.ready = ready
        self.started = started
        self.seen = 0

    @mg.before_run
    def say_started(self) -> None:
        if self.started:
            write_ready(self.started)

    @mg.producer
    def numbers(self) -> Any:
        x = 0
        while self.n is None or x < self.n:
            yield x
            x += 1

    @mg.processor(execution="dask")
    def work(self, x: int) -> int:
        time.sleep(self.sleep)
        return x

    @mg.consumer
    def save(self, x: int) -> None:
        self.seen += 1
        if self.seen == 20 and self.ready:
            write_ready(self.ready)
