"""What a display needs from a run: the graph, each stage's kind, and the producers'
expected totals (``total=`` or ``len()``), from which the time left is estimated."""

from __future__ import annotations

from typing import Any

import pytest

import minigun as mg
from minigun.child.channel import expected_total, progress_summary, time_left


def _run(producer: Any, **options: Any) -> dict[str, Any]:
    class P(mg.Pipeline):
        def __init__(self) -> None:
            self.n = 7

        numbers = mg.producer(**options)(producer)

        @mg.processor
        def double(self, x: int) -> int:
            return x * 2

        @mg.consumer
        def sink(self, x: int) -> None:
            pass

    result = P().run(execution="inline")
    assert result.ok, result
    return result.to_dict()["stats"]


def _gen(self: Any) -> Any:
    yield from range(self.n)


def test_stage_reports_carry_their_kind_and_downstream_stages() -> None:
    stats = _run(_gen)
    assert {name: s["kind"] for name, s in stats["stages"].items()} == {
        "numbers": "producer",
        "double": "processor",
        "sink": "consumer",
    }
    assert {name: s["downstream"] for name, s in stats["stages"].items()} == {
        "numbers": ["double"],
        "double": ["sink"],
        "sink": [],
    }


@pytest.mark.parametrize(
    ("producer", "options", "expected"),
    [
        (_gen, {}, None),  # a generator does not know its length
        (lambda self: list(range(self.n)), {}, 7),  # a list does
        (lambda self: range(self.n), {}, 7),
        (_gen, {"total": 7}, 7),
        (_gen, {"total": lambda self: self.n}, 7),
        (_gen, {"total": lambda self: 1 / 0}, None),  # a broken hint is only ignored
    ],
)
def test_a_producer_knows_its_total_from_a_hint_or_its_length(
    producer: Any, options: dict[str, Any], expected: int | None
) -> None:
    stats = _run(producer, **options)
    assert stats["stages"]["numbers"].get("expected") == expected
    assert expected_total(stats) == expected


@pytest.mark.parametrize("bad", [-1, "7", True, 2.5])
def test_a_total_that_is_not_a_count_or_callable_is_a_definition_error(bad: Any) -> None:
    with pytest.raises(mg.PipelineDefinitionError, match="total="):
        _run(_gen, total=bad)


def test_the_progress_line_gives_the_share_done_and_the_time_left() -> None:
    snapshot = {
        "total_produced": 250,
        "total_consumed": 200,
        "throughput": 25.0,
        "duration": 10.0,
        "stages": {"numbers": {"kind": "producer", "expected": 1000}},
    }
    assert time_left(snapshot) == pytest.approx(30.0)
    line = progress_summary(snapshot)
    assert line.startswith("produced 250 of 1,000 (25%), consumed 200")
    assert line.endswith("about 30s left")
    del snapshot["stages"]["numbers"]["expected"]
    assert "left" not in progress_summary(snapshot) and " of " not in progress_summary(snapshot)
