"""The run timeline: bounded, evenly spread, the last attempt's, and what the charts read."""

from __future__ import annotations

from typing import Any

import pytest

from minigun.report.timeline import Timeline, peak_fills, stage_fills, stage_rates
from pipelines.observed import Shop


def snap(t: float, produced: int, queued: int = 0) -> dict[str, Any]:
    return {
        "duration": t,
        "total_produced": produced,
        "total_consumed": produced,
        "stages": {
            "src": {"items_in": 0, "items_out": produced},
            "work": {
                "items_in": produced,
                "items_out": produced,
                "queued": queued,
                "queue_capacity": 10,
            },
        },
    }


def test_samples_are_spaced_and_the_newest_is_kept() -> None:
    timeline = Timeline(interval=1.0)
    for i in range(11):
        timeline.add(snap(i * 0.25, i))
    data = timeline.to_dict()
    assert data is not None
    assert data["t"] == [0.0, 1.0, 2.0, 2.5]  # one a second, plus the last seen
    assert data["total_produced"] == [0, 4, 8, 10]
    assert data["stages"]["work"]["items_in"] == [0, 4, 8, 10]
    assert data["stages"]["src"]["queued"] == [None] * 4  # a producer has no queue
    assert data["queue_capacity"] == {"work": 10}


def test_a_long_run_stays_bounded_and_spread_over_the_whole_run() -> None:
    timeline = Timeline(max_points=20, interval=0.1)
    for i in range(10_000):
        timeline.add(snap(i * 0.1, i))
    data = timeline.to_dict()
    assert data is not None
    assert len(data["t"]) <= 21
    assert data["t"][0] == 0.0 and data["t"][-1] == pytest.approx(999.9)
    gaps = [b - a for a, b in zip(data["t"], data["t"][1:-1])]
    assert max(gaps) <= 2 * min(gaps)


def test_a_new_attempt_starts_the_timeline_again() -> None:
    timeline = Timeline(interval=0.0)
    for i in range(5):
        timeline.add(snap(i, 100 + i))
    timeline.add(snap(0.5, 1))  # the runner's second attempt: its clock starts again
    timeline.add(snap(1.5, 2))
    data = timeline.to_dict()
    assert data is not None and data["t"] == [0.5, 1.5]


def test_nothing_seen_is_no_timeline() -> None:
    timeline = Timeline()
    timeline.add({"stages": {}})  # no clock: not a snapshot
    assert timeline.to_dict() is None
    assert stage_rates(None) == ([], {}) and stage_fills({"t": "x"}) == ([], {})


def test_rates_fills_and_peaks_start_from_the_run_start() -> None:
    timeline = Timeline(interval=0.0)
    timeline.add(snap(1.0, 100, queued=5))
    timeline.add(snap(3.0, 300, queued=12))
    data = timeline.to_dict()
    times, rates = stage_rates(data)
    assert times == [1.0, 3.0]
    assert rates == {"src": [100.0, 100.0], "work": [100.0, 100.0]}
    times, fills = stage_fills(data)
    assert times == [0.0, 1.0, 3.0] and fills == {"work": [0, 0.5, 1.2]}
    assert peak_fills(data) == {"work": (12, 10)}


def test_a_real_runs_snapshots() -> None:
    timeline = Timeline(interval=0.0)
    handle = Shop(n=2000).run(background=True)
    while handle.wait(timeout=0.02) is None:
        timeline.add(handle.snapshot())
    timeline.add(handle.snapshot())
    data = timeline.to_dict()
    assert data is not None
    assert list(data["stages"]) == ["orders", "price", "rows", "save"]
    assert data["total_produced"][-1] == 2000
    assert data["queue_capacity"] == {"price": 64, "rows": 64, "save": 64}
    produced = data["total_produced"]
    assert produced == sorted(produced)  # counts only grow within a run
