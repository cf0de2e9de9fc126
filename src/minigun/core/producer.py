"""Producers: pulling items out of user generators and handing them on in micro-batches.

A producer hands items on as soon as it is slow and in batches when it is fast:
the batch size starts at 1, doubles while items arrive faster than
``FAST_ITEM_SECONDS`` each, and falls back to 1 when they do not. So a producer
reading a slow API passes every row on at once, and a producer generating a
million ints does not pay a hand-over per item. Stop requests are honoured between
items: a generator is closed, an ``out.emit`` raises inside the producer to unwind it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from itertools import islice
from typing import TYPE_CHECKING, Any

from minigun.core.stage import Out
from minigun.core.stats import StageStats

if TYPE_CHECKING:
    from minigun.core.engine import Run
    from minigun.core.graph import StageNode
    from minigun.core.stage import StageRuntime

__all__ = ["ProducerRuntime"]

FAST_ITEM_SECONDS = 20e-6
MAX_CHUNK = 256
perf_counter = time.perf_counter


class _StopProducing(BaseException):
    """Raised inside a ``(self, out)`` producer's ``out.emit`` once the run stops."""


class _ProducerOut(Out):
    __slots__ = ("_producer",)

    def __init__(self, producer: ProducerRuntime) -> None:
        super().__init__([], [])
        self._producer = producer

    def emit(self, value: Any) -> None:
        self.outs.append(value)
        if len(self.outs) >= self._producer.chunk:
            self._producer.hand_over(self)

    def to(self, name: str) -> Any:
        routed = super().to(name)
        producer = self._producer

        class _Emitter:
            def emit(self, value: Any) -> None:
                routed.emit(value)
                if len(producer_out.routed) >= producer.chunk:
                    producer.hand_over(producer_out)

        producer_out = self
        return _Emitter()


class ProducerRuntime:
    """One producer during one run."""

    def __init__(self, node: StageNode, run: Run, fixed_chunk: int | None = None) -> None:
        self.node = node
        self.run = run
        self.name = node.name
        self.stats = StageStats(node.name, 1, "thread" if node.execution != "inline" else "inline")
        self.targets: list[StageRuntime] = []
        self.blocking: list[bool] = []
        self.fixed_chunk = fixed_chunk
        self.chunk = fixed_chunk or 1
        self._mark = perf_counter()

    def _adapt(self, n: int) -> None:
        now = perf_counter()
        elapsed = now - self._mark
        self._mark = now
        if self.run.timing:
            self.stats.busy_seconds += elapsed
        if self.fixed_chunk:
            return
        if elapsed < FAST_ITEM_SECONDS * n:
            self.chunk = min(self.chunk * 2, MAX_CHUNK)
        else:
            self.chunk = 1

    def hand_over(self, out: Out) -> None:
        """Deliver what ``out`` holds; raise to unwind the producer once the run stops."""
        outs, routed = out.outs, out.routed
        out.outs, out.routed = [], []
        n = len(outs) + len(routed)
        self._adapt(n)
        if not self.run.deliver_produced(self, outs, routed):
            raise _StopProducing()
        self._mark = perf_counter()

    def iterate(self) -> Iterator[list[Any]]:
        """Chunks of a ``(self)`` producer's items, sized by the adaptive rule."""
        source = iter(self.node.func())
        try:
            self._mark = perf_counter()
            while True:
                chunk = list(islice(source, self.chunk))
                if not chunk:
                    return
                self._adapt(len(chunk))
                yield chunk
                self._mark = perf_counter()
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    def produce(self) -> None:
        """Run the producer to its end (or until the run stops), delivering as it goes."""
        try:
            if self.node.shape == "out":
                out = _ProducerOut(self)
                self._mark = perf_counter()
                try:
                    self.node.func(out)
                    if out.outs or out.routed:
                        self.hand_over(out)
                except _StopProducing:
                    pass
            else:
                for chunk in self.iterate():
                    if not self.run.deliver_produced(self, chunk, []):
                        break
        except Exception as exc:
            self.run.producer_error(self, exc)
        finally:
            self.run.producer_done(self)
