"""Producers: pulling items out of user code and handing them on in micro-batches.

A producer hands items on in chunks whose size adapts: it doubles (up to
``MAX_CHUNK``) while items arrive faster than ``FAST_ITEM_SECONDS`` each and falls
back to 1 when they do not, so a million generated ints do not pay a hand-over
each while a slow API's rows go on one by one. A chunk is also at most half the
smallest target inbox, so a full inbox overshoots its capacity by at most half
(the default ``queue_size=1000`` allows chunks of 500).

A source that is fast and then blocks (the last rows of a page, then a wait for
the next page) would strand a partial chunk. So pending items sit in a
``deque`` that the engine's controller also watches: when a producer's pending
items have not moved for ``STALE_SECONDS`` it hands them on itself. ``deque``
appends and pops are atomic, so neither side needs a lock per item.

Stop requests are honoured between items: a generator is closed, and
``out.emit`` raises inside a ``(self, out)`` producer to unwind it. A source that
raises still hands over every item it yielded before the error.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterator
from itertools import chain, islice
from typing import TYPE_CHECKING, Any

from minigun.core.inbox import pop_left
from minigun.core.stats import StageStats

if TYPE_CHECKING:
    from collections.abc import Generator, Iterator

    from minigun.core.graph import StageNode
    from minigun.core.run_context import RunContext
    from minigun.core.stage import StageRuntime

__all__ = ["ProducerRuntime"]

FAST_ITEM_SECONDS = 20e-6
MAX_CHUNK = 512
STALE_SECONDS = 0.005
_END = object()  # follows a source's last item
perf_counter = time.perf_counter


class _StopProducing(BaseException):
    """Raised inside a ``(self, out)`` producer's ``out.emit`` once the run stops."""


class _ProducerRouted:
    __slots__ = ("_out", "_target")

    def __init__(self, out: _ProducerOut, target: str) -> None:
        self._out = out
        self._target = target

    def emit(self, value: Any) -> None:
        self._out.producer.routed.append((self._target, value))
        self._out.after_emit()


class _ProducerOut:
    """The ``out`` a ``(self, out)`` producer emits through."""

    __slots__ = ("producer",)

    def __init__(self, producer: ProducerRuntime) -> None:
        self.producer = producer

    def emit(self, value: Any) -> None:
        producer = self.producer
        producer.pending.append(value)
        if len(producer.pending) >= producer.chunk:
            producer.hand_over()

    def after_emit(self) -> None:
        producer = self.producer
        if len(producer.routed) >= producer.chunk:
            producer.hand_over()

    def to(self, name: str) -> _ProducerRouted:
        return _ProducerRouted(self, name)


