"""``async def`` stages in every topology of DESIGN 3.2: at the start (an async generator
producer), in the middle (each processor shape) and at the end (a consumer), mixed
with thread, inline and fork stages, with exact outputs and stats that add up."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import minigun as mg
from support import assert_conserved, multiset


@pytest.fixture(autouse=True, params=["uvloop", "asyncio"])
def loop_flavour(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test here on both loops: uvloop (used when installed) and asyncio's own."""
    if request.param == "uvloop":
        pytest.importorskip("uvloop")
    monkeypatch.setenv("MINIGUN_UVLOOP", "1" if request.param == "uvloop" else "0")
    return str(request.param)


async def _tick() -> None:
    """Really suspend, so items interleave on the loop."""
    await asyncio.sleep(0)


class AsyncAtEachPosition(mg.Pipeline):
    """async producer -> async value -> plain -> async gen -> async out -> async consumer."""

    def __init__(self, n: int = 300) -> None:
        self.n = n
        self.seen: list[Any] = []

    @mg.producer
    async def numbers(self):
        for i in range(self.n):
            if i % 50 == 0:
                await _tick()
            yield i

    @mg.processor(concurrency=20)
    async def double(self, x):
        await _tick()
        return x * 2

    @mg.processor(threads=2)
    def evens_of_four(self, x):
        return x if x % 4 == 0 else None  # drops half

    @mg.processor
    async def twice(self, x):
        yield x
        await _tick()
        yield x + 1

    @mg.processor(concurrency=3)
    async def tag(self, x, out):
        await _tick()
        out.emit(("t", x))

    @mg.consumer(concurrency=7)
    async def collect(self, x):
        await _tick()
        self.seen.append(x)


def test_async_stages_at_every_position_and_shape() -> None:
    p = AsyncAtEachPosition(300)
    result = p.run()
    assert result.status == "succeeded", result.error_traceback
    expected = [("t", v) for x in range(300) if (2 * x) % 4 == 0 for v in (2 * x, 2 * x + 1)]
    assert multiset(p.seen) == multiset(expected)
    stages = result.stats.stages
    assert result.stats.total_produced == 300
    assert stages["double"]["executor"] == "async" and stages["double"]["workers"] == 20
    assert stages["numbers"]["executor"] == "async"
    assert stages["evens_of_four"]["executor"] == "thread"
    assert stages["evens_of_four"]["dropped"] == 150
    assert stages["twice"]["items_out"] == 300
    assert stages["collect"]["processed"] == 300 and stages["collect"]["workers"] == 7
    assert result.stats.total_consumed == 300
    assert_conserved(result)


@pytest.mark.parametrize("execution", ["inline", "thread", "cow_fork", "ipc_fork"])
def test_pipeline_wide_execution_leaves_async_stages_on_the_loop(execution: str) -> None:
    """The pipeline-wide strategy (here a run override) picks the plain stages'
    executor; the async ones stay on the loop whatever it says."""
    p = AsyncAtEachPosition(120)
    result = p.run(execution=execution)
    assert result.status == "succeeded", result.error_traceback
    stages = result.stats.stages
    assert stages["evens_of_four"]["executor"] == execution
    assert {stages[s]["executor"] for s in ("numbers", "double", "twice", "tag", "collect")} == {
        "async"
    }
    assert len(p.seen) == 120
    assert_conserved(result)


class FanOutFanIn(mg.Pipeline):
    """Two producers (one async) fan in; a fan-out to an async and a plain branch;
    a diamond closing on an async consumer."""

    def __init__(self) -> None:
        self.seen: list[Any] = []

    @mg.producer(to="split")
    async def evens(self):
        for i in range(0, 200, 2):
            yield i

    @mg.producer(to="split")
    def odds(self):
        yield from range(1, 200, 2)

    @mg.processor(to=["left", "right"])
    async def split(self, x):
        return x

    @mg.processor(to="join")
    async def left(self, x):
        await _tick()
        return ("L", x)

    @mg.processor(to="join", threads=3)
    def right(self, x):
        return ("R", x)

    @mg.consumer
    async def join(self, pair):
        self.seen.append(pair)


def test_fan_in_fan_out_and_a_diamond() -> None:
    p = FanOutFanIn()
    result = p.run()
    assert result.status == "succeeded", result.error_traceback
    assert multiset(p.seen) == multiset([(side, x) for x in range(200) for side in "LR"])
    assert result.stats.total_produced == 200
    assert result.stats.stages["join"]["items_in"] == 400
    assert_conserved(result)


