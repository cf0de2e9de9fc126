"""Every topology of DESIGN 3.2 under both inline and thread execution: exact outputs
and stats that add up."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

import minigun as mg
from support import assert_conserved, multiset, wait_until

EXECUTIONS = ["inline", "thread"]


@pytest.fixture(params=EXECUTIONS)
def execution(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Sequential(mg.Pipeline):
    def __init__(self, n: int = 100) -> None:
        self.n = n
        self.seen: list[int] = []

    @mg.producer
    def numbers(self):
        yield from range(self.n)

    @mg.processor
    def double(self, x):
        return x * 2

    @mg.consumer
    def collect(self, x):
        self.seen.append(x)


def test_sequential_stages_connect_in_definition_order(execution: str) -> None:
    p = Sequential(1000)
    result = p.run(execution=execution)
    assert result.status == "succeeded" and result.ok and result.exit_code == mg.ExitCode.OK
    assert multiset(p.seen) == multiset(x * 2 for x in range(1000))
    assert result.stats.total_produced == 1000
    assert result.stats.total_consumed == 1000
    assert result.stats.stages["double"].items_in == 1000
    assert result.stats.stages["double"]["items_out"] == 1000
    assert_conserved(result)


def test_inline_keeps_arrival_order() -> None:
    p = Sequential(500)
    p.run(execution="inline")
    assert p.seen == [x * 2 for x in range(500)]


class Shapes(mg.Pipeline):
    """out-producer, None-dropping processor, generator processor, out-processor."""

    def __init__(self) -> None:
        self.seen: list[Any] = []

    @mg.producer
    def emit_numbers(self, out):
        for i in range(50):
            out.emit(i)

    @mg.processor
    def evens_only(self, x):
        return x if x % 2 == 0 else None

    @mg.processor
    def twice(self, x):
        yield x
        yield x + 1000

    @mg.processor
    def tag(self, x, out):
        out.emit(("t", x))

    @mg.consumer
    def collect(self, x):
        self.seen.append(x)


def test_every_stage_shape(execution: str) -> None:
    p = Shapes()
    result = p.run(execution=execution)
    evens = [x for x in range(50) if x % 2 == 0]
    expected = [("t", x) for x in evens] + [("t", x + 1000) for x in evens]
    assert multiset(p.seen) == multiset(expected)
    stages = result.stats.stages
    assert stages["evens_only"].dropped == 25
    assert stages["twice"].items_out == 50
    assert result.stats.total_consumed == 50
    assert_conserved(result)


class FanOut(mg.Pipeline):
    def __init__(self) -> None:
        self.a: list[int] = []
        self.b: list[int] = []

    @mg.producer(to=["left", "right"])
    def numbers(self):
        yield from range(200)

    @mg.consumer
    def left(self, x):
        self.a.append(x)

    @mg.consumer
    def right(self, x):
        self.b.append(x)


def test_fan_out_sends_every_item_to_every_downstream(execution: str) -> None:
    p = FanOut()
    result = p.run(execution=execution)
    assert sorted(p.a) == list(range(200)) and sorted(p.b) == list(range(200))
    assert result.stats.total_consumed == 400
    assert_conserved(result)


class Diamond(mg.Pipeline):
    def __init__(self) -> None:
        self.seen: list[Any] = []

    @mg.producer
    def numbers(self):
        yield from range(100)

    @mg.processor(to=["plus", "times"])
    def split(self, x):
        return x

    @mg.processor
    def plus(self, x):
        return ("plus", x + 1)

    @mg.processor
    def times(self, x):
        return ("times", x * 10)

    @mg.consumer(from_=["plus", "times"])
    def join(self, x):
        self.seen.append(x)


def test_diamond_fans_out_and_in(execution: str) -> None:
    p = Diamond()
    result = p.run(execution=execution)
    expected = [("plus", x + 1) for x in range(100)] + [("times", x * 10) for x in range(100)]
    assert multiset(p.seen) == multiset(expected)
    assert result.stats.stages["join"].items_in == 200
    assert_conserved(result)


class TwoProducers(mg.Pipeline):
    def __init__(self) -> None:
        self.seen: list[Any] = []

    @mg.producer(to="merge")
    def letters(self):
        yield from "abcde"

    @mg.producer(to="merge")
    def digits(self):
        yield from range(5)

    @mg.consumer
    def merge(self, x):
        self.seen.append(x)


def test_several_producers_feed_one_stage(execution: str) -> None:
    p = TwoProducers()
    result = p.run(execution=execution)
    assert multiset(p.seen) == multiset([*"abcde", *range(5)])
    assert result.stats.total_produced == 10
    assert_conserved(result)


class Crawler(mg.Pipeline):
    """A cycle: fetched pages route their links back upstream to ``filter_visited``."""

    LINKS = {i: [(i * 2) % 60, (i * 3 + 1) % 60] for i in range(60)}

    def __init__(self) -> None:
        self.visited: set[int] = set()
        self.lock = threading.Lock()
        self.saved: list[int] = []

    @mg.producer
    def seeds(self):
        yield 0

    @mg.processor
    def filter_visited(self, page):
        with self.lock:
            if page in self.visited:
                return None
            self.visited.add(page)
        return page

    @mg.processor
    def fetch(self, page, out):
        for link in self.LINKS[page]:
            out.to("filter_visited").emit(link)
        out.emit(page)

    @mg.consumer
    def save(self, page):
        self.saved.append(page)


def _reachable() -> set[int]:
    seen, todo = set(), [0]
    while todo:
        page = todo.pop()
        if page not in seen:
            seen.add(page)
            todo.extend(Crawler.LINKS[page])
    return seen


def test_cycle_terminates_by_itself(execution: str) -> None:
    p = Crawler()
    result = p.run(execution=execution)
    assert result.status == "succeeded"
    assert sorted(p.saved) == sorted(_reachable())
    assert_conserved(result)


def test_cycle_with_tiny_queues_does_not_deadlock() -> None:
    p = Crawler()
    p.run(execution="thread", queue_size=1)
    assert sorted(p.saved) == sorted(_reachable())


class Batched(mg.Pipeline):
    def __init__(self, n: int = 23) -> None:
        self.n = n
        self.sizes: list[int] = []
        self.items: list[int] = []

    @mg.producer
    def numbers(self):
        yield from range(self.n)

    chunks = mg.batch(5)

    @mg.consumer
    def save(self, rows):
        self.sizes.append(len(rows))
        self.items.extend(rows)


def test_batch_has_one_buffer_and_flushes_the_rest_at_end(execution: str) -> None:
    p = Batched(23)
    result = p.run(execution=execution, max_threads=4)
    assert sorted(p.sizes) == [3, 5, 5, 5, 5]
    assert sorted(p.items) == list(range(23))
    assert result.stats.stages["chunks"].items_out == 5
    assert_conserved(result)


class SlowTrickle(mg.Pipeline):
    def __init__(self) -> None:
        self.batches: list[tuple[float, list[int]]] = []

    @mg.producer
    def numbers(self):
        yield 1
        yield 2
        # Only the batch timeout can flush [1, 2] while the producer waits here.
        wait_until(lambda: self.batches, what="the partial batch flushed by its timeout")
        yield 3

    grouped = mg.batch(100, timeout=0.1)

    @mg.consumer
    def save(self, rows):
        self.batches.append((time.monotonic(), rows))


def test_batch_timeout_flushes_a_partial_batch() -> None:
    p = SlowTrickle()
    p.run(execution="thread")
    assert [rows for _, rows in p.batches] == [[1, 2], [3]]


class Dedupe(mg.Stage):
    """A custom stage: drops duplicates, emits a summary at end of stream."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.seen: set[Any] = set()

    def process(self, item: Any, out: mg.Out) -> None:
        if item not in self.seen:
            self.seen.add(item)
            out.emit(item)

    def flush(self, out: mg.Out) -> None:
        out.emit(("distinct", len(self.seen)))


