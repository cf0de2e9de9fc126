"""Topologies through fork stages: exact outputs and conservation, as with threads."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest

import minigun as mg
from support import assert_conserved

FORKS = ["cow_fork", "ipc_fork"]


class Collect:
    """A thread-safe sink shared by the consumers of a test pipeline (in the parent)."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.lock = threading.Lock()

    def add(self, item: Any) -> None:
        with self.lock:
            self.items.append(item)


def _linear(first: str, middle: str, last: str, n: int) -> type[mg.Pipeline]:
    class Linear(mg.Pipeline):
        def __init__(self) -> None:
            self.sink = Collect()

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
            self.sink.add(x)

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
        ("thread", "ipc_fork", "thread"),
        ("thread", "cow_fork", "thread"),
        ("cow_fork", "cow_fork", "thread"),
        ("ipc_fork", "ipc_fork", "thread"),
        ("ipc_fork", "cow_fork", "thread"),
    ],
)
def test_linear_pipeline_through_fork_stages_gives_exact_outputs(
    first: str, middle: str, last: str
) -> None:
    n = 300 if "cow_fork" in (first, middle) else 3000
    pipeline = _linear(first, middle, last, n)()
    result = pipeline.run()
    assert result.status == "succeeded", result.error
    assert Counter(pipeline.sink.items) == _expected_linear(n)
    assert_conserved(result)
    stages = result.stats.stages
    assert stages["double"]["processed"] == n
    assert stages["odd_ones_out"]["dropped"] == len([i for i in range(n) if (2 * i) % 3 == 0])


@pytest.mark.parametrize("kind", FORKS)
def test_fork_consumer_at_the_end_processes_every_item(kind: str, tmp_path: Any) -> None:
    """A fork stage as the consumer: its side effects happen in the children."""
    out = tmp_path / "seen"

    class EndsInFork(mg.Pipeline):
        @mg.producer
        def numbers(self) -> Any:
            yield from range(60)

        @mg.consumer(execution=kind, processes=2)
        def save(self, x: int) -> None:
            with open(out, "a") as f:  # O_APPEND: whole short lines, any process
                f.write(f"{x}\n")

    result = EndsInFork().run()
    assert result.status == "succeeded", result.error
    assert sorted(int(line) for line in out.read_text().split()) == list(range(60))
    assert result.stats.stages["save"]["processed"] == 60
    assert result.stats.total_consumed == 60
    assert_conserved(result)


@pytest.mark.parametrize("kind", FORKS)
def test_fan_out_and_fan_in_through_fork_stages(kind: str) -> None:
    """numbers -> (left, right) in fork stages -> join (fan-in) -> save."""

    class Diamond(mg.Pipeline):
        def __init__(self) -> None:
            self.sink = Collect()

        @mg.producer(to=["left", "right"])
        def numbers(self) -> Any:
            yield from range(200)

        @mg.processor(execution=kind, processes=2, to="join")
        def left(self, x: int) -> tuple[str, int]:
            return ("L", x)

        @mg.processor(execution=kind, processes=2, to="join")
        def right(self, x: int) -> tuple[str, int]:
            return ("R", x * 10)

        @mg.processor(execution=kind, processes=1)
        def join(self, pair: tuple[str, int]) -> tuple[str, int]:
            return pair

        @mg.consumer
        def save(self, pair: tuple[str, int]) -> None:
            self.sink.add(pair)

    pipeline = Diamond()
    result = pipeline.run()
    assert result.status == "succeeded", result.error
    expected = Counter([("L", x) for x in range(200)] + [("R", 10 * x) for x in range(200)])
    assert Counter(pipeline.sink.items) == expected
    assert result.stats.stages["join"]["items_in"] == 400
    assert_conserved(result)


@pytest.mark.parametrize("kind", FORKS)
def test_routing_from_a_fork_stage_with_out_to(kind: str) -> None:
    class Router(mg.Pipeline):
        def __init__(self) -> None:
            self.evens = Collect()
            self.odds = Collect()

        @mg.producer
        def numbers(self) -> Any:
            yield from range(100)

        @mg.processor(execution=kind, processes=2)
        def split(self, x: int, out: mg.Out) -> None:
            out.to("even" if x % 2 == 0 else "odd").emit(x)

        @mg.consumer(from_="split")
        def even(self, x: int) -> None:
            self.evens.add(x)

        @mg.consumer(from_="split")
        def odd(self, x: int) -> None:
            self.odds.add(x)

    pipeline = Router()
    result = pipeline.run()
    assert result.status == "succeeded", result.error
    assert sorted(pipeline.evens.items) == list(range(0, 100, 2))
    assert sorted(pipeline.odds.items) == list(range(1, 100, 2))
    assert_conserved(result)


@pytest.mark.parametrize("kind", FORKS)
def test_cycle_through_a_fork_stage_terminates_with_every_item(kind: str) -> None:
    """A crawler-like loop: the fork stage sends n-1 back upstream until 0."""

    class Countdown(mg.Pipeline):
        def __init__(self) -> None:
            self.sink = Collect()

        @mg.producer
        def seeds(self) -> Any:
            yield from (3, 5, 8)

        @mg.processor
        def visit(self, n: int) -> int:
            return n

        @mg.processor(execution=kind, processes=2)
        def step(self, n: int, out: mg.Out) -> None:
            out.emit(n)
            if n > 0:
                out.to("visit").emit(n - 1)

        @mg.consumer
        def save(self, n: int) -> None:
            self.sink.add(n)

    pipeline = Countdown()
    result = pipeline.run()
    assert result.status == "succeeded", result.error
    expected = Counter(v for s in (3, 5, 8) for v in range(s + 1))
    assert Counter(pipeline.sink.items) == expected
    assert result.stats.stages["step"]["items_in"] == sum(expected.values())
    assert_conserved(result)


def test_ipc_fork_a_million_small_items_in_adaptive_chunks() -> None:
    """Many trivial items: chunking keeps it fast, and every item is accounted for."""

    class Many(mg.Pipeline):
        total = 0

        @mg.producer
        def numbers(self) -> Any:
            yield from range(200_000)

        @mg.processor(execution="ipc_fork", processes=2)
        def inc(self, x: int) -> int:
            return x + 1

        @mg.consumer
        def add(self, x: int) -> None:
            self.total += x

    pipeline = Many()
    result = pipeline.run()
    assert result.status == "succeeded", result.error
    assert pipeline.total == sum(range(1, 200_001))
    assert_conserved(result)


@pytest.mark.parametrize("kind", FORKS)
def test_mg_batch_after_a_fork_stage(kind: str) -> None:
    class Batched(mg.Pipeline):
        def __init__(self) -> None:
            self.sink = Collect()

        @mg.producer
        def numbers(self) -> Any:
            yield from range(23)

        @mg.processor(execution=kind, processes=2)
        def same(self, x: int) -> int:
            return x

        groups = mg.batch(5)

        @mg.consumer
        def save(self, group: list[int]) -> None:
            self.sink.add(group)

    pipeline = Batched()
    result = pipeline.run()
    assert result.status == "succeeded", result.error
    assert sorted(len(g) for g in pipeline.sink.items) == [3, 5, 5, 5, 5]
    assert sorted(x for g in pipeline.sink.items for x in g) == list(range(23))
