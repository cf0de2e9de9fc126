"""The async executor: definition rules, concurrency, backpressure across the loop
boundary in both directions, per-item timeout/retries/on_error, stats, hooks on the
loop, stopping and cancelling, and a loop that ends with nothing pending."""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

import minigun as mg
from minigun.core.graph import build_graph
from minigun.core.options import DEFAULT_CONCURRENCY
from support import assert_conserved, untraced_env, wait_until


@pytest.fixture(autouse=True, params=["uvloop", "asyncio"])
def loop_flavour(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test here on both loops: uvloop (used when installed) and asyncio's own."""
    if request.param == "uvloop":
        pytest.importorskip("uvloop")
    monkeypatch.setenv("MINIGUN_UVLOOP", "1" if request.param == "uvloop" else "0")
    return str(request.param)


class Gate:
    """Coroutines of a stage wait here until the test opens it; counts who is inside.

    ``open()`` may be called from the test's thread: the event is set on the loop.
    """

    def __init__(self) -> None:
        self.inside = 0
        self.peak = 0
        self.entered = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self.event: asyncio.Event | None = None
        self.opened = False

    async def wait(self) -> None:
        if self.event is None:
            self.loop = asyncio.get_running_loop()
            self.event = asyncio.Event()
            if self.opened:
                self.event.set()
        self.inside += 1
        self.entered += 1
        self.peak = max(self.peak, self.inside)
        try:
            await self.event.wait()
        finally:
            self.inside -= 1

    def open(self) -> None:
        self.opened = True
        if self.loop is not None and self.event is not None:
            self.loop.call_soon_threadsafe(self.event.set)


# --------------------------------------------------------------------------- definitions


def _graph(cls: type[mg.Pipeline], **overrides: Any) -> Any:
    return build_graph(cls(), **overrides)


class AskThread(mg.Pipeline):
    @mg.producer
    def numbers(self):
        yield 1

    @mg.consumer(execution="thread")
    async def save(self, x):
        pass


class AskLoop(mg.Pipeline):
    @mg.producer
    def numbers(self):
        yield 1

    @mg.consumer(execution="async")
    def save(self, x):
        pass


class OutProducer(mg.Pipeline):
    @mg.producer
    async def numbers(self, out):
        out.emit(1)

    @mg.consumer
    def save(self, x):
        pass


class CoroutineProducer(mg.Pipeline):
    @mg.producer
    async def numbers(self):
        return [1, 2]

    @mg.consumer
    def save(self, x):
        pass


class GeneratorConsumer(mg.Pipeline):
    @mg.producer
    def numbers(self):
        yield 1

    @mg.consumer
    async def save(self, x):
        yield x


class GeneratorWithOut(mg.Pipeline):
    @mg.producer
    def numbers(self):
        yield 1

    @mg.processor
    async def both(self, x, out):
        yield x

    @mg.consumer
    def save(self, x):
        pass


class AsyncCustom(mg.Stage):
    async def process(self, item, out):  # type: ignore[override]
        out.emit(item)


class WithAsyncCustom(mg.Pipeline):
    @mg.producer
    def numbers(self):
        yield 1

    custom = AsyncCustom()

    @mg.consumer
    def save(self, x):
        pass


class AsyncForkHook(mg.Pipeline):
    @mg.before_fork
    async def close_things(self):
        pass

    @mg.producer
    def numbers(self):
        yield 1

    @mg.consumer
    def save(self, x):
        pass


@pytest.mark.parametrize(
    ("cls", "message"),
    [
        (AskThread, "execution='thread' cannot run an async def stage"),
        (AskLoop, "stage 'save': execution='async' runs async def stages"),
        (OutProducer, "an async producer is an async generator"),
        (CoroutineProducer, "an async producer is an async generator"),
        (GeneratorConsumer, "cannot be an async generator"),
        (GeneratorWithOut, "an async generator cannot also take out"),
        (WithAsyncCustom, "custom mg.Stage runs process() and flush() as plain calls"),
        (AsyncForkHook, "@mg.before_fork hook 'close_things' is async def"),
    ],
)
def test_definition_errors_name_the_stage_and_the_fix(cls: type, message: str) -> None:
    with pytest.raises(mg.PipelineDefinitionError, match=re.escape(message)):
        _graph(cls)


class Concurrent(mg.Pipeline):
    concurrency = 30

    @mg.producer
    def numbers(self):
        yield 1

    @mg.processor(concurrency=12)
    async def own(self, x):
        return x

    @mg.processor
    async def inherited(self, x):
        return x

    @mg.consumer
    def save(self, x):
        pass


class Defaults(mg.Pipeline):
    @mg.producer
    def numbers(self):
        yield 1

    @mg.consumer
    async def save(self, x):
        pass


def test_concurrency_precedence_run_over_stage_over_attribute_over_default() -> None:
    graph = _graph(Concurrent)
    assert graph.nodes["own"].workers == 12
    assert graph.nodes["inherited"].workers == 30
    forced = _graph(Concurrent, concurrency=4)
    assert forced.nodes["own"].workers == 4 and forced.nodes["inherited"].workers == 4
    assert _graph(Defaults).nodes["save"].workers == DEFAULT_CONCURRENCY == 100
    # a cap on threads does not touch coroutines
    assert _graph(Concurrent, max_threads=1).nodes["own"].workers == 12


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "10", 2**31])
def test_bad_concurrency_is_a_definition_error_at_every_level(bad: Any) -> None:
    class Stage(mg.Pipeline):
        @mg.producer
        def numbers(self):
            yield 1

        @mg.consumer(concurrency=bad)
        async def save(self, x):
            pass

    with pytest.raises(mg.PipelineDefinitionError, match="concurrency="):
        _graph(Stage)
    with pytest.raises(mg.PipelineDefinitionError, match="concurrency="):
        _graph(Defaults, concurrency=bad)

    class Attribute(Defaults):
        concurrency = bad

    with pytest.raises(mg.PipelineDefinitionError, match="concurrency="):
        _graph(Attribute)


