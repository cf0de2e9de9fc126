"""Topologies with dask stages: exact outputs and conservation, as with threads and forks.

The pipelines keep their sinks in plain lists (``list.append`` is atomic): a dask
stage ships the pipeline instance to the workers, so it must pickle, and a lock does
not. The consumers that fill them run in this process.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("distributed")

import minigun as mg
from on_dask.conftest import DaskCluster, stage_stats
from support import assert_conserved


def _linear(first: str, middle: str, last: str, n: int) -> type[mg.Pipeline]:
    class Linear(mg.Pipeline):
        def __init__(self) -> None:
            self.sink: list[int] = []

        @mg.producer
        def numbers(self) -> Any:
            yield from range(n)

        @mg.processor(execution=first, threads=3, processes=2)
        def double(self, x: int) -> int:
            return 2 * x

        @mg.processor(execution=middle, threads=3, processes=2)
        def odd_ones_out(self, x: int) -> Any:
            if x % 3 == 0:
                return None  # dropped
            if x % 5 == 0:
                return (y for y in (x, -x))  # two outputs
            return x + 1

        @mg.consumer(execution=last, threads=2, processes=2)
        def save(self, x: int) -> None:
            self.sink.append(x)

    return Linear


def _expected_linear(n: int) -> Counter[int]:
    out: Counter[int] = Counter()
    for x in (2 * i for i in range(n)):
        if x % 3 == 0:
            continue
        if x % 5 == 0:
            out.update((x, -x))
        else:
            out[x + 1] += 1
    return out


@pytest.mark.parametrize(
    ("first", "middle", "last"),
    [
        ("thread", "dask", "thread"),
        ("ipc_fork", "dask", "inline"),
        ("dask", "dask", "thread"),
        ("dask", "cow_fork", "thread"),
    ],
)
def test_linear_pipeline_with_a_dask_stage_gives_exact_outputs(
    cluster: DaskCluster, first: str, middle: str, last: str
) -> None:
    n = 300 if "cow_fork" in (first, middle) else 3000
    pipeline = _linear(first, middle, last, n)()
    result = pipeline.run(dask_address=cluster.address)
    assert result.status == "succeeded", result.error
    assert Counter(pipeline.sink) == _expected_linear(n)
    assert_conserved(result)
    stages = result.stats.stages
    assert stages["double"]["processed"] == n
    assert stages["odd_ones_out"]["dropped"] == len([i for i in range(n) if (2 * i) % 3 == 0])
    for name in ("double", "odd_ones_out"):
        if stages[name]["executor"] == "dask":
            assert stages[name]["cluster"]["address"] == cluster.address
            assert stages[name]["cluster"]["workers"] == 2
            assert stages[name]["cluster"]["started_by_minigun"] is False


def test_a_dask_consumer_at_the_end_processes_every_item(
    cluster: DaskCluster, tmp_path: Path
) -> None:
    """A consumer on the cluster: its side effects happen in the worker processes."""
    out = tmp_path / "seen"

    class EndsOnDask(mg.Pipeline):
        @mg.producer
        def numbers(self) -> Any:
            yield from range(500)

        @mg.consumer(execution="dask")
        def save(self, x: int) -> None:
            with open(out, "a") as f:  # O_APPEND: whole short lines, any process
                f.write(f"{x}\n")

    result = EndsOnDask().run(dask_address=cluster.address)
    assert result.status == "succeeded", result.error
    assert sorted(int(line) for line in out.read_text().split()) == list(range(500))
    assert result.stats.stages["save"]["processed"] == 500
    assert result.stats.total_consumed == 500
    assert_conserved(result)


def test_fan_out_and_fan_in_through_dask_stages(cluster: DaskCluster) -> None:
    """numbers -> (left, right) on dask -> join on dask (fan-in) -> save."""

    class Diamond(mg.Pipeline):
        def __init__(self) -> None:
            self.sink: list[tuple[str, int]] = []

        @mg.producer(to=["left", "right"])
        def numbers(self) -> Any:
            yield from range(400)

        @mg.processor(execution="dask", to="join")
        def left(self, x: int) -> tuple[str, int]:
            return ("L", x)

        @mg.processor(execution="dask", to="join")
        def right(self, x: int) -> tuple[str, int]:
            return ("R", x * 10)

        @mg.processor(execution="dask")
        def join(self, pair: tuple[str, int]) -> tuple[str, int]:
            return pair

        @mg.consumer
        def save(self, pair: tuple[str, int]) -> None:
            self.sink.append(pair)

    pipeline = Diamond()
    result = pipeline.run(dask_address=cluster.address)
    assert result.status == "succeeded", result.error
    expected = Counter([("L", x) for x in range(400)] + [("R", 10 * x) for x in range(400)])
    assert Counter(pipeline.sink) == expected
    assert result.stats.stages["join"]["items_in"] == 800
    assert_conserved(result)


def test_routing_from_a_dask_stage_with_out_to(cluster: DaskCluster) -> None:
    class Router(mg.Pipeline):
        def __init__(self) -> None:
            self.evens: list[int] = []
            self.odds: list[int] = []

        @mg.producer
        def numbers(self) -> Any:
            yield from range(300)

        @mg.processor(execution="dask")
        def split(self, x: int, out: mg.Out) -> None:
            out.to("even" if x % 2 == 0 else "odd").emit(x)

        @mg.consumer(from_="split")
        def even(self, x: int) -> None:
            self.evens.append(x)

        @mg.consumer(from_="split")
        def odd(self, x: int) -> None:
            self.odds.append(x)

    pipeline = Router()
    result = pipeline.run(dask_address=cluster.address)
    assert result.status == "succeeded", result.error
    assert sorted(pipeline.evens) == list(range(0, 300, 2))
    assert sorted(pipeline.odds) == list(range(1, 300, 2))
    assert_conserved(result)


def test_a_cycle_through_a_dask_stage_terminates_with_every_item(cluster: DaskCluster) -> None:
    """A crawler-like loop: the dask stage sends n-1 back upstream until 0."""

    class Countdown(mg.Pipeline):
        def __init__(self) -> None:
            self.sink: list[int] = []

        @mg.producer
        def seeds(self) -> Any:
            yield from (3, 5, 8, 13)

        @mg.processor
        def visit(self, n: int) -> int:
            return n

        @mg.processor(execution="dask")
        def step(self, n: int, out: mg.Out) -> None:
            out.emit(n)
            if n > 0:
                out.to("visit").emit(n - 1)

        @mg.consumer
        def save(self, n: int) -> None:
            self.sink.append(n)

    pipeline = Countdown()
    result = pipeline.run(dask_address=cluster.address)
    assert result.status == "succeeded", result.error
    expected = Counter(v for s in (3, 5, 8, 13) for v in range(s + 1))
    assert Counter(pipeline.sink) == expected
    assert result.stats.stages["step"]["items_in"] == sum(expected.values())
    assert_conserved(result)


def test_mg_batch_after_a_dask_stage(cluster: DaskCluster) -> None:
    class Batched(mg.Pipeline):
        def __init__(self) -> None:
            self.sink: list[list[int]] = []

        @mg.producer
        def numbers(self) -> Any:
            yield from range(23)

        @mg.processor(execution="dask")
        def same(self, x: int) -> int:
            return x

        groups = mg.batch(5)

        @mg.consumer
        def save(self, group: list[int]) -> None:
            self.sink.append(group)

    pipeline = Batched()
    result = pipeline.run(dask_address=cluster.address)
    assert result.status == "succeeded", result.error
    assert sorted(len(g) for g in pipeline.sink) == [3, 5, 5, 5, 5]
    assert sorted(x for g in pipeline.sink for x in g) == list(range(23))


class Scorer(mg.Pipeline):
    """Meant for nesting: two dask stages, on one cluster (one shipment per worker)."""

    def __init__(self, factor: int = 3) -> None:
        self.factor = factor

    @mg.processor(execution="dask")
    def scale(self, x: int) -> int:
        return x * self.factor

    @mg.processor(execution="dask")
    def tag(self, x: int) -> tuple[str, int]:
        return ("scored", x)


class Outer(mg.Pipeline):
    def __init__(self) -> None:
        self.sink: list[tuple[str, int]] = []

    @mg.producer
    def numbers(self) -> Any:
        yield from range(1000)

    score = mg.nested(Scorer, factor=7)

    @mg.consumer
    def save(self, pair: tuple[str, int]) -> None:
        self.sink.append(pair)


def test_the_dask_stages_of_a_nested_pipeline(cluster: DaskCluster) -> None:
    pipeline = Outer()
    result = pipeline.run(dask_address=cluster.address)
    assert result.status == "succeeded", result.error
    assert Counter(pipeline.sink) == Counter(("scored", 7 * x) for x in range(1000))
    assert stage_stats(result, "score.scale")["executor"] == "dask"
    assert stage_stats(result, "score.tag")["processed"] == 1000
    assert_conserved(result)


def test_replay_feeds_dead_letters_back_into_a_dask_stage(
    cluster: DaskCluster, tmp_path: Path
) -> None:
    class Flaky(mg.Pipeline):
        fail = True

        def __init__(self) -> None:
            self.sink: list[int] = []

        @mg.producer
        def numbers(self) -> Any:
            yield from range(50)

        @mg.processor(execution="dask", on_error="dead_letter")
        def check(self, x: int) -> int:
            if self.fail and x % 10 == 0:
                raise ValueError(f"bad {x}")
            return x

        @mg.consumer
        def save(self, x: int) -> None:
            self.sink.append(x)

    first = Flaky().run(dask_address=cluster.address, dead_letter_dir=str(tmp_path))
    assert first.status == "succeeded" and len(first.dead_letters) == 5
    assert first.dead_letter_file is not None
    again = Flaky()
    again.fail = False  # fixed: the items go through (the instance travels with it)
    result = again.replay(first.dead_letter_file, dask_address=cluster.address)
    assert result.status == "succeeded", result.error
    assert sorted(again.sink) == [0, 10, 20, 30, 40]