class WithCustomStage(mg.Pipeline):
    def __init__(self) -> None:
        self.seen: list[Any] = []

    @mg.producer
    def numbers(self):
        yield from [1, 2, 2, 3, 3, 3]

    dedupe = Dedupe()

    @mg.consumer
    def collect(self, x):
        self.seen.append(x)


def test_custom_stage_process_and_flush(execution: str) -> None:
    WithCustomStage.dedupe.seen.clear()
    p = WithCustomStage()
    result = p.run(execution=execution)
    assert multiset(p.seen) == multiset([1, 2, 3, ("distinct", 3)])
    assert_conserved(result)


class Enrich(mg.Pipeline):
    """Meant for nesting: no producer."""

    def __init__(self, factor: int = 1) -> None:
        self.factor = factor

    @mg.processor
    def scale(self, x):
        return x * self.factor

    @mg.processor
    def label(self, x):
        return f"v{x}"


class Outer(mg.Pipeline):
    def __init__(self) -> None:
        self.seen: list[str] = []

    @mg.producer
    def numbers(self):
        yield from range(10)

    enrich = mg.nested(Enrich, factor=3)

    @mg.consumer
    def collect(self, x):
        self.seen.append(x)


def test_nested_pipeline_is_one_stage(execution: str) -> None:
    p = Outer()
    result = p.run(execution=execution)
    assert multiset(p.seen) == multiset(f"v{x * 3}" for x in range(10))
    assert "enrich.scale" in result.stats.stages
    assert_conserved(result)


def test_fan_out_siblings_get_no_default_edge_between_them() -> None:
    from minigun.core.graph import build_graph

    g = build_graph(Diamond())
    assert set(g.edges) == {
        ("numbers", "split"),
        ("split", "plus"),
        ("split", "times"),
        ("plus", "join"),
        ("times", "join"),
    }


def test_routed_only_stage_is_accepted_when_some_stage_routes() -> None:
    class Router(mg.Pipeline):
        def __init__(self) -> None:
            self.specials: list[int] = []
            self.normal: list[int] = []

        @mg.producer
        def numbers(self):
            yield from range(10)

        @mg.processor
        def route(self, x, out):
            if x % 3 == 0:
                out.to("special").emit(x)
            else:
                out.emit(x)

        @mg.consumer
        def normal_sink(self, x):
            self.normal.append(x)

        @mg.consumer
        def special(self, x):
            self.specials.append(x)

    from minigun.core.graph import build_graph

    g = build_graph(Router())
    assert g.nodes["special"].routed_only
    p = Router()
    result = p.run(execution="thread")
    assert sorted(p.specials) == [0, 3, 6, 9]
    assert sorted(p.normal) == [1, 2, 4, 5, 7, 8]
    assert_conserved(result)


def test_a_processor_at_the_end_counts_its_outputs(execution: str) -> None:
    class P(mg.Pipeline):
        @mg.producer
        def src(self):
            yield from range(10)

        @mg.processor
        def last(self, x):
            return x

    result = P().run(execution=execution)
    assert result.stats.stages["last"].items_out == 10
    assert result.stats.total_consumed == 10
    assert_conserved(result)