class ProducerRuntime:
    """One producer during one run."""

    def __init__(self, node: StageNode, run: RunContext, fixed_chunk: int | None = None) -> None:
        self.node = node
        self.run = run
        self.name = node.name
        self.stats = StageStats(node.name, 1, node.execution)
        self.targets: list[StageRuntime] = []
        self.blocking: list[bool] = []
        self.fixed_chunk = fixed_chunk
        self.chunk = fixed_chunk or 1
        self._max_chunk = 0  # set from the targets' capacities at the first hand-over
        self.pending: deque[Any] = deque()
        self.routed: deque[tuple[str, Any]] = deque()
        self._mark = perf_counter()
        self._watch_len = 0  # controller's view of len(pending) at its last look
        self.exhausted = False
        self.done = False
        self._take_lock = threading.Lock()
        #: How many items this producer will yield, when it is known (for an ETA).
        self.expected: int | None = None

    # ------------------------------------------------------------------ hand-over

    def _take(self) -> tuple[list[Any], list[tuple[str, Any]]]:
        """Pop what is pending (producer or controller; deque pops are atomic)."""
        # Takers take turns; appends only grow the deques, so the counts hold.
        with self._take_lock:
            outs = pop_left(self.pending, len(self.pending))
            routed = pop_left(self.routed, len(self.routed))
        if outs and outs[-1] is _END:  # the source is exhausted; whoever sees it says so
            outs.pop()
            self.exhausted = True
        return outs, routed

    def _adapt(self, n: int) -> None:
        now = perf_counter()
        elapsed = now - self._mark
        self._mark = now
        if self.run.timing:
            self.stats.busy_seconds += elapsed
        if self.fixed_chunk or n == 0:
            return
        if elapsed < FAST_ITEM_SECONDS * n:
            if not self._max_chunk:
                smallest = min((t.inbox.capacity for t in self.targets), default=MAX_CHUNK)
                self._max_chunk = max(1, min(MAX_CHUNK, smallest // 2))
            self.chunk = min(self.chunk * 2, self._max_chunk)
        else:
            self.chunk = 1

    def hand_over(self) -> None:
        """Deliver pending items (producer thread); unwind the producer once stopping."""
        outs, routed = self._take()
        self._adapt(len(outs) + len(routed))
        if (outs or routed) and not self.run.deliver_produced(self, outs, routed):
            raise _StopProducing()
        if self.run.stopping:
            raise _StopProducing()
        self._mark = perf_counter()

    def hand_over_stale(self) -> None:
        """Controller side: hand on pending items that have not moved since the last look."""
        n = len(self.pending) + len(self.routed)
        if n and n == self._watch_len:
            outs, routed = self._take()
            if outs or routed:
                self.run.deliver_produced(self, outs, routed, block=False)
            n = 0
        self._watch_len = n

    def _hand_over_rest(self) -> None:
        """The source raised: deliver what it yielded before, then let the error end it.

        ``deque.extend(islice(...))`` keeps the items it took before the source
        raised, as does ``out.emit``; they were produced and must reach the stages
        (and ``total_produced``) before the error stops the run.
        """
        outs, routed = self._take()
        if outs or routed:
            self.run.deliver_produced(self, outs, routed)

    # ------------------------------------------------------------------ running

    def _source(self) -> Iterator[Any]:
        """The producer's items, noting how many it will yield when that is known; an
        async generator's come off the run's event loop."""
        items = self.node.func()
        self.expected = self._expected(items)
        if self.node.coroutine:
            from minigun.core.executors.async_ import open_source

            return open_source(items, self.run)
        return iter(items)

    def _expected(self, iterable: Any) -> int | None:
        """The ``total=`` hint (a number, or a callable given the pipeline), else the
        iterable's ``len()`` (a list, a range, a sized query result), else unknown.

        A hint is only for display (an ETA): one that raises is ignored, not a failure.
        """
        hint = self.node.options.get("total")
        if callable(hint):
            try:
                hint = hint(self.node.owner)
            except Exception:
                return None
        if isinstance(hint, int) and not isinstance(hint, bool) and hint >= 0:
            return hint
        if hasattr(iterable, "__len__"):
            try:
                return len(iterable)
            except Exception:
                return None
        return None

    def chunks(self) -> Generator[list[Any], None, None]:
        """All-inline mode: the producer's items in fixed-size chunks (deterministic)."""
        source = self._source()
        try:
            while True:
                chunk: list[Any] = []
                try:
                    chunk.extend(islice(source, self.chunk))  # keeps what came before a raise
                except Exception:
                    if chunk:
                        yield chunk  # the items yielded before the error are produced
                    raise
                if not chunk:
                    return
                yield chunk
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    def _iterate(self) -> None:
        """Pull chunks with ``deque.extend(islice(...))``: the per-item work stays in C,
        and items land in ``pending`` one by one, where the controller can see them
        if the source blocks mid-chunk. A sentinel after the last item tells whoever
        takes it that the source is exhausted."""
        source = self._source()
        feed = chain(source, (_END,))
        extend = self.pending.extend
        try:
            self._mark = perf_counter()
            while not self.exhausted:
                extend(islice(feed, self.chunk))
                self.hand_over()
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    def produce(self) -> None:
        """Run the producer to its end (or until the run stops), delivering as it goes."""
        try:
            if self.node.shape == "out":
                self._mark = perf_counter()
                self.node.func(_ProducerOut(self))
                self.hand_over()
            else:
                self._iterate()
        except _StopProducing:
            pass
        except Exception as exc:
            self._hand_over_rest()
            self.run.producer_error(self, exc)
        finally:
            self.done = True
            self.run.producer_done(self)
