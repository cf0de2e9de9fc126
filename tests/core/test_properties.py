"""Property: over random chains of stage kinds, policies and executor mixes, the
outputs match a plain-Python reference and every stage's stats add up."""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import minigun as mg
from support import assert_conserved

KINDS = ["double", "drop_odd", "split", "fail_skip", "fail_dead_letter", "route_out"]


def reference(kind: str, x: int) -> list[int]:
    if kind == "double":
        return [x * 2]
    if kind == "drop_odd":
        return [] if x % 2 else [x]
    if kind == "split":
        return [x, x + 1]
    if kind in ("fail_skip", "fail_dead_letter"):
        return [] if x % 7 == 0 else [x]
    if kind == "route_out":
        return [x + 3]
    raise AssertionError(kind)


def make_stage(kind: str, execution: str, threads: int) -> Any:
    opts: dict[str, Any] = {"execution": execution, "threads": threads}
    if kind == "double":
        return mg.processor(lambda self, x: x * 2, **opts)
    if kind == "drop_odd":
        return mg.processor(lambda self, x: None if x % 2 else x, **opts)
    if kind == "split":

        def split(self, x):
            yield x
            yield x + 1

        return mg.processor(split, **opts)
    if kind in ("fail_skip", "fail_dead_letter"):

        def fail(self, x):
            if x % 7 == 0:
                raise ValueError(x)
            return x

        policy = "skip" if kind == "fail_skip" else "dead_letter"
        return mg.processor(fail, on_error=policy, **opts)
    if kind == "route_out":

        def route(self, x, out):
            out.emit(x + 3)

        return mg.processor(route, **opts)
    raise AssertionError(kind)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(min_value=0, max_value=300),
    stages=st.lists(
        st.tuples(st.sampled_from(KINDS), st.sampled_from(["inline", "thread"]), st.integers(1, 3)),
        min_size=1,
        max_size=5,
    ),
    queue_size=st.integers(1, 50),
)
def test_conservation_and_outputs_over_random_chains(
    n: int, stages: list[tuple[str, str, int]], queue_size: int
) -> None:
    body: dict[str, Any] = {}
    seen: list[int] = []

    def src(self):
        yield from range(n)

    body["src"] = mg.producer(src)
    for i, (kind, execution, threads) in enumerate(stages):
        body[f"s{i}_{kind}"] = make_stage(kind, execution, threads)
    body["sink"] = mg.consumer(lambda self, x: seen.append(x))
    pipeline = type("Random", (mg.Pipeline,), body)()

    expected = list(range(n))
    for kind, _, _ in stages:
        expected = [y for x in expected for y in reference(kind, x)]

    result = pipeline.run(queue_size=queue_size)
    assert result.status == "succeeded"
    assert Counter(seen) == Counter(expected)
    assert result.stats.total_consumed == len(expected)
    assert_conserved(result)