def test_the_plan_counts_async_stages_as_coroutines_not_threads_or_processes() -> None:
    plan = _graph(Concurrent).plan()
    assert plan["coroutines"] == 12 + 30
    assert plan["threads"] == 2  # the producer and the plain consumer
    assert plan["processes"] == 0 and not plan["warnings"]


def test_the_plain_stages_of_an_all_async_setting_run_on_threads() -> None:
    """``execution="async"`` pipeline-wide cannot put a plain def on the loop."""
    graph = _graph(Concurrent, execution="async")
    assert graph.nodes["save"].execution == "thread"
    assert graph.nodes["own"].execution == "async"


# --------------------------------------------------------------------------- concurrency


class Held(mg.Pipeline):
    def __init__(self, n: int, gate: Gate) -> None:
        self.n = n
        self.gate = gate
        self.produced = 0
        self.saved = 0

    @mg.producer
    def numbers(self):
        for i in range(self.n):
            self.produced += 1
            yield i

    @mg.processor(concurrency=7, queue_size=5)
    async def call(self, x):
        await self.gate.wait()
        return x

    @mg.consumer
    def save(self, x):
        self.saved += 1


def test_exactly_concurrency_items_in_flight_and_upstream_blocks_behind_them() -> None:
    """With every slot taken the stage takes nothing more: its inbox fills and the
    (plain, fast) producer blocks on it instead of producing 100,000 items."""
    gate = Gate()
    p = Held(100_000, gate)
    handle = p.run(background=True)
    try:
        wait_until(lambda: gate.inside == 7, what="7 coroutines in flight")
        wait_until(lambda: handle.snapshot()["stages"]["call"]["queued"] >= 5, what="a full inbox")
        assert gate.entered == 7
        # the producer is held by backpressure: at most the inbox, the slots and one
        # producer chunk (at most half the inbox) beyond them
        assert p.produced <= 5 + 7 + 256 + 256
    finally:
        gate.open()
    result = handle.wait(60)
    assert result is not None and result.status == "succeeded"
    assert gate.peak == 7
    assert p.saved == 100_000
    assert_conserved(result)


