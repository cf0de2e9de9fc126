"""``StageRuntime.apply_items``: the per-item loop that run_batch and the fork child share.

Each item here carries its own behaviour (return a value, return None, return a
generator, raise, raise from a generator half-way through...), and the outcome is
compared with a plain reference: what each item should have emitted, which items were
dropped or failed, the bounds of each item's output, and where the progress windows
began. The fast loops (return-value processors, consumers) and the general loop (other
shapes, or per-item latencies) must agree with the reference, and with each other.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minigun as mg
from minigun.core.graph import build_graph
from minigun.core.stage import StageRuntime


class Boom(Exception):
    pass


class Fatal(BaseException):
    """Outside the default ``catch``: must escape the loop."""


# A spec is (action, n): "ret" returns n, "none" returns None, "gen" returns a generator
# of n values, "raise" raises, "genraise" yields n values then raises, "fatal" raises a
# BaseException.
Spec = tuple[str, int]


def values_of(index: int, n: int) -> list[int]:
    return [index * 100 + j for j in range(n)]


def _gen(index: int, n: int, then_raise: bool) -> Iterator[int]:
    yield from values_of(index, n)
    if then_raise:
        raise Boom(index)


def behave(item: tuple[int, Spec]) -> Any:
    index, (action, n) = item
    if action == "ret":
        return index * 100 + n
    if action == "none":
        return None
    if action in ("gen", "genraise"):
        return _gen(index, n, action == "genraise")
    if action == "fatal":
        raise Fatal(index)
    raise Boom(index)


class Shapes(mg.Pipeline):
    @mg.producer
    def src(self) -> Any:
        yield from ()

    @mg.processor
    def value(self, item: tuple[int, Spec]) -> Any:
        return behave(item)

    @mg.processor
    def gen(self, item: tuple[int, Spec]) -> Iterator[Any]:
        result = behave(item)
        if result is not None:
            yield from result if not isinstance(result, int) else [result]

    @mg.processor
    def routes(self, item: tuple[int, Spec], out: Any) -> None:
        result = behave(item)
        for value in [] if result is None else [result] if isinstance(result, int) else result:
            out.emit(value)
            out.to("sink").emit(-value)

    @mg.consumer
    def sink(self, item: tuple[int, Spec]) -> None:
        result = behave(item)
        if result is not None and not isinstance(result, int):
            list(result)


GRAPH = build_graph(Shapes())


def runtime(stage: str) -> StageRuntime:
    # apply_items touches the user code only: a run that says "no timing" is enough.
    return StageRuntime(GRAPH.nodes[stage], SimpleNamespace(timing=False))  # type: ignore[arg-type]


def reference(stage: str, items: list[tuple[int, Spec]]) -> dict[str, Any]:
    """What each item should emit, and what becomes of it, item by item."""
    outs: list[Any] = []
    routed: list[tuple[str, Any]] = []
    ends: list[int] = []
    routed_ends: list[int] = []
    dropped, failed = 0, []
    for index, (action, n) in items:
        mine: list[int] = []
        if action in ("raise", "genraise"):
            failed.append(index)  # and whatever it emitted first is withdrawn
        elif action == "none":
            dropped += stage == "value"  # only a return-value processor drops
        elif action == "ret":
            mine = [index * 100 + n]
        else:
            mine = values_of(index, n)
        if stage != "sink":
            outs.extend(mine)
        if stage == "routes":
            routed.extend(("sink", -v) for v in mine)
        ends.append(len(outs))
        routed_ends.append(len(routed))
    return {
        "outs": outs,
        "routed": routed,
        "dropped": dropped,
        "failed": failed,
        "ends": ends,
        "routed_ends": routed_ends,
    }


SPECS = st.one_of(
    st.tuples(st.sampled_from(["ret", "none", "raise"]), st.integers(0, 9)),
    st.tuples(st.sampled_from(["gen", "genraise"]), st.integers(0, 3)),
)


@settings(max_examples=300, deadline=None)
@given(
    specs=st.lists(SPECS, max_size=40),
    stage=st.sampled_from(["value", "gen", "routes", "sink"]),
    window=st.integers(0, 45),
    timed=st.booleans(),
    preset=st.integers(0, 3),
)
def test_apply_items_matches_the_item_by_item_reference(
    specs: list[Spec], stage: str, window: int, timed: bool, preset: int
) -> None:
    items = list(enumerate(specs))
    rt = runtime(stage)
    # Lists that already hold something: bounds are positions in them, not counts.
    outs: list[Any] = ["earlier"] * preset
    routed: list[tuple[str, Any]] = [("x", "earlier")] * preset
    errors: list[tuple[int, Any, BaseException]] = []
    marks: list[int] = []
    latencies: list[float] | None = [] if timed else None
    applied = rt.apply_items(
        items,
        outs,
        routed,
        lambda i, item, exc: errors.append((i, item, exc)),
        latencies=latencies,
        window=window,
        mark=marks.append,
        bounds=True,
    )
    want = reference(stage, items)
    assert outs[preset:] == want["outs"]
    assert routed[preset:] == want["routed"]
    assert [i for i, _, _ in errors] == want["failed"]
    assert all(item == items[i] for i, item, _ in errors)
    assert all(isinstance(exc, Boom) and exc.args == (i,) for i, _, exc in errors)
    assert applied.failed == len(want["failed"])
    assert applied.dropped == want["dropped"]
    assert applied.processed == len(items) - applied.dropped - applied.failed
    ends, routed_ends = applied.bounds()
    assert ends == [preset + e for e in want["ends"]]
    assert routed_ends == [preset + e for e in want["routed_ends"]]
    step = window if 0 < window < len(items) else max(1, len(items))
    assert marks == list(range(0, len(items), step))
    if latencies is not None:
        assert len(latencies) == len(items) and all(t >= 0 for t in latencies)


@pytest.mark.parametrize("stage", ["value", "gen", "routes", "sink"])
@pytest.mark.parametrize("window", [0, 1, 3])
def test_an_exception_outside_catch_escapes_after_the_items_before_it(
    stage: str, window: int
) -> None:
    items = [(0, ("ret", 1)), (1, ("raise", 0)), (2, ("fatal", 0)), (3, ("ret", 1))]
    errors: list[int] = []
    outs: list[Any] = []
    with pytest.raises(Fatal):
        runtime(stage).apply_items(
            items, outs, [], lambda i, item, exc: errors.append(i), window=window, mark=[].append
        )
    assert errors == [1]
    assert outs == ([] if stage == "sink" else [1])


def test_catch_widens_what_counts_as_an_item_failure() -> None:
    """The fork child passes BaseException: a SystemExit in user code fails one item."""
    items = [(0, ("fatal", 0)), (1, ("ret", 5))]
    errors: list[int] = []
    outs: list[Any] = []
    applied = runtime("value").apply_items(
        items, outs, [], lambda i, item, exc: errors.append(i), catch=BaseException
    )
    assert errors == [0] and outs == [105] and applied.failed == 1


def test_bounds_must_be_asked_for() -> None:
    applied = runtime("value").apply_items([(0, ("ret", 1))], [], [], lambda i, item, exc: None)
    with pytest.raises(RuntimeError, match="bounds=True"):
        applied.bounds()
