"""Every definition mistake is a PipelineDefinitionError naming the stage and the fix,
raised before anything runs."""

from __future__ import annotations

import pytest

import minigun as mg

ran: list[str] = []


def check(pipeline: mg.Pipeline, *fragments: str) -> None:
    ran.clear()
    with pytest.raises(mg.PipelineDefinitionError) as info:
        pipeline.run()
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    assert ran == [], "nothing may run before validation passes"
    assert info.value.exit_code == mg.ExitCode.USAGE


class Base(mg.Pipeline):
    @mg.before_run
    def mark(self):
        ran.append("before_run")


def test_unknown_stage_in_to() -> None:
    class P(Base):
        @mg.producer(to="nowhere")
        def src(self):
            yield 1

        @mg.consumer
        def sink(self, x): ...

    check(P(), "stage 'src'", "unknown stage 'nowhere'", "sink")


def test_unknown_stage_in_from() -> None:
    class P(Base):
        @mg.producer
        def src(self):
            yield 1

        @mg.consumer(from_=["src", "ghost"])
        def sink(self, x): ...

    check(P(), "stage 'sink'", "unknown stage 'ghost'")


def test_producer_with_inputs() -> None:
    class P(Base):
        @mg.producer
        def a(self):
            yield 1

        @mg.producer(from_="a")
        def b(self):
            yield 2

        @mg.consumer
        def sink(self, x): ...

    check(P(), "stage 'b'", "a producer takes no input")


def test_route_to_a_producer() -> None:
    class P(Base):
        @mg.producer
        def a(self):
            yield 1

        @mg.processor(to="a")
        def loop(self, x):
            return x

    check(P(), "stage 'loop'", "producer 'a'")


def test_consumer_with_outputs() -> None:
    class P(Base):
        @mg.producer
        def src(self):
            yield 1

        @mg.consumer(to="other")
        def sink(self, x): ...

        @mg.consumer
        def other(self, x): ...

    check(P(), "stage 'sink'", "a consumer has no outputs")


def test_from_names_a_consumer() -> None:
    class P(Base):
        @mg.producer
        def src(self):
            yield 1

        @mg.consumer
        def sink(self, x): ...

        @mg.consumer(from_="sink")
        def other(self, x): ...

    check(P(), "stage 'other'", "from_= names consumer 'sink'")


def test_unreachable_stage() -> None:
    class P(Base):
        @mg.producer
        def src(self):
            yield 1

        @mg.consumer
        def sink(self, x): ...

        @mg.consumer
        def orphan(self, x): ...

    check(P(), "stage 'orphan'", "unreachable", "from_=")


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"threads": 0}, "threads=0 is invalid"),
        ({"threads": "4"}, "threads='4' is invalid"),
        ({"execution": "threads"}, "did you mean 'thread'"),
        ({"on_error": "ignore"}, "on_error='ignore' is invalid"),
        ({"retries": -1}, "retries=-1 is invalid"),
        ({"retry_delay": -0.5}, "retry_delay=-0.5 is invalid"),
        ({"timeout": 0}, "timeout=0 is invalid"),
        ({"queue_size": 0}, "queue_size=0 is invalid"),
        ({"thread": 4}, "unknown option 'thread'"),
        ({"processes": 2, "max": 3}, "not both"),
    ],
)
def test_bad_option_values(options: dict, fragment: str) -> None:
    class P(Base):
        @mg.producer
        def src(self):
            yield 1

        @mg.processor(**options)
        def work(self, x):
            return x

        @mg.consumer
        def sink(self, x): ...

    check(P(), "stage 'work'", fragment)


def test_bad_option_is_reported_even_when_overridden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINIGUN_EXECUTION", "inline")

    class P(Base):
        @mg.producer
        def src(self):
            yield 1

        @mg.processor(execution="cow_frok")
        def work(self, x):
            return x

        @mg.consumer
        def sink(self, x): ...

    check(P(), "stage 'work'", "did you mean 'cow_fork'")


@pytest.mark.parametrize(
    ("kind", "fragment"),
    [
        ("producer", "a producer takes (self)"),
        ("processor", "a processor takes"),
        ("consumer", "consumers have no outputs"),
    ],
)
def test_wrong_method_signature(kind: str, fragment: str) -> None:
    def bad(self, a, b, c):  # fits no stage shape
        return None

    def good_src(self):
        yield 1

    def good_sink(self, x):
        return None

    body = {"src": mg.producer(good_src), "sink": mg.consumer(good_sink)}
    if kind == "producer":
        body = {"src": mg.producer(bad), "sink": mg.consumer(good_sink)}
    elif kind == "processor":
        body = {
            "src": mg.producer(good_src),
            "mid": mg.processor(bad),
            "sink": mg.consumer(good_sink),
        }
    else:

        def consumer_with_out(self, x, out):
            return None

        body = {"src": mg.producer(good_src), "sink": mg.consumer(consumer_with_out)}
    P = type("P", (Base,), body)
    check(P(), fragment)


def test_no_producer() -> None:
    class P(Base):
        @mg.processor
        def work(self, x):
            return x

    check(P(), "has no producer")


def test_bad_run_override() -> None:
    class P(Base):
        @mg.producer
        def src(self):
            yield 1

        @mg.consumer
        def sink(self, x): ...

    with pytest.raises(mg.PipelineDefinitionError, match="max_threads=0 is invalid"):
        P().run(max_threads=0)
    with pytest.raises(mg.PipelineDefinitionError, match="unknown setting"):
        P().run(max_thread=3)


def test_bad_environment_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINIGUN_MAX_THREADS", "lots")

    class P(Base):
        @mg.producer
        def src(self):
            yield 1

        @mg.consumer
        def sink(self, x): ...

    check(P(), "MINIGUN_MAX_THREADS='lots' is invalid")


def test_instance_attribute_hiding_a_stage() -> None:
    class P(Base):
        def __init__(self) -> None:
            self.sink = []

        @mg.producer
        def src(self):
            yield 1

        @mg.consumer
        def sink(self, x): ...

    check(P(), "stage 'sink'", "hides the stage method")


def test_same_custom_stage_object_twice() -> None:
    class Pass(mg.Stage):
        def process(self, item, out):
            out.emit(item)

    shared = Pass()

    class P(Base):
        @mg.producer
        def src(self):
            yield 1

        a = shared
        b = shared

        @mg.consumer
        def sink(self, x): ...

    check(P(), "same Stage object")


def test_bad_batch_size() -> None:
    class P(Base):
        @mg.producer
        def src(self):
            yield 1

        rows = mg.batch(0)

        @mg.consumer
        def sink(self, x): ...

    check(P(), "stage 'rows'", "size=0 is invalid")
