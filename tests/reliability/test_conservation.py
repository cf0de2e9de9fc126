"""Conservation as a property: over random graphs, executors, failures and retries,
every item a stage receives ends exactly once, and the run reports what happened.

A drawn example is a small graph -- a chain, a fan-out, a fan-in, a diamond or a
chain with a bounded cycle (a stage routing an item back upstream with a hop counter
in the item) -- whose processors run on a random executor among inline, thread,
cow_fork, ipc_fork and async (the same code as an ``async def``), each with a random
``on_error`` and ``retries``. Items are
``(id, hops, path)`` tuples; every stage appends its tag to ``path``, so each item a
stage receives is distinct and its fate can be decided deterministically from a hash:
a permanent failure, a transient one (fails the first k attempts, across processes,
counted with marker files), a drop (``None``) or an output.

A plain-Python interpreter of the same graph predicts, per stage, ``items_in``,
``processed``, ``dropped``, ``skipped``, ``dead_letters``, ``errors`` and
``retries``, the consumed multiset and the dead letters. When a ``raise`` stage meets
a failing item the run must fail (exit 1) with every stage still conserving its
items and nothing consumed that the reference would not have consumed.

Consumers run on inline, thread or async stages (they record what they consume in
the parent's memory); their failures are drawn like everyone else's.
"""

from __future__ import annotations

import asyncio
import itertools
import tempfile
import zlib
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

import minigun as mg
from reliability.support import (
    EXAMPLES,
    assert_conserved,
    assert_status_matches_code,
    count,
    examples,
    first_time,
)

EXECUTORS = ("inline", "thread", "cow_fork", "ipc_fork", "async")
POLICIES = ("raise", "skip", "dead_letter")
MAX_HOPS = 2

#: A run that takes longer than this is a hang, not slowness (examples are tens of items).
RUN_DEADLINE = 240.0


def crc(*parts: object) -> int:
    """A hash that is the same in every process and every interpreter run."""
    return zlib.crc32("\x1f".join(map(str, parts)).encode())


@dataclass
class StageSpec:
    name: str
    kind: str  # "processor" | "loop" | "consumer"
    tag: str
    execution: str = "thread"
    workers: int = 1
    on_error: str = "raise"
    retries: int = 0
    fail_pct: int = 0
    flaky_pct: int = 0
    flaky_max: int = 1
    drop_pct: int = 0
    salt: int = 0
    to: list[str] = field(default_factory=list)
    back: str | None = None  # loop stages: where an item goes back up the cycle

    # -- the item's fate, shared by the stage code and the reference interpreter

    def fails_for_good(self, x: tuple[int, int, str]) -> bool:
        return crc(self.salt, "fail", *x) % 100 < self.fail_pct

    def transient_failures(self, x: tuple[int, int, str]) -> int:
        if crc(self.salt, "flaky", *x) % 100 >= self.flaky_pct:
            return 0
        return 1 + crc(self.salt, "k", *x) % self.flaky_max

    def drops(self, x: tuple[int, int, str]) -> bool:
        return self.kind == "processor" and crc(self.salt, "drop", *x) % 100 < self.drop_pct

    def loops_back(self, x: tuple[int, int, str]) -> bool:
        return self.kind == "loop" and x[1] < MAX_HOPS and crc(self.salt, "back", *x) % 2 == 0


@dataclass
class GraphSpec:
    shape: str
    producers: list[tuple[str, list[int], str]]  # (name, ids, the stage it feeds)
    stages: list[StageSpec]
    queue_size: int
    max_dead_letters: int | None

    def stage(self, name: str) -> StageSpec:
        return next(s for s in self.stages if s.name == name)


# ---------------------------------------------------------------------- drawing graphs


@st.composite
def stage_specs(draw: st.DrawFn, name: str, kind: str, tag: str) -> StageSpec:
    if kind == "consumer":
        execution = draw(st.sampled_from(("inline", "thread", "async")))
    else:
        execution = draw(st.sampled_from(EXECUTORS))
    failing = draw(st.integers(0, 2)) == 0  # mostly runs that finish, some that fail
    return StageSpec(
        name=name,
        kind=kind,
        tag=tag,
        execution=execution,
        workers=draw(st.integers(1, 2 if execution.endswith("fork") else 3)),
        on_error=draw(st.sampled_from(POLICIES)),
        retries=draw(st.integers(0, 2)),
        fail_pct=draw(st.integers(0, 25)) if failing else 0,
        flaky_pct=draw(st.integers(0, 40)) if draw(st.booleans()) else 0,
        flaky_max=draw(st.integers(1, 3)),
        drop_pct=draw(st.integers(0, 30)) if kind == "processor" else 0,
        salt=draw(st.integers(0, 2**16)),
    )


