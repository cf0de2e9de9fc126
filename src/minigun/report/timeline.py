"""A run's progress over time, sampled from live snapshots for the result file.

The result JSON holds a run's totals; how it got there -- a queue filling up, a
stage's rate falling off -- is only seen in the progress snapshots the CLI receives
while it runs (a few a second). :class:`Timeline` keeps a bounded number of them,
evenly spread over the run, in a compact columnar form that ``minigun run`` stores
under ``"timeline"`` in ``--result-file`` and ``minigun report --format html`` charts.

Bounded, because a run may last hours: at most ``max_points`` samples (120 by default,
about 30 kB for ten stages); when full, every other sample is dropped and the spacing
doubles. Snapshots from a new runner attempt (the run's clock goes back) start the
timeline again, since the result is the last attempt's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeGuard

__all__ = ["STAGE_SERIES", "Timeline"]

#: Per-stage figures kept at each sample.
STAGE_SERIES = ("items_in", "items_out", "queued")

_RUN_SERIES = ("total_produced", "total_consumed")


class Timeline:
    """Samples of a run's snapshots (``handle.snapshot()`` / progress records)."""

    def __init__(self, max_points: int = 120, interval: float = 0.25) -> None:
        if max_points < 4:
            raise ValueError("a timeline needs at least 4 points")
        self.max_points = max_points
        self.start_interval = interval
        self._reset()

    def _reset(self) -> None:
        self.interval = self.start_interval
        self._samples: list[tuple[float, Mapping[str, Any]]] = []
        self._pending: tuple[float, Mapping[str, Any]] | None = None

    def add(self, snapshot: Mapping[str, Any]) -> None:
        """Consider one snapshot; cheap enough to call with every one of them."""
        t = snapshot.get("duration")
        if not isinstance(t, (int, float)) or isinstance(t, bool):
            return
        t = float(t)
        last = self._pending or (self._samples[-1] if self._samples else None)
        if last is not None and t < last[0]:
            self._reset()  # a new attempt: its clock starts again
        if self._samples and t - self._samples[-1][0] < self.interval:
            self._pending = (t, snapshot)  # kept only if nothing newer comes
            return
        self._pending = None
        self._samples.append((t, snapshot))
        if len(self._samples) > self.max_points:
            # every other sample, always keeping the first
            self._samples = self._samples[::2]
            self.interval *= 2

    def __len__(self) -> int:
        return len(self._samples) + (self._pending is not None)

    def to_dict(self) -> dict[str, Any] | None:
        """The columnar JSON form, or None when no snapshot was seen.

        ``{"t": [s, ...], "total_produced": [...], "total_consumed": [...],
        "stages": {name: {"items_in": [...], "items_out": [...], "queued": [...]}},
        "queue_capacity": {name: n}}`` -- lists aligned with ``t``; ``None`` where a
        stage had no such figure in a sample.
        """
        samples = list(self._samples)
        if self._pending is not None:
            samples.append(self._pending)
        if not samples:
            return None
        names: list[str] = []
        for _, snapshot in samples:
            for name in snapshot.get("stages") or {}:
                if name not in names:
                    names.append(name)
        data: dict[str, Any] = {"t": [round(t, 3) for t, _ in samples]}
        for key in _RUN_SERIES:
            data[key] = [_number(snapshot.get(key)) for _, snapshot in samples]
        stages: dict[str, dict[str, list[Any]]] = {}
        capacity: dict[str, int] = {}
        for name in names:
            series: dict[str, list[Any]] = {key: [] for key in STAGE_SERIES}
            for _, snapshot in samples:
                stage = (snapshot.get("stages") or {}).get(name)
                stage = stage if isinstance(stage, Mapping) else {}
                for key in STAGE_SERIES:
                    series[key].append(_number(stage.get(key)))
                if isinstance(stage.get("queue_capacity"), int):
                    capacity[name] = stage["queue_capacity"]
            stages[name] = series
        data["stages"] = stages
        data["queue_capacity"] = capacity
        return data


def _number(value: Any) -> int | float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value


def _series(timeline: Any) -> tuple[list[float], Mapping[str, Any]] | None:
    """The times and the per-stage series of a timeline read from a file (checked)."""
    if not isinstance(timeline, Mapping):
        return None
    times, stages = timeline.get("t"), timeline.get("stages")
    if not isinstance(times, list) or not isinstance(stages, Mapping) or not times:
        return None
    if not all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in times):
        return None
    return [float(t) for t in times], stages


def _from_zero(times: list[float], values: list[Any]) -> tuple[list[float], list[Any]]:
    """The series with the run's start (t = 0, nothing counted, queues empty) in front:
    known without a sample, and it lets a short run with one sample draw a line."""
    if times[0] > 0:
        return [0.0, *times], [0, *values]
    return times, values


def stage_rates(timeline: Any) -> tuple[list[float], dict[str, list[float]]]:
    """Items per second of each stage between samples: ``(times, {stage: rates})``.

    A stage's rate is what it received (``items_in``); a producer, which receives
    nothing, is measured by what it emitted. ``times`` are the ends of the intervals.
    """
    parsed = _series(timeline)
    if parsed is None:
        return [], {}
    times, stages = parsed
    rates: dict[str, list[float]] = {}
    for name, series in stages.items():
        if not isinstance(series, Mapping):
            continue
        counts = series.get("items_in")
        if not _counts(counts) or not any(counts):
            counts = series.get("items_out")
        if not _counts(counts) or len(counts) != len(times):
            continue
        at, counts = _from_zero(times, counts)
        values = []
        for i in range(1, len(at)):
            span = at[i] - at[i - 1]
            moved = (counts[i] or 0) - (counts[i - 1] or 0)
            values.append(max(0.0, moved / span) if span > 0 else 0.0)
        rates[name] = values
    return (_from_zero(times, times)[0][1:] if rates else []), rates


def stage_fills(timeline: Any) -> tuple[list[float], dict[str, list[float | None]]]:
    """Each queue's fill (queued / capacity) at every sample; stages without a queue or
    a known capacity are left out. A fill may pass 1: a producer's chunk is admitted
    whole once the queue is below capacity."""
    parsed = _series(timeline)
    if parsed is None or not isinstance(timeline.get("queue_capacity"), Mapping):
        return [], {}
    times, stages = parsed
    fills: dict[str, list[float | None]] = {}
    for name, capacity in timeline["queue_capacity"].items():
        series = stages.get(name)
        queued = series.get("queued") if isinstance(series, Mapping) else None
        if not isinstance(capacity, int) or capacity <= 0 or not _counts(queued):
            continue
        if len(queued) != len(times):
            continue
        fills[name] = _from_zero(times, [None if q is None else q / capacity for q in queued])[1]
    return (_from_zero(times, times)[0] if fills else []), fills


def peak_fills(timeline: Any) -> dict[str, tuple[int, int]]:
    """Per stage, the most items seen waiting in its queue and the queue's capacity."""
    if not isinstance(timeline, Mapping):
        return {}
    stages, capacities = timeline.get("stages"), timeline.get("queue_capacity")
    if not isinstance(stages, Mapping) or not isinstance(capacities, Mapping):
        return {}
    peaks: dict[str, tuple[int, int]] = {}
    for name, capacity in capacities.items():
        series = stages.get(name)
        queued = series.get("queued") if isinstance(series, Mapping) else None
        if isinstance(capacity, int) and _counts(queued):
            peaks[name] = (int(max((q or 0 for q in queued), default=0)), capacity)
    return peaks


def _counts(values: Any) -> TypeGuard[list[Any]]:
    return isinstance(values, list) and all(
        v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in values
    )
