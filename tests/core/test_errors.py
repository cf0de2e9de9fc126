"""Per-item retries, timeouts and on_error policies; Skip and TransientError; dead letters."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import minigun as mg
from minigun.core import stage as stage_module
from support import assert_conserved

EXECUTIONS = ["inline", "thread"]


class Boom(RuntimeError):
    pass


def make(
    on_error: str = "raise", retries: int = 0, fail_on=lambda x: x % 10 == 3, n: int = 50, **extra
):
    class P(mg.Pipeline):
        def __init__(self) -> None:
            self.seen: list[int] = []
            self.calls: dict[int, int] = {}
            self.lock = threading.Lock()

        @mg.producer
        def src(self):
            yield from range(n)

        @mg.processor(on_error=on_error, retries=retries, retry_delay=0.001, **extra)
        def work(self, x):
            with self.lock:
                self.calls[x] = self.calls.get(x, 0) + 1
            if fail_on(x):
                raise Boom(f"bad item {x}")
            return x

        @mg.consumer
        def sink(self, x):
            self.seen.append(x)

    return P()


@pytest.mark.parametrize("execution", EXECUTIONS)
def test_raise_fails_the_run_quickly_with_the_original_exception(execution: str) -> None:
    class P(mg.Pipeline):
        @mg.producer
        def src(self):
            i = 0
            while True:  # endless: only the failure can end this run
                yield i
                i += 1

        @mg.processor
        def work(self, x):
            if x == 1000:
                raise Boom("item 1000 is bad")
            return x

        @mg.consumer
        def sink(self, x): ...

    started = time.monotonic()
    result = P().run(execution=execution)
    assert time.monotonic() - started < 60  # ends at all: the producer alone never would
    assert result.status == "failed" and result.exit_code == mg.ExitCode.FAILED
    assert isinstance(result.error, Boom) and str(result.error) == "item 1000 is bad"
    assert result.error_stage == "work"
    assert "item 1000 is bad" in (result.error_traceback or "")
    assert result.to_dict()["error"]["type"] == "Boom"
    assert_conserved(result)


@pytest.mark.parametrize("execution", EXECUTIONS)
def test_skip_policy_counts_and_continues(execution: str) -> None:
    p = make("skip")
    result = p.run(execution=execution)
    assert result.status == "succeeded"
    assert sorted(p.seen) == [x for x in range(50) if x % 10 != 3]
    stage = result.stats.stages["work"]
    assert stage.skipped == 5 and stage.errors == 5
    assert_conserved(result)


@pytest.mark.parametrize("execution", EXECUTIONS)
def test_retries_call_again_with_backoff_then_apply_policy(execution: str) -> None:
    p = make("skip", retries=2)
    result = p.run(execution=execution)
    assert all(p.calls[x] == 3 for x in range(50) if x % 10 == 3)
    assert all(p.calls[x] == 1 for x in range(50) if x % 10 != 3)
    assert result.stats.stages["work"].retries == 10
    assert_conserved(result)


def test_retry_then_success_keeps_the_item() -> None:
    attempts: dict[int, int] = {}

    def flaky(x: int) -> bool:
        attempts[x] = attempts.get(x, 0) + 1
        return attempts[x] < 2  # fails once, then works

    p = make("raise", retries=1, fail_on=flaky, n=10)
    result = p.run(execution="inline")
    assert result.ok and sorted(p.seen) == list(range(10))


def test_retry_delay_doubles(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []

    class RecordingTime:
        """The stage module's ``time``, recording the backoffs it sleeps."""

        def __getattr__(self, name: str) -> Any:
            return getattr(time, name)

        def sleep(self, seconds: float) -> None:
            slept.append(seconds)
            time.sleep(seconds)

    monkeypatch.setattr(stage_module, "time", RecordingTime())

    class P(mg.Pipeline):
        def __init__(self) -> None:
            self.times: list[float] = []

        @mg.producer
        def src(self):
            yield 1

        @mg.processor(retries=2, retry_delay=0.1, on_error="skip")
        def work(self, x):
            self.times.append(time.monotonic())
            raise Boom("always")

        @mg.consumer
        def sink(self, x): ...

    p = P()
    p.run(execution="inline")
    gaps = [b - a for a, b in zip(p.times, p.times[1:])]
    assert slept == [0.1, 0.2]
    # The attempts really were that far apart (a loaded machine only adds to it).
    assert len(gaps) == 2 and gaps[0] >= 0.09 and gaps[1] >= 0.19


@pytest.mark.parametrize("execution", EXECUTIONS)
def test_dead_letters_on_result_and_in_a_jsonl_file(execution: str, tmp_path: Path) -> None:
    p = make("dead_letter", retries=1)
    result = p.run(execution=execution, dead_letter_dir=str(tmp_path))
    assert result.status == "succeeded" and result.exit_code == 0
    assert sorted(d.item for d in result.dead_letters) == [3, 13, 23, 33, 43]
    letter = result.dead_letters[0]
    assert letter.stage == "work" and letter.attempts == 2 and "Boom" in letter.error
    assert result.dead_letter_file is not None
    lines = Path(result.dead_letter_file).read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert sorted(r["item"] for r in records) == [3, 13, 23, 33, 43]
    assert {"stage", "item", "error", "traceback", "attempts", "time"} <= set(records[0])
    assert result.to_dict()["dead_letter_count"] == 5
    assert_conserved(result)


