"""A stage's bounded input queue, built for handing items over in micro-batches.

Why not ``queue.Queue``: it takes a lock and notifies a condition for every item,
which costs more than a trivial stage's work. Here the fast paths are a lock-free
``deque.extend`` / ``deque.popleft`` (atomic under the GIL); the condition is only
touched when a consumer is asleep on an empty inbox or a producer on a full one. A
getter takes *whatever is ready* (up to a limit) and never waits to fill a batch.

Missed wake-ups are impossible: a sleeper registers itself under the lock and
re-checks the deque before waiting; a waker that sees a registered sleeper takes the
lock (which the sleeper only releases inside ``wait``) before notifying. Waits also
time out periodically as a second line of defence.

Capacity is counted in items and is soft by at most one batch: a put of a batch is
admitted whole once the inbox is below capacity. ``block=False`` ignores capacity;
the engine uses it for edges that go backwards in a cycle, so backpressure can never
deadlock a cycle.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from itertools import repeat
from typing import Any

__all__ = ["Inbox", "pop_left"]

_POLL = 0.2  # seconds; a safety net only, wake-ups are explicit
_POPLEFT = deque.popleft


def pop_left(items: deque[Any], count: int) -> list[Any]:
    """Pop ``count`` items off the left of ``items`` (the caller knows they are there).

    ``map`` over the unbound method runs the loop in C: about 10% faster on the fork
    executors' hot path than a comprehension calling the bound method.
    """
    return list(map(_POPLEFT, repeat(items, count)))


class Inbox:
    __slots__ = (
        "_closed",
        "_cond",
        "_getter_lock",
        "_items",
        "_sleeping_getters",
        "_sleeping_putters",
        "capacity",
        "single_getter",
    )

    def __init__(self, capacity: int, single_getter: bool = False) -> None:
        self.capacity = capacity
        #: True when exactly one thread ever calls ``get_batch`` (a fast path).
        self.single_getter = single_getter
        self._getter_lock = threading.Lock()
        self._items: deque[Any] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._sleeping_getters = 0
        self._sleeping_putters = 0
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    def put_many(self, items: Iterable[Any], block: bool = True) -> None:
        """Append ``items``; with ``block``, first wait while the inbox is full."""
        if block and len(self._items) >= self.capacity and not self._closed:
            with self._cond:
                self._sleeping_putters += 1
                try:
                    while len(self._items) >= self.capacity and not self._closed:
                        self._cond.wait(_POLL)
                finally:
                    self._sleeping_putters -= 1
        self._items.extend(items)
        if self._sleeping_getters:
            with self._cond:
                self._cond.notify_all()

    def get_batch(self, limit: int, timeout: float | None = None) -> list[Any] | None:
        """Take up to ``limit`` ready items, waiting only while none is ready.

        Returns ``None`` once the inbox is closed and empty, and an empty list when
        ``timeout`` expires first.
        """
        items = self._items
        if not items:
            with self._cond:
                self._sleeping_getters += 1
                try:
                    waited = 0.0
                    while not items:
                        if self._closed:
                            return None
                        if timeout is not None and waited >= timeout:
                            return []
                        step = _POLL if timeout is None else min(_POLL, timeout - waited)
                        self._cond.wait(step)
                        waited += step
                finally:
                    self._sleeping_getters -= 1
        if self.single_getter:
            # Nobody else pops, so the items counted here are still there.
            batch = pop_left(items, min(limit, len(items)))
        else:
            # Getters take turns (putters never wait for this lock), so the count
            # cannot shrink between len() and the pops.
            with self._getter_lock:
                batch = pop_left(items, min(limit, len(items)))
        if self._sleeping_putters and len(items) < self.capacity:
            with self._cond:
                self._cond.notify_all()
        return batch

    def close(self) -> None:
        """Wake everyone; getters return ``None`` once the inbox is empty."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