@st.composite
def graphs(draw: st.DrawFn) -> GraphSpec:
    shape = draw(st.sampled_from(("chain", "fan_out", "fan_in", "diamond", "cycle")))
    n = draw(st.integers(0, 40))
    ids = list(range(n))
    tags = iter("abcdefghij")

    def stage(name: str, kind: str = "processor") -> StageSpec:
        return draw(stage_specs(name, kind, next(tags)))

    producers: list[tuple[str, list[int], str]]
    if shape == "chain":
        length = draw(st.integers(1, 3))
        stages = [stage(f"s{i}") for i in range(length)] + [stage("sink", "consumer")]
        for up, down in itertools.pairwise(stages):
            up.to = [down.name]
        producers = [("src", ids, stages[0].name)]
    elif shape == "fan_out":
        head, left, right = stage("head"), stage("left"), stage("right")
        sink_l, sink_r = stage("sink_left", "consumer"), stage("sink_right", "consumer")
        head.to, left.to, right.to = ["left", "right"], ["sink_left"], ["sink_right"]
        stages = [head, left, right, sink_l, sink_r]
        producers = [("src", ids, "head")]
    elif shape == "fan_in":
        left, right, join = stage("left"), stage("right"), stage("join")
        sink = stage("sink", "consumer")
        left.to, right.to, join.to = ["join"], ["join"], ["sink"]
        stages = [left, right, join, sink]
        more = list(range(1000, 1000 + draw(st.integers(0, 30))))
        producers = [("src_left", ids, "left"), ("src_right", more, "right")]
    elif shape == "diamond":
        head, left, right, join = stage("head"), stage("left"), stage("right"), stage("join")
        sink = stage("sink", "consumer")
        head.to, left.to, right.to, join.to = ["left", "right"], ["join"], ["join"], ["sink"]
        stages = [head, left, right, join, sink]
        producers = [("src", ids, "head")]
    else:  # a chain whose loop stage sends some items back up, at most MAX_HOPS times
        head, loop, sink = stage("head"), stage("loop", "loop"), stage("sink", "consumer")
        head.to, loop.to = ["loop"], ["sink"]
        loop.back = draw(st.sampled_from(("head", "loop")))
        stages = [head, loop, sink]
        producers = [("src", ids, "head")]
    return GraphSpec(
        shape=shape,
        producers=producers,
        stages=stages,
        queue_size=draw(st.integers(1, 64)),
        max_dead_letters=draw(st.one_of(st.none(), st.integers(0, 6))),
    )


# ---------------------------------------------------------------------- the pipeline


def build_pipeline(spec: GraphSpec, markers: str) -> type[mg.Pipeline]:
    """A Pipeline class for ``spec``; its consumers record into ``self.seen``."""
    body: dict[str, Any] = {}

    def make_producer(ids: list[int]) -> Any:
        def produce(self: Any) -> Any:
            for i in ids:
                yield (i, 0, "")

        return produce

    for name, ids, target in spec.producers:
        fn = make_producer(ids)
        fn.__name__ = name
        body[name] = mg.producer(to=[target])(fn)

    def trouble(s: StageSpec, x: tuple[int, int, str]) -> None:
        """Raise as the reference says: for good, or the first k attempts."""
        if s.fails_for_good(x):
            raise ValueError(f"{s.name}: item {x} fails for good")
        for attempt in range(s.transient_failures(x)):
            if first_time(f"{markers}/{s.name}-{x[0]}-{x[1]}-{crc(x[2])}-{attempt}"):
                raise ValueError(f"{s.name}: item {x} fails on attempt {attempt + 1}")

    def make_stage(s: StageSpec) -> Any:
        if s.kind == "processor":

            def process(self: Any, x: tuple[int, int, str]) -> Any:
                trouble(s, x)
                if s.drops(x):
                    return None
                return (x[0], x[1], x[2] + s.tag)

            fn, deco = process, mg.processor
        elif s.kind == "loop":

            def loop(self: Any, x: tuple[int, int, str], out: mg.Out) -> None:
                trouble(s, x)
                if s.loops_back(x):
                    out.to(s.back).emit((x[0], x[1] + 1, x[2] + s.tag))
                else:
                    out.emit((x[0], x[1], x[2] + s.tag))

            fn, deco = loop, mg.processor
        else:

            def consume(self: Any, x: tuple[int, int, str]) -> None:
                trouble(s, x)
                self.seen.append((s.name, x))

            fn, deco = consume, mg.consumer
        if s.execution == "async":
            fn = asynchronous(s.kind, fn)
        fn.__name__ = s.name
        options: dict[str, Any] = {
            "execution": s.execution,
            "on_error": s.on_error,
            "retries": s.retries,
            "retry_delay": 0,
        }
        if s.execution.endswith("fork"):
            options["processes"] = s.workers
        elif s.execution == "async":
            options["concurrency"] = s.workers
        else:
            options["threads"] = s.workers
        if s.to:
            options["to"] = s.to
        return deco(**options)(fn)

    for s in spec.stages:
        body[s.name] = make_stage(s)

    def init(self: Any) -> None:
        self.seen = []

    body["__init__"] = init
    return type(f"Random_{spec.shape}", (mg.Pipeline,), body)


def asynchronous(kind: str, fn: Any) -> Any:
    """The same stage as an ``async def`` (of the same shape) that suspends first, so
    items interleave on the loop."""
    if kind == "loop":

        async def loop(self: Any, x: tuple[int, int, str], out: mg.Out) -> None:
            await asyncio.sleep(0)
            fn(self, x, out)

        return loop

    async def one(self: Any, x: tuple[int, int, str]) -> Any:
        await asyncio.sleep(0)
        return fn(self, x)

    return one