def test_too_many_dead_letters_is_partial(tmp_path: Path) -> None:
    result = make("dead_letter").run(execution="inline", max_dead_letters=4)
    assert result.status == "partial" and result.exit_code == mg.ExitCode.PARTIAL
    within = make("dead_letter").run(execution="inline", max_dead_letters=5)
    assert within.status == "succeeded" and len(within.dead_letters) == 5


def test_replay_feeds_dead_letters_back_into_their_stage(tmp_path: Path) -> None:
    p = make("dead_letter")
    first = p.run(execution="inline", dead_letter_dir=str(tmp_path))
    assert first.dead_letter_file
    fixed = make("dead_letter", fail_on=lambda x: False)
    result = fixed.replay(first.dead_letter_file, execution="inline")
    assert result.ok
    assert sorted(fixed.seen) == [3, 13, 23, 33, 43]
    assert result.stats.total_produced == 5


def test_unserialisable_dead_letter_items_round_trip(tmp_path: Path) -> None:
    class P(mg.Pipeline):
        @mg.producer
        def src(self):
            yield {1, 2}  # a set: not JSON

        @mg.processor(on_error="dead_letter")
        def work(self, x):
            raise Boom("no")

        @mg.consumer
        def sink(self, x): ...

    result = P().run(execution="inline", dead_letter_dir=str(tmp_path))
    letters = mg.read_dead_letters(result.dead_letter_file)
    assert letters[0].item == {1, 2}


def test_bad_dead_letter_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"stage": "work", "item": 1}\nnot json\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not a dead-letter record"):
        mg.read_dead_letters(bad)
    with pytest.raises(ValueError, match="cannot read dead-letter file"):
        mg.read_dead_letters(tmp_path / "missing.jsonl")


@pytest.mark.parametrize("execution", EXECUTIONS)
def test_per_item_timeout_fails_the_item(execution: str) -> None:
    class P(mg.Pipeline):
        def __init__(self) -> None:
            self.seen: list[int] = []

        @mg.producer
        def src(self):
            yield from range(4)

        @mg.processor(timeout=0.2, on_error="skip")
        def work(self, x):
            if x == 2:
                release.wait(120)  # far beyond the timeout: the run must not wait for it
            return x

        @mg.consumer
        def sink(self, x):
            self.seen.append(x)

    release = threading.Event()
    p = P()
    started = time.monotonic()
    try:
        result = p.run(execution=execution)
        assert time.monotonic() - started < 60
    finally:
        release.set()
    assert sorted(p.seen) == [0, 1, 3]
    assert result.stats.stages["work"].skipped == 1


@pytest.mark.parametrize("execution", EXECUTIONS)
@pytest.mark.parametrize("where", ["producer", "processor", "before_run", "after_run"])
def test_skip_anywhere_ends_the_run_as_skipped(execution: str, where: str) -> None:
    class P(mg.Pipeline):
        @mg.before_run
        def setup(self):
            if where == "before_run":
                raise mg.Skip("nothing new today")

        @mg.producer
        def src(self):
            yield 1
            if where == "producer":
                raise mg.Skip("nothing new today")

        @mg.processor
        def work(self, x):
            if where == "processor":
                raise mg.Skip("nothing new today")
            return x

        @mg.consumer
        def sink(self, x): ...

        @mg.after_run
        def done(self, result):
            if where == "after_run":
                raise mg.Skip("nothing new today")

    result = P().run(execution=execution)
    assert result.status == "skipped" and result.exit_code == mg.ExitCode.SKIPPED
    assert not result.ok


@pytest.mark.parametrize("execution", EXECUTIONS)
def test_transient_error_is_a_temporary_failure_even_with_skip_policy(execution: str) -> None:
    class P(mg.Pipeline):
        @mg.producer
        def src(self):
            yield from range(5)

        @mg.processor(on_error="skip", retries=1, retry_delay=0)
        def work(self, x):
            raise mg.TransientError("API is down")

        @mg.consumer
        def sink(self, x): ...

    result = P().run(execution=execution)
    assert result.status == "failed" and result.exit_code == mg.ExitCode.TEMPFAIL
    assert isinstance(result.error, mg.TransientError)


def test_hook_failure_fails_the_run() -> None:
    class P(mg.Pipeline):
        @mg.before_run
        def connect(self):
            raise ConnectionError("db unreachable")

        @mg.producer
        def src(self):
            yield 1

        @mg.consumer
        def sink(self, x): ...

    result = P().run()
    assert result.status == "failed" and isinstance(result.error, ConnectionError)


def test_producer_failure_fails_the_run() -> None:
    class P(mg.Pipeline):
        @mg.producer
        def src(self):
            yield 1
            raise Boom("source broke")

        @mg.consumer
        def sink(self, x): ...

    result = P().run(execution="thread")
    assert result.status == "failed" and result.error_stage == "src"


def test_out_processor_return_value_warns_once() -> None:
    class P(mg.Pipeline):
        @mg.producer
        def src(self):
            yield from range(3)

        @mg.processor
        def work(self, x, out):
            out.emit(x)
            return x  # ignored

        @mg.consumer
        def sink(self, x): ...

    with pytest.warns(RuntimeWarning, match="return value is ignored") as record:
        P().run(execution="inline")
    assert len(record) == 1


def test_route_to_unknown_stage_fails_the_run_naming_it() -> None:
    class P(mg.Pipeline):
        @mg.producer
        def src(self):
            yield 1

        @mg.processor
        def work(self, x, out):
            out.to("nowhere").emit(x)

        @mg.consumer
        def sink(self, x): ...

    result = P().run(execution="thread")
    assert result.status == "failed"
    assert "out.to('nowhere') names no stage" in str(result.error)