class SlowSink(mg.Pipeline):
    def __init__(self, release: threading.Event) -> None:
        self.release = release
        self.calls = 0
        self.loop: asyncio.AbstractEventLoop | None = None
        self.saved = 0

    @mg.producer
    def numbers(self):
        yield from range(50_000)

    @mg.processor(concurrency=50)
    async def call(self, x):
        self.loop = asyncio.get_running_loop()
        self.calls += 1
        return x

    @mg.consumer(queue_size=10)
    def save(self, x):
        self.release.wait()
        self.saved += 1


def test_a_slow_plain_consumer_stops_the_async_stage_without_blocking_the_loop() -> None:
    release = threading.Event()
    p = SlowSink(release)
    handle = p.run(background=True)
    try:
        wait_until(lambda: handle.snapshot()["stages"]["save"]["queued"] >= 10, what="a full sink")
        wait_until(
            lambda: handle.snapshot()["stages"]["call"]["queued"] >= 1000,
            what="the async stage's own inbox to fill",
        )
        # The async stage stopped taking items: what it ran is bounded by the sink's
        # inbox (soft by one delivered batch, at most all 50 slots), the item the sink
        # holds, and its own slots (all taken, their outputs waiting to be delivered).
        assert p.calls <= (10 + 50) + 1 + 50
        # ...and the loop is free all the while: it runs another coroutine at once.
        assert p.loop is not None
        probe = asyncio.run_coroutine_threadsafe(asyncio.sleep(0, "alive"), p.loop)
        assert probe.result(timeout=10) == "alive"
    finally:
        release.set()
    result = handle.wait(60)
    assert result is not None and result.status == "succeeded"
    assert p.saved == 50_000
    assert_conserved(result)


class AsyncSourceHeld(mg.Pipeline):
    """An async generator producer into a consumer that holds every item."""

    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self.yielded = 0
        self.closed = False

    @mg.producer
    async def numbers(self):
        try:
            i = 0
            while True:
                self.yielded += 1
                yield i
                i += 1
        finally:
            self.closed = True

    @mg.consumer(concurrency=4, queue_size=8)
    async def save(self, x):
        await self.gate.wait()


def test_an_async_producer_is_held_at_a_yield_by_backpressure_and_closed_on_stop() -> None:
    gate = Gate()
    p = AsyncSourceHeld(gate)
    handle = p.run(background=True)
    try:
        wait_until(lambda: gate.inside == 4, what="4 coroutines in flight")
        wait_until(lambda: handle.snapshot()["stages"]["save"]["queued"] >= 8, what="a full inbox")
        # the pump runs at most its buffer ahead of a producer thread held by the inbox
        assert p.yielded <= 8 + 4 + 256 + 256 + 1
        handle.stop()
    finally:
        gate.open()
    result = handle.wait(60)
    assert result is not None and result.status == "stopped"
    assert p.closed, "the async generator's finally block ran"
    produced = result.stats.total_produced
    assert result.stats.stages["save"]["processed"] == produced
    assert_conserved(result)


class FailingSource(mg.Pipeline):
    def __init__(self) -> None:
        self.saved: list[int] = []

    @mg.producer
    async def numbers(self):
        for i in range(5):
            yield i
        raise ValueError("page 2 is gone")

    @mg.consumer
    def save(self, x):
        self.saved.append(x)


def test_an_async_producer_error_fails_the_run_after_its_items_are_delivered() -> None:
    p = FailingSource()
    result = p.run()
    assert result.status == "failed"
    assert isinstance(result.error, ValueError) and result.error_stage == "numbers"
    assert sorted(p.saved) == [0, 1, 2, 3, 4]
    assert result.stats.total_produced == 5


# --------------------------------------------------------------------------- errors


class Flaky(mg.Pipeline):
    """Item 3 fails twice then succeeds; items 5 and 7 always fail. Every attempt emits
    before it fails: a failed attempt's partial output must not leak."""

    def __init__(self) -> None:
        self.attempts: dict[int, list[float]] = {}
        self.saved: list[Any] = []

    @mg.producer
    def numbers(self):
        yield from range(10)

    @mg.processor(on_error="dead_letter", retries=2, retry_delay=0.01, concurrency=4)
    async def call(self, x, out):
        self.attempts.setdefault(x, []).append(time.monotonic())
        out.emit(("partial", x))
        await asyncio.sleep(0)
        if x == 3 and len(self.attempts[x]) < 3:
            raise ConnectionError("try again")
        if x in (5, 7):
            raise ValueError(f"bad {x}")
        out.emit(("full", x))

    @mg.consumer
    def save(self, x):
        self.saved.append(x)


