"""Failures on a dask stage behave as on every other executor: per-item ``retries``,
``timeout`` and ``on_error``, run-level ``Skip``/``TransientError``, things that do not
pickle -- and workers that die, which become a rerun or a failure of the item they were
on, never a hang.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("distributed")

import dask

import minigun as mg
from minigun.core.executors import dask as dask_executor
from on_dask.conftest import DaskCluster, stage_stats
from support import assert_conserved, wait_until


def _attempts(path: Path, x: int) -> int:
    """Record an attempt at ``x`` (a line in a file any worker appends to); how many so far."""
    with open(path, "a") as f:  # O_APPEND: whole short lines, any process
        f.write(f"{x}\n")
    return path.read_text().split().count(str(x))


def test_retries_run_a_failing_item_again_until_it_succeeds(
    cluster: DaskCluster, tmp_path: Path
) -> None:
    log = tmp_path / "attempts"

    class Flaky(mg.Pipeline):
        def __init__(self) -> None:
            self.sink: list[int] = []

        @mg.producer
        def numbers(self) -> Any:
            yield from range(100)

        @mg.processor(execution="dask", retries=2, retry_delay=0)
        def work(self, x: int) -> int:
            if x % 10 == 0 and _attempts(log, x) <= 2:
                raise ConnectionError(f"flaky {x}")
            return x

        @mg.consumer
        def save(self, x: int) -> None:
            self.sink.append(x)

    pipeline = Flaky()
    result = pipeline.run(dask_address=cluster.address)
    assert result.status == "succeeded", result.error
    assert sorted(pipeline.sink) == list(range(100))
    work = stage_stats(result, "work")
    assert work["retries"] == 20 and work["errors"] == 0
    assert Counter(log.read_text().split()) == {str(x): 3 for x in range(0, 100, 10)}
    assert_conserved(result)


@pytest.mark.parametrize("policy", ["skip", "dead_letter"])
def test_on_error_skip_and_dead_letter_continue_past_failed_items(
    cluster: DaskCluster, policy: str
) -> None:
    class Picky(mg.Pipeline):
        def __init__(self) -> None:
            self.sink: list[int] = []

        @mg.producer
        def numbers(self) -> Any:
            yield from range(200)

        @mg.processor(execution="dask", on_error=policy, retries=1, retry_delay=0)
        def work(self, x: int) -> int:
            if x % 7 == 0:
                raise ValueError(f"no sevens: {x}")
            return x

        @mg.consumer
        def save(self, x: int) -> None:
            self.sink.append(x)

    pipeline = Picky()
    result = pipeline.run(dask_address=cluster.address)
    assert result.status == "succeeded", result.error
    sevens = [x for x in range(200) if x % 7 == 0]
    assert sorted(pipeline.sink) == [x for x in range(200) if x % 7]
    work = stage_stats(result, "work")
    assert work["errors"] == len(sevens) and work["retries"] == len(sevens)
    if policy == "skip":
        assert work["skipped"] == len(sevens) and not result.dead_letters
    else:
        assert sorted(d.item for d in result.dead_letters) == sevens
        letter = next(d for d in result.dead_letters if d.item == 14)
        assert letter.stage == "work" and letter.attempts == 2
        assert letter.error == "ValueError: no sevens: 14"
        assert "in work" in letter.traceback  # the worker's traceback, kept
    assert_conserved(result)


def test_raise_fails_the_run_with_the_original_exception(cluster: DaskCluster) -> None:
    class Strict(mg.Pipeline):
        @mg.producer
        def numbers(self) -> Any:
            yield from range(500)

        @mg.processor(execution="dask")
        def work(self, x: int) -> int:
            if x == 123:
                raise KeyError("missing 123")
            return x

        @mg.consumer
        def save(self, x: int) -> None:
            pass

    result = Strict().run(dask_address=cluster.address)
    assert result.status == "failed" and result.exit_code == mg.ExitCode.FAILED
    assert isinstance(result.error, KeyError) and result.error_stage == "work"
    assert "missing 123" in str(result.error)
    assert_conserved(result)


def test_an_item_over_its_timeout_fails_and_the_others_go_on(cluster: DaskCluster) -> None:
    class Slow(mg.Pipeline):
        def __init__(self) -> None:
            self.sink: list[int] = []

        @mg.producer
        def numbers(self) -> Any:
            yield from range(20)

        @mg.processor(execution="dask", timeout=0.5, on_error="dead_letter")
        def work(self, x: int) -> int:
            if x == 7:
                time.sleep(5)
            return x

        @mg.consumer
        def save(self, x: int) -> None:
            self.sink.append(x)

    pipeline = Slow()
    result = pipeline.run(dask_address=cluster.address)
    assert result.status == "succeeded", result.error
    assert sorted(pipeline.sink) == [x for x in range(20) if x != 7]
    (letter,) = result.dead_letters
    assert letter.item == 7 and letter.error.startswith("ItemTimeout: stage 'work' took longer")
    assert_conserved(result)


def test_skip_and_transient_error_end_the_run_as_they_do_elsewhere(cluster: DaskCluster) -> None:
    class Controlled(mg.Pipeline):
        def __init__(self, what: str) -> None:
            self.what = what

        @mg.producer
        def numbers(self) -> Any:
            yield from range(100)

        @mg.processor(execution="dask", on_error="skip")
        def work(self, x: int) -> int:
            if x == 50:
                raise (
                    mg.Skip("nothing to do today")
                    if self.what == "skip"
                    else (mg.TransientError("the API is down"))
                )
            return x

    skipped = Controlled("skip").run(dask_address=cluster.address)
    assert skipped.status == "skipped" and skipped.exit_code == mg.ExitCode.SKIPPED
    transient = Controlled("transient").run(dask_address=cluster.address)
    assert transient.status == "failed" and transient.exit_code == mg.ExitCode.TEMPFAIL
    assert isinstance(transient.error, mg.TransientError)
    assert_conserved(transient)


def test_what_does_not_pickle_fails_its_item_only(cluster: DaskCluster) -> None:
    class Unpicklable(mg.Pipeline):
        def __init__(self) -> None:
            self.sink: list[int] = []

        @mg.producer
        def numbers(self) -> Any:
            for x in range(50):
                yield threading.Lock() if x == 3 else x

        @mg.processor(execution="dask", on_error="dead_letter")
        def work(self, x: int) -> Any:
            return threading.Lock() if x == 5 else x

        @mg.consumer
        def save(self, x: int) -> None:
            self.sink.append(x)

    pipeline = Unpicklable()
    result = pipeline.run(dask_address=cluster.address)
    assert result.status == "succeeded", result.error
    assert sorted(pipeline.sink) == [x for x in range(50) if x not in (3, 5)]
    errors = {d.item if isinstance(d.item, int) else "lock": d.error for d in result.dead_letters}
    assert set(errors) == {"lock", 5}
    assert "an item of type '_thread.lock' cannot be sent to the dask workers" in errors["lock"]
    assert "a result of type '_thread.lock' cannot be sent back from the dask worker" in errors[5]
    assert_conserved(result)


def test_an_after_fork_error_fails_the_items_with_that_error(cluster: DaskCluster) -> None:
    class BrokenSetup(mg.Pipeline):
        @mg.after_fork
        def connect(self) -> None:
            raise ConnectionRefusedError("the database is not there")

        @mg.producer
        def numbers(self) -> Any:
            yield from range(30)

        @mg.processor(execution="dask", on_error="skip")
        def work(self, x: int) -> int:
            return x

    result = BrokenSetup().run(dask_address=cluster.address)
    assert result.status == "succeeded"
    work = stage_stats(result, "work")
    assert work["skipped"] == 30 and work["processed"] == 0
    strict = type("StrictSetup", (BrokenSetup,), {})
    strict.work = mg.processor(execution="dask")(lambda self, x: x)  # type: ignore[attr-defined]
    failed = strict().run(dask_address=cluster.address)
    assert failed.status == "failed"
    assert isinstance(failed.error, ConnectionRefusedError)
    assert "the database is not there" in str(failed.error)


class HoldsALock(mg.Pipeline):
    """An instance that cannot be pickled -- unless ``before_fork`` lets go of the lock."""

    def __init__(self, release: bool = False) -> None:
        self.release = release
        self.lock: Any = threading.Lock()
        self.sink: list[int] = []

    @mg.before_fork
    def let_go(self) -> None:
        if self.release:
            self.lock = None

    @mg.producer
    def numbers(self) -> Any:
        yield from range(40)

    @mg.processor(execution="dask")
    def work(self, x: int) -> int:
        return x

    @mg.consumer
    def save(self, x: int) -> None:
        self.sink.append(x)


def test_an_instance_that_does_not_pickle_fails_the_run_and_says_what_to_do(
    cluster: DaskCluster,
) -> None:
    result = HoldsALock().run(dask_address=cluster.address)
    assert result.status == "failed" and result.error_stage == "work"
    message = str(result.error)
    assert "\n" not in message
    assert "the pipeline instance cannot be shipped to the dask workers" in message
    assert "@mg.after_fork" in message
    assert_conserved(result)
    released = HoldsALock(release=True)
    result = released.run(dask_address=cluster.address)
    assert result.status == "succeeded", result.error
    assert sorted(released.sink) == list(range(40))


def test_a_worker_sigkilled_mid_run_loses_no_item(cluster: DaskCluster) -> None:
    """dask runs the chunk the worker was on again elsewhere; its nanny starts a new
    worker. Every item comes out exactly once, none fails."""

    class Steady(mg.Pipeline):
        def __init__(self) -> None:
            self.sink: list[int] = []

        @mg.producer
        def numbers(self) -> Any:
            yield from range(400)

        @mg.processor(execution="dask")
        def work(self, x: int) -> int:
            time.sleep(0.02)
            return x * 3

        @mg.consumer
        def save(self, x: int) -> None:
            self.sink.append(x)

    pipeline = Steady()
    handle = pipeline.run(background=True, dask_address=cluster.address)
    wait_until(lambda: len(pipeline.sink) >= 40, 60, "the run to be under way")
    victim = cluster.worker_processes()[0]
    victim.send_signal(signal.SIGKILL)
    at_kill = len(pipeline.sink)
    result = handle.wait(timeout=240)
    assert result is not None, "the run did not end"
    assert at_kill < 400, "the worker died after the run's last item"
    assert result.status == "succeeded", result.error
    assert Counter(pipeline.sink) == Counter(3 * x for x in range(400))
    work = stage_stats(result, "work")
    assert work["processed"] == 400 and work["errors"] == 0
    assert_conserved(result)


def test_an_item_that_kills_its_worker_fails_alone(no_local_workers_left: None) -> None:
    """On a LocalCluster whose scheduler gives up on a task at the first worker death:
    the chunk is split, the other items go through, the killer item is a dead letter.

    One chunk at a time (``max_in_flight=1``): dask blames every task a dying worker
    holds, and with ``allowed-failures`` at 0 a task merely queued behind the killer
    would fail with it."""

    class Poison(mg.Pipeline):
        def __init__(self) -> None:
            self.sink: list[int] = []

        @mg.producer
        def numbers(self) -> Any:
            yield from range(60)

        @mg.processor(execution="dask", chunk=20, max_in_flight=1, on_error="dead_letter")
        def work(self, x: int) -> int:
            if x == 13:
                os.kill(os.getpid(), signal.SIGKILL)
            return x

        @mg.consumer
        def save(self, x: int) -> None:
            self.sink.append(x)

    pipeline = Poison()
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        result = pipeline.run()
    assert result.status == "succeeded", result.error
    assert sorted(pipeline.sink) == [x for x in range(60) if x != 13]
    (letter,) = result.dead_letters
    assert letter.item == 13 and letter.error.startswith("ChildDied: stage 'work'")
    assert stage_stats(result, "work")["cluster"]["started_by_minigun"] is True
    assert_conserved(result)


def test_a_cluster_without_workers_fails_the_run_instead_of_waiting_forever(
    workerless_scheduler: DaskCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dask_executor, "NO_WORKER_PATIENCE", 2.0)

    class Waiting(mg.Pipeline):
        @mg.producer
        def numbers(self) -> Any:
            yield from range(10)

        @mg.processor(execution="dask")
        def work(self, x: int) -> int:
            return x

    started = time.monotonic()
    result = Waiting().run(dask_address=workerless_scheduler.address)
    assert time.monotonic() - started < 60
    assert result.status == "failed"
    assert "had no worker for 2s" in str(result.error)
    assert_conserved(result)


def test_a_scheduler_that_dies_mid_run_fails_the_run_instead_of_hanging(
    own_cluster: DaskCluster,
) -> None:
    """The client tries to reconnect for dask's connect timeout, then gives up: the
    chunks out are dropped and the run fails, naming the scheduler."""

    class Steady(mg.Pipeline):
        def __init__(self) -> None:
            self.sink: list[int] = []

        @mg.producer
        def numbers(self) -> Any:
            yield from range(1000)

        @mg.processor(execution="dask", retries=1, retry_delay=0)
        def work(self, x: int) -> int:
            time.sleep(0.01)
            return x

        @mg.consumer
        def save(self, x: int) -> None:
            self.sink.append(x)

    pipeline = Steady()
    with dask.config.set({"distributed.comm.timeouts.connect": "3s"}):
        handle = pipeline.run(background=True, dask_address=own_cluster.address)
        wait_until(lambda: len(pipeline.sink) >= 20, 60, "the run to be under way")
        os.killpg(own_cluster.scheduler.pid, signal.SIGKILL)
        result = handle.wait(timeout=120)
    assert result is not None, "the run hangs on a dead scheduler"
    assert result.status == "failed" and result.error_stage == "work"
    assert f"lost the dask scheduler at {own_cluster.address}" in str(result.error)
    assert_conserved(result)


def test_an_unreachable_scheduler_fails_the_run_in_one_line() -> None:
    class Nowhere(mg.Pipeline):
        @mg.producer
        def numbers(self) -> Any:
            yield from range(10)

        @mg.processor(execution="dask", dask_address="tcp://127.0.0.1:9")
        def work(self, x: int) -> int:
            return x

    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        result = Nowhere().run()
    assert result.status == "failed" and result.error_stage == "work"
    message = str(result.error)
    assert message.startswith(
        "stage 'work': cannot connect to the dask scheduler at tcp://127.0.0.1:9"
    )
    assert "\n" not in message
    assert_conserved(result)
