"""Child-process targets with ``async def`` stages, for the runner's stop paths.

:class:`AsyncHang` keeps ``concurrency`` coroutines in flight that never finish on
their own: a stop cannot drain them, so after grace they must be cancelled, and each
writes a line into ``unwound`` from its ``finally`` block when it is.
"""

from __future__ import annotations

import asyncio

import minigun as mg
from pipelines.contract import _announce


class AsyncHang(mg.Pipeline):
    concurrency = 8

    def __init__(self, ready: str, unwound: str) -> None:
        self.ready = ready
        self.unwound = unwound
        self.started = 0

    @mg.producer
    def items(self):
        n = 0
        while True:
            yield n
            n += 1

    @mg.processor
    async def call(self, x):
        self.started += 1
        if self.started == self.concurrency:
            _announce(self.ready)
        try:
            await asyncio.sleep(3600)
        finally:
            with open(self.unwound, "a") as fh:
                fh.write(f"{x}\n")
        return x

    @mg.consumer
    def save(self, x):
        pass