class AsyncCrawler(mg.Pipeline):
    """A cycle through an async stage: every page below the depth links two more."""

    def __init__(self, depth: int = 6) -> None:
        self.depth = depth
        self.pages: list[str] = []

    @mg.producer
    def seeds(self):
        yield ""

    @mg.processor(concurrency=10, queue_size=4)
    async def fetch(self, page, out):
        await _tick()
        if len(page) < self.depth:
            out.to("fetch").emit(page + "a")
            out.to("fetch").emit(page + "b")
        out.emit(page)

    @mg.consumer
    def save(self, page):
        self.pages.append(page)


def test_a_cycle_through_an_async_stage_terminates_with_small_queues() -> None:
    p = AsyncCrawler(8)
    result = p.run()
    assert result.status == "succeeded", result.error_traceback
    assert len(p.pages) == 2**9 - 1 and len(set(p.pages)) == len(p.pages)
    assert result.stats.stages["fetch"]["items_in"] == 2**9 - 1
    assert_conserved(result)


class Inner(mg.Pipeline):
    @mg.processor(concurrency=5)
    async def lookup(self, x):
        await _tick()
        return {"x": x}

    @mg.processor
    def unwrap(self, d):
        return d["x"] + 1000


class Nesting(mg.Pipeline):
    def __init__(self) -> None:
        self.seen: list[int] = []

    @mg.producer
    def numbers(self):
        yield from range(50)

    inner = mg.nested(Inner)
    batches = mg.batch(8)

    @mg.consumer
    async def save(self, batch):
        self.seen.extend(batch)


def test_nested_pipeline_with_an_async_stage_and_a_batch_after_it() -> None:
    p = Nesting()
    result = p.run()
    assert result.status == "succeeded", result.error_traceback
    assert sorted(p.seen) == [x + 1000 for x in range(50)]
    assert result.stats.stages["inner.lookup"]["executor"] == "async"
    assert result.stats.stages["save"]["items_in"] == 7  # 6 batches of 8 and one of 2
    assert_conserved(result)


class RoutedOnly(mg.Pipeline):
    """An async router sends some items to a stage that only receives routed items."""

    def __init__(self) -> None:
        self.main: list[int] = []
        self.side: list[int] = []

    @mg.producer
    def numbers(self):
        yield from range(100)

    @mg.processor
    async def route(self, x, out):
        if x % 10 == 0:
            out.to("odd_ones").emit(x)
        else:
            out.emit(x)

    @mg.consumer
    async def keep(self, x):
        self.main.append(x)

    @mg.consumer  # after a consumer: no default edge reaches it
    async def odd_ones(self, x):
        self.side.append(x)


def test_routing_from_an_async_stage_to_a_routed_only_async_stage() -> None:
    p = RoutedOnly()
    result = p.run()
    assert result.status == "succeeded", result.error_traceback
    assert sorted(p.side) == list(range(0, 100, 10))
    assert sorted(p.main) == [x for x in range(100) if x % 10]
    assert_conserved(result)


class ReturnsGenerator(mg.Pipeline):
    """A coroutine may return a plain generator, as a plain processor may."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    @mg.producer
    def numbers(self):
        yield from range(10)

    @mg.processor
    async def expand(self, x):
        return (x * 10 + k for k in range(3))

    @mg.consumer
    def save(self, x):
        self.seen.append(x)


def test_a_coroutine_returning_a_generator_emits_its_values() -> None:
    p = ReturnsGenerator()
    p.run()
    assert sorted(p.seen) == sorted(x * 10 + k for x in range(10) for k in range(3))


class OutAndReturn(mg.Pipeline):
    @mg.producer
    def numbers(self):
        yield from range(3)

    @mg.processor
    async def both(self, x, out):
        out.emit(x)
        return x

    @mg.consumer
    def save(self, x):
        pass


def test_an_out_stage_that_returns_a_value_warns_once() -> None:
    with pytest.warns(RuntimeWarning, match="return value is ignored") as caught:
        result = OutAndReturn().run()
    assert result.stats.stages["save"]["items_in"] == 3
    assert len([w for w in caught if "ignored" in str(w.message)]) == 1
