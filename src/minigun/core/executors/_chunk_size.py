"""How many items a fork stage sends to one child at a time.

Both fork executors pay a fixed cost per chunk: ``ipc_fork`` a round trip over its
pipes, ``cow_fork`` a whole ``fork()`` (page tables copied, copy-on-write faults in
parent and child, the child's exit). Chunks that are too small waste CPU on that
cost; chunks that are too large leave a worker idle at the end of a stream and, on
``cow_fork``, share one child between more items than necessary. A
:class:`ChunkSizer` keeps a running estimate of the work per item, from the busy time
every reply reports, and sizes a chunk to carry a target amount of work: a fixed
target for ``ipc_fork``, and for ``cow_fork`` a target that follows the measured cost
of one child (see :mod:`.cow_fork`). A stage option ``chunk=N`` fixes the size
instead. Until the first reply there is no estimate, and chunks hold one item.

The estimate weighs each reply by its items: it is the busy time of recent replies
over their items, each reply's share decaying by :data:`_KEEP` per newer one. A
mean of per-reply figures would weigh the first one-item reply (which also pays for
the child's first touch of the stage: copy-on-write faults, cold caches) as much as
a reply of thousands of items, and trivial items would take a dozen ever larger
chunks to reach their size; weighed by items, the second reply settles it.

The same estimate sizes a chunk's progress *windows* (see :mod:`._fork_protocol`):
the child publishes how far it got once per window, so a window should carry
enough work to make that negligible, and no more, since a child that dies inside a
window has the window's items replayed one by one.
"""

from __future__ import annotations

import math

__all__ = ["ChunkSizer", "blend"]

#: Weight of the newest sample in the running estimates.
_NEW = 0.3
#: What is left of a reply's weight in the per-item estimate after each newer reply.
_KEEP = 1 - _NEW


def blend(old: float | None, sample: float) -> float:
    """A running estimate: ``old`` moved towards ``sample`` (``sample`` if nothing yet)."""
    return sample if old is None else (1 - _NEW) * old + _NEW * sample


class ChunkSizer:
    """Items per chunk: ``fixed`` if given, else about ``target`` seconds of work."""

    __slots__ = ("_busy", "_items", "fixed", "maximum", "per_item", "target")

    def __init__(self, fixed: int | None, target: float | None, maximum: int) -> None:
        self.fixed = fixed
        self.maximum = maximum
        #: Seconds of child work a chunk should carry (None: not known yet, one item).
        self.target = target
        #: Seconds of child work per item, a running estimate (None: nothing measured).
        self.per_item: float | None = None
        self._busy = 0.0  # decayed sums of recent replies' busy seconds and items
        self._items = 0.0

    def learn(self, items: int, busy: float) -> None:
        """A reply: ``items`` took ``busy`` seconds of the child's time."""
        if items > 0 and busy > 0:
            self._busy = _KEEP * self._busy + busy
            self._items = _KEEP * self._items + items
            self.per_item = self._busy / self._items

    def window(self, seconds: float, maximum: int) -> int:
        """Items per progress window: about ``seconds`` of work, 1 until measured."""
        per_item = self.per_item
        if per_item is None:
            return 1
        if per_item <= 0:
            return maximum
        return max(1, min(maximum, int(seconds / per_item)))

    def limit(self) -> int:
        if self.fixed is not None:
            return self.fixed
        per_item, target = self.per_item, self.target
        if per_item is None or target is None:
            return 1
        if per_item <= 0:
            return self.maximum
        return max(1, min(self.maximum, math.ceil(target / per_item)))
