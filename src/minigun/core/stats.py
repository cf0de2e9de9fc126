"""Run statistics: per-stage counters, busy time and latency percentiles.

Cost matters more than precision here: stats are always on, and the engine hands
items between stages in micro-batches. Counters are updated once per batch. Latency
is the time a stage spends on an item (service time, not queue wait): for fast
stages it is sampled as the batch's mean per item; for stages slower than
``PER_ITEM_THRESHOLD`` per item every item is timed on its own. Percentiles come
from a log-scale histogram (about 9% bucket width), so memory stays constant
however many items pass.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["LatencyHistogram", "RunStats", "StageReport", "StageStats"]

#: Above this mean service time per item (seconds), items are timed one by one.
PER_ITEM_THRESHOLD = 20e-6

_BUCKETS_PER_OCTAVE = 8
_MIN_LOG = -30 * _BUCKETS_PER_OCTAVE  # about 1 ns
_N_BUCKETS = 40 * _BUCKETS_PER_OCTAVE  # up to about 1000 s


class LatencyHistogram:
    """A fixed-size histogram of durations with log2-spaced buckets."""

    __slots__ = ("count", "counts")

    def __init__(self) -> None:
        self.counts = [0] * _N_BUCKETS
        self.count = 0

    def add(self, seconds: float, weight: int = 1) -> None:
        if seconds <= 0:
            index = 0
        else:
            index = int(math.log2(seconds) * _BUCKETS_PER_OCTAVE) - _MIN_LOG
            index = 0 if index < 0 else (_N_BUCKETS - 1 if index >= _N_BUCKETS else index)
        self.counts[index] += weight
        self.count += weight

    def percentile(self, q: float) -> float:
        """The duration below which a fraction ``q`` of the samples fall (bucket midpoint)."""
        if not self.count:
            return 0.0
        rank = q * self.count
        seen = 0
        for index, n in enumerate(self.counts):
            seen += n
            if n and seen >= rank:
                return float(2 ** ((index + _MIN_LOG + 0.5) / _BUCKETS_PER_OCTAVE))
        return 0.0


class StageReport(dict[str, Any]):
    """One stage's figures: a dict (for JSON) whose keys also read as attributes."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class StageStats:
    """Counters of one stage. Every received item ends as exactly one of
    processed, dropped, skipped, dead-lettered or failed (conservation).

    No lock of its own: whoever owns the stage (its runtime, the run) updates the
    counters under that owner's lock."""

    __slots__ = (
        "batched_items",
        "busy_seconds",
        "cluster",
        "dead_letters",
        "dropped",
        "errors",
        "execution",
        "failed",
        "items_in",
        "items_out",
        "latency",
        "name",
        "processed",
        "retries",
        "skipped",
        "workers",
    )

    def __init__(self, name: str, workers: int = 1, execution: str = "thread") -> None:
        self.name = name
        self.workers = workers
        self.execution = execution
        self.items_in = 0
        self.items_out = 0
        self.processed = 0
        self.dropped = 0
        self.skipped = 0
        self.errors = 0
        self.failed = 0
        self.dead_letters = 0
        self.retries = 0
        self.busy_seconds = 0.0
        self.latency = LatencyHistogram()
        #: Where a stage that runs on a cluster (dask) ran: address, workers, threads.
        self.cluster: dict[str, Any] | None = None
        #: For a stage fed only by ``mg.batch`` stages: the items inside the batches it
        #: processed (its other counters count batches). None for every other stage.
        self.batched_items: int | None = None

    def to_dict(
        self,
        duration: float,
        queued: int | None = None,
        *,
        kind: str | None = None,
        capacity: int | None = None,
    ) -> StageReport:
        """The stage's figures for the result JSON and live snapshots.

        ``kind`` (producer, processor, consumer, batch, custom) and the inbox's
        ``capacity`` come from the run, which owns the graph and the inboxes; with
        ``queued`` they let a reader (``minigun report``, the metrics) tell what a stage
        is and how full its queue was without the pipeline's code.
        """
        duration = max(duration, 1e-9)
        data = StageReport({} if kind is None else {"kind": kind})
        data.update(
            {
                "executor": self.execution,
                "workers": self.workers,
                "items_in": self.items_in,
                "items_out": self.items_out,
                "processed": self.processed,
                "dropped": self.dropped,
                "skipped": self.skipped,
                "errors": self.errors,
                "failed": self.failed,
                "dead_letters": self.dead_letters,
                "retries": self.retries,
                "busy_seconds": round(self.busy_seconds, 6),
                "latency_p50": self.latency.percentile(0.50),
                "latency_p95": self.latency.percentile(0.95),
                "latency_p99": self.latency.percentile(0.99),
                # a producer receives nothing: its rate is what it emits
                "throughput": (self.items_in or self.items_out) / duration,
                "utilisation": min(1.0, self.busy_seconds / (max(self.workers, 1) * duration)),
            }
        )
        if queued is not None:
            data["queued"] = queued
        if capacity is not None:
            data["queue_capacity"] = capacity
        if self.cluster is not None:
            data["cluster"] = dict(self.cluster)
        if self.batched_items is not None:
            data["batched_items"] = self.batched_items
        return data


class RunStats:
    """The ``stats`` object of a result: per-stage dicts plus run totals.

    ``total_produced`` counts items emitted by producers; ``total_consumed`` counts
    items processed by stages with no outgoing edge (summed over those stages), the
    items inside the batches for a final stage fed by ``mg.batch`` (its
    ``batched_items``: a loader of 21 batches of 200 rows consumed 4,200 items);
    ``throughput`` is ``total_produced / duration``; ``bottleneck`` is the stage with
    the highest utilisation; ``discarded`` counts items sent back up a cycle after
    the run began stopping (they are never received, so no stage counts them).
    """

    def __init__(
        self,
        stages: dict[str, StageReport],
        total_produced: int,
        total_consumed: int,
        duration: float,
        discarded: int = 0,
    ) -> None:
        self.stages = stages
        self.discarded = discarded
        self.total_produced = total_produced
        self.total_consumed = total_consumed
        self.duration = duration
        self.throughput = total_produced / duration if duration > 0 else 0.0
        busiest = max(stages.items(), key=lambda kv: kv[1]["utilisation"], default=None)
        self.bottleneck = busiest[0] if busiest and busiest[1]["utilisation"] > 0 else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "total_produced": self.total_produced,
            "total_consumed": self.total_consumed,
            "duration": self.duration,
            "throughput": self.throughput,
            "bottleneck": self.bottleneck,
            "discarded": self.discarded,
            "stages": self.stages,
        }

    def __repr__(self) -> str:
        return (
            f"RunStats(produced={self.total_produced}, consumed={self.total_consumed}, "
            f"duration={self.duration:.3f}s, throughput={self.throughput:.0f}/s, "
            f"bottleneck={self.bottleneck!r})"
        )