def test_retries_back_off_and_dead_letters_keep_no_partial_output() -> None:
    p = Flaky()
    result = p.run()
    assert result.status == "succeeded"
    stage = result.stats.stages["call"]
    assert stage["retries"] == 2 + 2 + 2  # item 3 twice, items 5 and 7 twice each
    assert stage["dead_letters"] == 2 and stage["errors"] == 2
    assert sorted((d.item, d.attempts) for d in result.dead_letters) == [(5, 3), (7, 3)]
    assert all(d.stage == "call" and "ValueError" in d.error for d in result.dead_letters)
    assert "bad 5" in next(d.traceback for d in result.dead_letters if d.item == 5)
    ok = [x for x in range(10) if x not in (5, 7)]
    # a successful attempt's outputs only: none from failed attempts, none from 5 and 7
    assert sorted(p.saved) == sorted([("partial", x) for x in ok] + [("full", x) for x in ok])
    # backoff: retry_delay, then twice that (lower bounds only: a loaded machine is slower)
    t = p.attempts[3]
    # The backoff waits 0.01 s, then 0.02 s (a loop timer may fire up to 1 ms early).
    assert t[1] - t[0] >= 0.009 and t[2] - t[1] >= 0.019
    assert_conserved(result)


def _raising(exc: BaseException, on_error: str) -> mg.Pipeline:
    class Raising(mg.Pipeline):
        def __init__(self) -> None:
            self.saved = 0

        @mg.producer
        def numbers(self):
            yield from range(20)

        @mg.processor(concurrency=5, on_error=on_error)
        async def call(self, x):
            if x == 4:
                raise exc
            return x

        @mg.consumer
        def save(self, x):
            self.saved += 1

    return Raising()


@pytest.mark.parametrize(
    ("exc", "on_error", "status", "code"),
    [
        (ValueError("boom"), "raise", "failed", mg.ExitCode.FAILED),
        (ValueError("boom"), "skip", "succeeded", mg.ExitCode.OK),
        (mg.Skip("nothing to do"), "raise", "skipped", mg.ExitCode.SKIPPED),
        (mg.TransientError("later"), "skip", "failed", mg.ExitCode.TEMPFAIL),
        (KeyboardInterrupt(), "skip", "failed", mg.ExitCode.FAILED),
    ],
)
def test_on_error_policies_and_control_exceptions(
    exc: BaseException, on_error: str, status: str, code: mg.ExitCode
) -> None:
    p = _raising(exc, on_error)
    result = p.run()
    assert result.status == status and result.exit_code == code
    if status == "failed":
        assert result.error is exc and result.error_stage == "call"
    if on_error == "skip" and status == "succeeded":
        assert result.stats.stages["call"]["skipped"] == 1 and p.saved == 19  # type: ignore[attr-defined]
    assert_conserved(result)


class Slow(mg.Pipeline):
    def __init__(self) -> None:
        self.cancelled: list[int] = []
        self.calls: dict[int, int] = {}

    @mg.producer
    def numbers(self):
        yield from range(12)

    @mg.processor(timeout=0.3, retries=1, retry_delay=0, on_error="dead_letter", concurrency=12)
    async def call(self, x):
        self.calls[x] = self.calls.get(x, 0) + 1
        if x % 4 == 0:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                self.cancelled.append(x)
                raise
        return x

    @mg.consumer
    def save(self, x):
        pass


def test_a_timeout_cancels_the_coroutine_and_goes_through_retries_and_on_error() -> None:
    p = Slow()
    started = time.monotonic()
    result = p.run()
    assert time.monotonic() - started < 60  # only catches a hang
    assert result.status == "succeeded"
    assert sorted(d.item for d in result.dead_letters) == [0, 4, 8]
    assert all("ItemTimeout" in d.error and d.attempts == 2 for d in result.dead_letters)
    assert sorted(p.cancelled) == [0, 0, 4, 4, 8, 8]  # each attempt's coroutine was cancelled
    assert {x: n for x, n in p.calls.items() if n != 1} == {0: 2, 4: 2, 8: 2}
    stage = result.stats.stages["call"]
    assert stage["processed"] == 9 and stage["retries"] == 3
    assert_conserved(result)


