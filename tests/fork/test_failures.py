"""Failures in fork stages: exceptions, crashed children, overruns, unpicklable data.

Each goes through ``retries`` and ``on_error`` exactly like an exception in a
thread stage, with the parent told what happened (the original exception, or the
signal / exit status of the child that died).
"""

from __future__ import annotations

import ctypes
import faulthandler
import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import minigun as mg
from support import assert_conserved

FORKS = ["cow_fork", "ipc_fork"]


class RowMissing(LookupError):
    pass


class NeedsTwoArgs(Exception):
    """Pickles, but cannot be rebuilt from its args: the parent gets mg.RemoteError."""

    def __init__(self, a: int, b: int) -> None:
        super().__init__(f"a={a} b={b}")


def first_time(marker: Path) -> bool:
    """True once per marker file, across processes (O_EXCL creation)."""
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def _run(stage: Any, kind: str, n: int = 12, **options: Any) -> tuple[mg.RunResult, list[Any]]:
    """Run ``numbers(n) -> stage (a fork stage) -> save`` and return the result and outputs."""
    seen: list[Any] = []

    class Pipe(mg.Pipeline):
        @mg.producer
        def numbers(self) -> Any:
            yield from range(n)

        @mg.processor(execution=kind, processes=2, retry_delay=0.01, **options)
        def work(self, x: int) -> Any:
            return stage(x)

        @mg.consumer
        def save(self, x: Any) -> None:
            seen.append(x)

    result = Pipe().run()
    assert_conserved(result)
    return result, seen


# ---------------------------------------------------------------------- exceptions


@pytest.mark.parametrize("kind", FORKS)
def test_exception_in_child_reaches_parent_with_type_message_and_traceback(kind: str) -> None:
    def stage(x: int) -> int:
        if x == 7:
            raise RowMissing(f"no row {x}")
        return x

    result, _ = _run(stage, kind)
    assert result.status == "failed"
    assert type(result.error) is RowMissing
    assert str(result.error) == "no row 7"
    assert result.error_stage == "work"
    assert "raise RowMissing" in (result.error_traceback or "")
    assert "in stage" in (result.error_traceback or "")
    assert result.stats.stages["work"]["failed"] == 1


@pytest.mark.parametrize("kind", FORKS)
def test_dead_letter_keeps_the_child_traceback_and_the_rest_carries_on(kind: str) -> None:
    def stage(x: int) -> int:
        if x % 4 == 1:
            raise RowMissing(f"no row {x}")
        return x

    result, seen = _run(stage, kind, on_error="dead_letter")
    assert result.status == "succeeded"
    assert sorted(seen) == [x for x in range(12) if x % 4 != 1]
    letters = sorted(result.dead_letters, key=lambda d: d.item)
    assert [d.item for d in letters] == [1, 5, 9]
    assert letters[0].error == "RowMissing: no row 1"
    assert "raise RowMissing" in letters[0].traceback
    assert result.stats.stages["work"]["dead_letters"] == 3


@pytest.mark.parametrize("kind", FORKS)
def test_exception_that_cannot_be_rebuilt_arrives_as_remote_error(kind: str) -> None:
    def stage(x: int) -> int:
        if x == 3:
            raise NeedsTwoArgs(1, 2)
        return x

    result, _ = _run(stage, kind)
    assert result.status == "failed"
    assert isinstance(result.error, mg.RemoteError)
    assert result.error.remote_type.endswith("NeedsTwoArgs")
    assert "a=1 b=2" in str(result.error)
    assert "raise NeedsTwoArgs" in result.error.remote_traceback


@pytest.mark.parametrize("kind", FORKS)
def test_failing_item_is_retried_then_succeeds(kind: str, tmp_path: Path) -> None:
    def stage(x: int) -> int:
        if x == 5 and (first_time(tmp_path / "a") or first_time(tmp_path / "b")):
            raise RowMissing("not yet")
        return x

    result, seen = _run(stage, kind, retries=2)
    assert result.status == "succeeded", result.error
    assert sorted(seen) == list(range(12))
    assert result.stats.stages["work"]["retries"] == 2
    assert result.stats.stages["work"]["errors"] == 0