# ---------------------------------------------------------------------- the reference


@dataclass
class Expected:
    stages: dict[str, Counter[str]]
    consumed: Counter[tuple[str, tuple[int, int, str]]]
    dead_letters: Counter[tuple[str, tuple[int, int, str]]]
    produced: int
    raises: bool  # some raise-policy stage meets an item that fails for good


def interpret(spec: GraphSpec) -> Expected:
    """Run ``spec`` in plain Python, treating a ``raise`` failure like ``skip`` (then the
    consumed multiset is an upper bound of what a failing run can consume)."""
    stats = {s.name: Counter() for s in spec.stages}
    consumed: Counter[Any] = Counter()
    dead: Counter[Any] = Counter()
    raises = False
    todo: deque[tuple[str, tuple[int, int, str]]] = deque()
    produced = 0
    for _, ids, target in spec.producers:
        produced += len(ids)
        todo.extend((target, (i, 0, "")) for i in ids)
    while todo:
        name, x = todo.popleft()
        s = spec.stage(name)
        c = stats[name]
        c["items_in"] += 1
        transient = s.transient_failures(x)
        if s.fails_for_good(x) or transient > s.retries:
            c["retries"] += s.retries
            c["errors"] += 1
            if s.on_error == "raise":
                raises = True
                c["failed"] += 1
            elif s.on_error == "skip":
                c["skipped"] += 1
            else:
                c["dead_letters"] += 1
                dead[(name, x)] += 1
            continue
        c["retries"] += transient
        if s.drops(x):
            c["dropped"] += 1
            continue
        c["processed"] += 1
        if s.kind == "consumer":
            consumed[(name, x)] += 1
        elif s.loops_back(x):
            assert s.back is not None
            todo.append((s.back, (x[0], x[1] + 1, x[2] + s.tag)))
        else:
            todo.extend((t, (x[0], x[1], x[2] + s.tag)) for t in s.to)
    return Expected(stats, consumed, dead, produced, raises)


# ---------------------------------------------------------------------- the property

FIELDS = ("items_in", "processed", "dropped", "skipped", "dead_letters", "errors", "retries")


def run_with_deadline(pipeline: mg.Pipeline, **overrides: Any) -> mg.RunResult:
    handle = pipeline.run(background=True, **overrides)
    result = handle.wait(RUN_DEADLINE)
    if result is None:
        snapshot = handle.snapshot()
        handle.stop()
        handle.wait(60)
        raise AssertionError(f"the run did not end within {RUN_DEADLINE}s: {snapshot}")
    return result


@pytest.mark.timeout(600 + 5 * examples())  # the whole property, not one example
@settings(settings.get_profile("reliability"))
@given(spec=graphs())
def test_every_item_ends_exactly_once_and_the_run_reports_it(spec: GraphSpec) -> None:
    note(f"graph: {spec}")
    count(EXAMPLES)
    expected = interpret(spec)
    with tempfile.TemporaryDirectory(prefix="minigun-rel-") as markers:
        cls = build_pipeline(spec, markers)
        pipeline = cls()
        result = run_with_deadline(
            pipeline, queue_size=spec.queue_size, max_dead_letters=spec.max_dead_letters
        )
    stages = result.stats.stages
    note(f"status {result.status}, error {result.error!r}, stages {dict(stages)}")
    assert_status_matches_code(result)
    assert_conserved(stages)
    consumed = Counter(pipeline.seen)

    if expected.raises:
        assert result.status == "failed", result
        assert result.exit_code == mg.ExitCode.FAILED
        assert isinstance(result.error, ValueError), repr(result.error)
        assert spec.stage(result.error_stage).on_error == "raise"
        assert sum(s["failed"] for s in stages.values()) >= 1
        # Producers stop early and retries are cut short, so less may arrive; never more.
        assert not consumed - expected.consumed, consumed - expected.consumed
        return

    n_dead = sum(expected.dead_letters.values())
    if spec.max_dead_letters is not None and n_dead > spec.max_dead_letters:
        assert (result.status, result.exit_code) == ("partial", mg.ExitCode.PARTIAL)
    else:
        assert (result.status, result.exit_code) == ("succeeded", mg.ExitCode.OK), result.error
    assert result.error is None
    assert consumed == expected.consumed
    for s in spec.stages:
        got = {f: stages[s.name][f] for f in FIELDS}
        want = {f: expected.stages[s.name][f] for f in FIELDS}
        assert got == want, f"stage {s.name!r} ({s.execution})"
        assert stages[s.name]["failed"] == 0
    assert Counter((d.stage, d.item) for d in result.dead_letters) == expected.dead_letters
    assert result.stats.total_produced == expected.produced
    consumers = [s.name for s in spec.stages if s.kind == "consumer"]
    assert result.stats.total_consumed == sum(stages[c]["processed"] for c in consumers)
    assert result.stats.total_consumed == sum(expected.consumed.values())