class Timed(mg.Pipeline):
    @mg.producer
    def numbers(self):
        yield from range(40)

    @mg.processor(concurrency=40)
    async def call(self, x):
        await asyncio.sleep(0.05)
        return x

    @mg.consumer
    def save(self, x):
        pass


def test_stats_have_latency_percentiles_and_utilisation_per_async_stage() -> None:
    result = Timed().run()
    stage = result.stats.stages["call"]
    assert stage["executor"] == "async" and stage["workers"] == 40
    assert stage["items_in"] == stage["processed"] == stage["items_out"] == 40
    # each item takes about its 50 ms sleep: the histogram's buckets are ~9% wide, and
    # uvloop's millisecond timers may wake a sleep a fraction of a millisecond early
    assert stage["latency_p50"] >= 0.045 and stage["latency_p99"] >= stage["latency_p50"]
    assert stage["busy_seconds"] >= 40 * 0.045
    assert 0 < stage["utilisation"] <= 1
    assert_conserved(result)


# --------------------------------------------------------------------------- hooks & loop


class Hooks(mg.Pipeline):
    def __init__(self) -> None:
        self.loops: set[int] = set()
        self.client: dict[str, Any] | None = None
        self.events: list[str] = []
        self.after_status: str | None = None

    @mg.before_run
    async def open_client(self):
        await asyncio.sleep(0)
        self.loops.add(id(asyncio.get_running_loop()))
        self.client = {"open": True, "calls": 0}
        self.events.append("open")

    @mg.producer
    def numbers(self):
        yield from range(30)

    @mg.processor(concurrency=10)
    async def call(self, x):
        assert self.client is not None and self.client["open"]
        self.client["calls"] += 1
        self.loops.add(id(asyncio.get_running_loop()))
        return x

    @mg.consumer
    async def save(self, x):
        self.loops.add(id(asyncio.get_running_loop()))

    @mg.after_run
    async def close_client(self, result):
        self.loops.add(id(asyncio.get_running_loop()))
        assert self.client is not None
        self.client["open"] = False
        self.after_status = result.status
        self.events.append("close")


def test_async_hooks_run_on_the_loop_the_stages_use() -> None:
    p = Hooks()
    result = p.run()
    assert result.status == "succeeded"
    assert len(p.loops) == 1, "hooks and stages share one loop"
    assert p.events == ["open", "close"] and p.after_status == "succeeded"
    assert p.client == {"open": False, "calls": 30}


class HookFails(mg.Pipeline):
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    @mg.before_run
    async def connect(self):
        raise self.exc

    @mg.producer
    def numbers(self):
        yield 1

    @mg.consumer
    async def save(self, x):
        pass


@pytest.mark.parametrize(
    ("exc", "status"), [(OSError("no route"), "failed"), (mg.Skip("no data"), "skipped")]
)
def test_an_async_before_run_hook_that_raises_ends_the_run(exc: BaseException, status: str) -> None:
    result = HookFails(exc).run()
    assert result.status == status and result.error is exc
    assert result.stats.total_produced == 0