@pytest.mark.parametrize("kind", FORKS)
def test_skip_raised_in_a_child_skips_the_run(kind: str) -> None:
    def stage(x: int) -> int:
        if x == 2:
            raise mg.Skip("nothing to do today")
        return x

    result, _ = _run(stage, kind, retries=3)
    assert result.status == "skipped"
    assert result.exit_code == mg.ExitCode.SKIPPED
    assert result.stats.stages["work"]["retries"] == 0


# ---------------------------------------------------------------------- children that die


@pytest.mark.parametrize("kind", FORKS)
def test_os_exit_in_a_stage_is_an_item_failure_with_the_exit_status(kind: str) -> None:
    def stage(x: int) -> int:
        if x == 4:
            os._exit(3)
        return x

    result, seen = _run(stage, kind, on_error="dead_letter")
    assert result.status == "succeeded"
    assert sorted(seen) == [x for x in range(12) if x != 4]
    (letter,) = result.dead_letters
    assert letter.item == 4
    assert letter.error.startswith("ChildDied: ")
    assert "exited with status 3" in letter.error
    assert "'work'" in letter.error


def _segfault() -> None:
    """Crash this (forked) process with SIGSEGV, without pytest's faulthandler dump in the log."""
    faulthandler.disable()
    ctypes.string_at(0)


@pytest.mark.parametrize("kind", FORKS)
def test_segfault_in_a_stage_names_the_signal(kind: str) -> None:
    def stage(x: int) -> int:
        if x == 6:
            _segfault()
        return x

    result, seen = _run(stage, kind, on_error="skip")
    assert result.status == "succeeded"
    assert sorted(seen) == [x for x in range(12) if x != 6]
    assert result.stats.stages["work"]["skipped"] == 1
    assert result.stats.stages["work"]["errors"] == 1


@pytest.mark.parametrize("kind", FORKS)
def test_crash_with_raise_policy_fails_the_run_with_child_died(kind: str) -> None:
    def stage(x: int) -> int:
        if x == 6:
            _segfault()
        return x

    result, _ = _run(stage, kind)
    assert result.status == "failed"
    assert isinstance(result.error, mg.ChildDied)
    assert "SIGSEGV" in str(result.error)


@pytest.mark.parametrize("kind", FORKS)
def test_child_killed_mid_item_is_retried_and_the_run_succeeds(kind: str, tmp_path: Path) -> None:
    """kill -9 from outside while the child is inside the item; the retry gets through."""
    pidfile = tmp_path / "pid"

    def stage(x: int) -> int:
        if x == 3 and first_time(tmp_path / "first"):
            pidfile.write_text(str(os.getpid()))
            time.sleep(300)  # killed long before
        return x

    def killer() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if pidfile.exists() and pidfile.read_text():
                os.kill(int(pidfile.read_text()), signal.SIGKILL)
                return
            time.sleep(0.01)

    thread = threading.Thread(target=killer)
    thread.start()
    started = time.monotonic()
    result, seen = _run(stage, kind, retries=1)
    thread.join()
    assert result.status == "succeeded", result.error
    assert time.monotonic() - started < 120  # not the 300 s the killed item would sleep
    assert sorted(seen) == list(range(12))
    assert result.stats.stages["work"]["retries"] == 1


@pytest.mark.parametrize("kind", FORKS)
def test_child_killed_mid_item_without_retries_reports_sigkill(kind: str, tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"

    def stage(x: int) -> int:
        if x == 3:
            pidfile.write_text(str(os.getpid()))
            time.sleep(60)
        return x

    def killer() -> None:
        while not (pidfile.exists() and pidfile.read_text()):
            time.sleep(0.01)
        os.kill(int(pidfile.read_text()), signal.SIGKILL)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    result, seen = _run(stage, kind, on_error="dead_letter")
    thread.join(5)
    (letter,) = result.dead_letters
    assert letter.item == 3
    assert "SIGKILL" in letter.error
    assert sorted(seen) == [x for x in range(12) if x != 3]


def test_ipc_fork_respawns_a_dead_worker_and_keeps_state_in_the_others(tmp_path: Path) -> None:
    """Worker state survives across items; a crash costs only the crashed worker's state."""
    forks = tmp_path / "forks"

    class Stateful(mg.Pipeline):
        def __init__(self) -> None:
            self.seen: list[tuple[int, int, int]] = []
            self.count = 0

        @mg.after_fork
        def started(self) -> None:
            with open(forks, "a") as f:
                f.write(f"{os.getpid()}\n")

        @mg.producer
        def numbers(self) -> Any:
            yield from range(40)

        @mg.processor(execution="ipc_fork", processes=2, chunk=1, on_error="dead_letter")
        def work(self, x: int) -> tuple[int, int, int]:
            time.sleep(0.005)  # both workers get items
            if x == 20:
                os._exit(9)
            self.count += 1  # per worker: survives between items
            return (os.getpid(), self.count, x)

        @mg.consumer
        def save(self, row: tuple[int, int, int]) -> None:
            self.seen.append(row)

    pipeline = Stateful()
    result = pipeline.run()
    assert result.status == "succeeded", result.error
    assert sorted(x for _, _, x in pipeline.seen) == [x for x in range(40) if x != 20]
    assert len(forks.read_text().split()) == 3  # two workers, one of them respawned once
    by_pid: dict[int, list[int]] = {}
    for pid, count, _ in pipeline.seen:
        by_pid.setdefault(pid, []).append(count)
    for counts in by_pid.values():
        assert sorted(counts) == list(range(1, len(counts) + 1))
    assert max(len(c) for c in by_pid.values()) > 1
    assert pipeline.count == 0  # the parent's copy never changed
    assert "exited with status 9" in result.dead_letters[0].error


@pytest.mark.parametrize("kind", FORKS)
def test_a_crash_inside_a_big_chunk_blames_one_item_and_loses_no_output(kind: str) -> None:
    """Trivial items travel in large chunks (both executors size them adaptively):
    the items around the crashing one are run again (their results died with the
    child), none is lost or duplicated."""

    def stage(x: int) -> int:
        if x == 1234:
            os._exit(5)
        return x

    result, seen = _run(stage, kind, n=5000, on_error="dead_letter")
    assert result.status == "succeeded"
    assert Counter(seen) == Counter(x for x in range(5000) if x != 1234)
    assert [d.item for d in result.dead_letters] == [1234]
    assert result.stats.stages["work"]["processed"] == 4999


@pytest.mark.parametrize("kind", FORKS)
def test_a_stage_that_always_crashes_ends_instead_of_respawning_forever(kind: str) -> None:
    def stage(x: int) -> int:
        os._exit(1)

    started = time.monotonic()
    result, seen = _run(stage, kind, n=6, retries=1, on_error="skip")
    assert result.status == "succeeded"
    assert seen == []
    assert result.stats.stages["work"]["skipped"] == 6
    assert result.stats.stages["work"]["retries"] == 6
    assert time.monotonic() - started < 120  # a bound on a respawn loop, not on speed


# ---------------------------------------------------------------------- timeouts


@pytest.mark.parametrize("kind", FORKS)
def test_item_timeout_kills_the_child_and_counts_a_failure(kind: str) -> None:
    def stage(x: int) -> int:
        if x == 2:
            time.sleep(300)
        return x

    started = time.monotonic()
    result, seen = _run(stage, kind, n=8, timeout=0.5, on_error="dead_letter")
    assert time.monotonic() - started < 120  # not the 300 s the item would sleep
    assert result.status == "succeeded"
    assert sorted(seen) == [x for x in range(8) if x != 2]
    (letter,) = result.dead_letters
    assert letter.item == 2
    assert letter.error.startswith("ItemTimeout: ")
    assert "0.5s" in letter.error


@pytest.mark.parametrize("kind", FORKS)
def test_item_timeout_with_raise_policy_fails_the_run(kind: str) -> None:
    def stage(x: int) -> int:
        if x == 1:
            time.sleep(300)
        return x

    started = time.monotonic()
    result, _ = _run(stage, kind, n=4, timeout=0.3)
    assert time.monotonic() - started < 120  # not the 300 s the item would sleep
    assert result.status == "failed"
    assert isinstance(result.error, mg.ItemTimeout)


def test_timeout_applies_per_item_not_per_chunk() -> None:
    """Ten items of 0.2 s in one cow_fork child with timeout 1 s: none overruns (the
    chunk takes 2 s; each item leaves 0.8 s to a loaded machine)."""

    def stage(x: int) -> int:
        time.sleep(0.2)
        return x

    result, seen = _run(stage, "cow_fork", n=10, chunk=10, timeout=1.0)
    assert result.status == "succeeded", result.error
    assert sorted(seen) == list(range(10))


# ---------------------------------------------------------------------- pickling


PARENT_PID = os.getpid()


def _rebuild_only_in_a_child() -> Any:
    if os.getpid() == PARENT_PID:
        raise ValueError("this object cannot be rebuilt in the parent")
    return OnlyInAChild()


class OnlyInAChild:
    """Pickles in the child; unpickling it in the parent raises."""

    def __reduce__(self) -> Any:
        return (_rebuild_only_in_a_child, ())


@pytest.mark.parametrize("kind", FORKS)
def test_a_result_the_parent_cannot_unpickle_fails_only_its_item(kind: str) -> None:
    """The broken reply cannot say which item it came from: the chunk's items go again
    one by one, and only the culprit fails, naming the stage."""

    def stage(x: int) -> Any:
        return OnlyInAChild() if x == 77 else x

    result, seen = _run(stage, kind, n=400, on_error="dead_letter")
    assert result.status == "succeeded", result.error
    assert Counter(seen) == Counter(x for x in range(400) if x != 77)
    (letter,) = result.dead_letters
    assert letter.item == 77
    assert letter.error.startswith("TypeError: stage 'work': a result sent back")
    assert "cannot be rebuilt in the parent" in letter.error


@pytest.mark.parametrize("kind", FORKS)
def test_unpicklable_result_is_an_item_failure_naming_stage_and_type(kind: str) -> None:
    def stage(x: int) -> Any:
        if x == 3:
            return threading.Lock()
        return x

    result, seen = _run(stage, kind, on_error="dead_letter")
    assert sorted(seen) == [x for x in range(12) if x != 3]
    (letter,) = result.dead_letters
    assert letter.item == 3
    assert letter.error.startswith("TypeError: stage 'work'")
    assert "lock" in letter.error


def test_unpicklable_item_fails_in_ipc_fork_with_a_clear_error() -> None:
    seen: list[Any] = []

    class Locks(mg.Pipeline):
        @mg.producer
        def things(self) -> Any:
            yield from (1, threading.Lock(), 3)

        @mg.processor(execution="ipc_fork", processes=2, on_error="dead_letter")
        def work(self, x: Any) -> Any:
            return x

        @mg.consumer
        def save(self, x: Any) -> None:
            seen.append(x)

    result = Locks().run()
    assert sorted(seen) == [1, 3]
    (letter,) = result.dead_letters
    assert "stage 'work'" in letter.error
    assert "_thread.lock" in letter.error
    assert "cow_fork" in letter.error  # the way out
    assert_conserved(result)


def test_cow_fork_needs_no_pickling_of_items() -> None:
    seen: list[Any] = []

    class Locks(mg.Pipeline):
        @mg.producer
        def things(self) -> Any:
            yield from (threading.Lock(), threading.Lock())

        @mg.processor(execution="cow_fork", processes=2)
        def work(self, lock: Any) -> str:
            return type(lock).__name__

        @mg.consumer
        def save(self, x: Any) -> None:
            seen.append(x)

    result = Locks().run()
    assert result.status == "succeeded", result.error
    assert seen == ["lock", "lock"]


# ---------------------------------------------------------------------- hooks that fail


@pytest.mark.parametrize("kind", FORKS)
def test_after_fork_hook_error_fails_the_items_and_the_run(kind: str) -> None:
    class BadSetup(mg.Pipeline):
        @mg.after_fork
        def connect(self) -> None:
            raise ConnectionError("database is down")

        @mg.producer
        def numbers(self) -> Any:
            yield from range(5)

        @mg.processor(execution=kind, processes=2)
        def work(self, x: int) -> int:
            return x

    result = BadSetup().run()
    assert result.status == "failed"
    assert isinstance(result.error, ConnectionError)
    assert "database is down" in str(result.error)
    assert_conserved(result)


@pytest.mark.parametrize("kind", FORKS)
def test_after_fork_hook_that_kills_the_child_does_not_loop(kind: str) -> None:
    class DiesInSetup(mg.Pipeline):
        @mg.after_fork
        def connect(self) -> None:
            os._exit(4)

        @mg.producer
        def numbers(self) -> Any:
            yield from range(5)

        @mg.processor(execution=kind, processes=2, retries=2, retry_delay=0, on_error="skip")
        def work(self, x: int) -> int:
            return x

    result = DiesInSetup().run()
    assert result.status == "succeeded"
    assert result.stats.stages["work"]["skipped"] == 5
    assert_conserved(result)


@pytest.mark.parametrize("kind", FORKS)
def test_fork_itself_failing_is_an_item_failure_that_retries_can_absorb(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fork = os.fork
    calls = {"n": 0}

    def flaky_fork() -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            raise BlockingIOError(11, "Resource temporarily unavailable")
        return real_fork()

    monkeypatch.setattr(os, "fork", flaky_fork)
    result, seen = _run(lambda x: x, kind, n=6, retries=1)
    assert result.status == "succeeded", result.error
    assert sorted(seen) == list(range(6))
    assert result.stats.stages["work"]["retries"] >= 1


def test_fork_failing_for_good_fails_the_run_with_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_fork() -> int:
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(os, "fork", no_fork)
    result, _ = _run(lambda x: x, "cow_fork", n=3)
    assert result.status == "failed"
    assert isinstance(result.error, mg.ChildDied)
    assert "cannot fork" in str(result.error)
    assert "Cannot allocate memory" in str(result.error)


@pytest.mark.parametrize("kind", FORKS)
def test_transient_error_in_a_child_ends_the_run_as_a_temporary_failure(kind: str) -> None:
    def stage(x: int) -> int:
        if x == 1:
            raise mg.TransientError("upstream API is rate limiting")
        return x

    result, _ = _run(stage, kind, on_error="skip")
    assert result.status == "failed"
    assert result.exit_code == mg.ExitCode.TEMPFAIL
    assert isinstance(result.error, mg.TransientError)


@pytest.mark.parametrize("kind", FORKS)
def test_unpicklable_routed_output_fails_only_its_item(kind: str) -> None:
    seen: list[Any] = []

    class Routes(mg.Pipeline):
        @mg.producer
        def numbers(self) -> Any:
            yield from range(6)

        @mg.processor(execution=kind, processes=2, on_error="dead_letter")
        def split(self, x: int, out: mg.Out) -> None:
            out.to("save").emit(threading.Lock() if x == 4 else x)

        @mg.consumer(from_="split")
        def save(self, x: Any) -> None:
            seen.append(x)

    result = Routes().run()
    assert sorted(seen) == [0, 1, 2, 3, 5]
    (letter,) = result.dead_letters
    assert letter.item == 4
    assert "stage 'split'" in letter.error
    assert_conserved(result)