class Leaky(mg.Pipeline):
    """Starts a background task in before_run and never cancels or awaits it."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.background_ended = threading.Event()

    @mg.before_run
    async def start_heartbeat(self):
        self.loop = asyncio.get_running_loop()

        async def heartbeat() -> None:
            try:
                while True:
                    await asyncio.sleep(0.01)
            finally:
                self.background_ended.set()

        self.task = asyncio.get_running_loop().create_task(heartbeat())

    @mg.producer
    async def numbers(self):
        for i in range(10):
            yield i

    @mg.consumer
    async def save(self, x):
        await asyncio.sleep(0)


def test_the_loop_ends_with_nothing_pending(caplog: pytest.LogCaptureFixture) -> None:
    p = Leaky()
    with caplog.at_level(logging.DEBUG, logger="asyncio"):
        result = p.run()
        gc.collect()
    assert result.status == "succeeded"
    assert p.background_ended.is_set(), "a task left running was cancelled at the end"
    assert p.loop is not None and p.loop.is_closed()
    assert not asyncio.all_tasks(p.loop)
    assert not [r for r in caplog.records if "destroyed but it is pending" in r.getMessage()]
    assert not [t for t in threading.enumerate() if t.name == "minigun-loop"]


class LoopKind(mg.Pipeline):
    def __init__(self) -> None:
        self.seen: set[str] = set()

    @mg.producer
    def numbers(self):
        yield from range(5)

    @mg.consumer
    async def save(self, x):
        self.seen.add(type(asyncio.get_running_loop()).__module__.split(".")[0])


@pytest.mark.parametrize(("flag", "flavour"), [("0", "asyncio"), ("1", "uvloop")])
def test_uvloop_is_used_when_installed_unless_turned_off(
    monkeypatch: pytest.MonkeyPatch, flag: str, flavour: str
) -> None:
    if flavour == "uvloop":
        pytest.importorskip("uvloop")
    monkeypatch.setenv("MINIGUN_UVLOOP", flag)
    p = LoopKind()
    assert p.run().status == "succeeded"
    assert p.seen == {flavour}


def test_a_plain_pipeline_never_imports_asyncio() -> None:
    code = (
        "import sys, minigun as mg\n"
        "class P(mg.Pipeline):\n"
        "    @mg.producer\n"
        "    def a(self): yield from range(3)\n"
        "    @mg.consumer(threads=2)\n"
        "    def b(self, x): pass\n"
        "assert P().run().ok\n"
        "print([m for m in ('asyncio', 'uvloop', 'concurrent.futures') if m in sys.modules])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=untraced_env()
    )
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------- stopping


class Draining(mg.Pipeline):
    """Endless input; each call takes a little while; stop() must let them finish."""

    def __init__(self) -> None:
        self.started = 0
        self.finished = 0

    @mg.producer
    def numbers(self):
        i = 0
        while True:
            yield i
            i += 1

    @mg.processor(concurrency=20, queue_size=30)
    async def call(self, x):
        self.started += 1
        await asyncio.sleep(0.02)
        self.finished += 1
        return x

    @mg.consumer
    def save(self, x):
        pass


def test_stop_drains_in_flight_and_queued_coroutines() -> None:
    p = Draining()
    handle = p.run(background=True)
    wait_until(lambda: p.finished >= 50, what="50 calls done")
    handle.stop()
    result = handle.wait(60)
    assert result is not None and result.status == "stopped"
    assert p.started == p.finished, "every coroutine started was allowed to finish"
    stage = result.stats.stages["call"]
    assert stage["processed"] == stage["items_in"] == result.stats.total_produced
    assert_conserved(result)


class Hanging(mg.Pipeline):
    """Items below 5 finish at once; the rest hang until cancelled."""

    def __init__(self) -> None:
        self.hanging = 0
        self.unwound: list[int] = []

    @mg.producer
    def numbers(self):
        yield from range(100)

    @mg.processor(concurrency=8, on_error="dead_letter")
    async def call(self, x):
        if x < 5:
            return x
        self.hanging += 1
        try:
            await asyncio.sleep(3600)
        finally:
            self.unwound.append(x)
        return x

    @mg.consumer
    def save(self, x):
        pass


def test_cancel_in_flight_cancels_coroutines_after_a_stop_that_cannot_drain() -> None:
    p = Hanging()
    handle = p.run(background=True)
    wait_until(lambda: p.hanging == 8, what="8 hanging coroutines")
    handle.stop()
    assert handle.running
    assert handle.cancel_in_flight(wait=10) == 8
    result = handle.wait(60)
    assert result is not None and result.status == "stopped"
    assert len(p.unwound) == 8, "each cancelled coroutine ran its finally block"
    stage = result.stats.stages["call"]
    # the 8 cancelled and whatever was queued behind them fail; none is dead-lettered
    assert stage["processed"] == 5 and stage["dead_letters"] == 0
    assert stage["failed"] == stage["items_in"] - 5 >= 8
    assert p.hanging == 8, "nothing taken after the cancel ran"
    assert_conserved(result)
