"""Pure pieces of the runner: spec validation and argv, backoff, line splitting, codes."""

from __future__ import annotations

import os
import random
import signal
import sys
from collections.abc import Iterator

import pytest

from minigun.exit_codes import DEFAULT_RETRYABLE, NEVER_RETRY, ExitCode
from minigun.runner import RunSpec
from minigun.runner.cancel import Cancellation
from minigun.runner.logs import MAX_LINE, LineBuffer, LogTail
from minigun.runner.outcome import exit_code_from_returncode, status_for
from minigun.runner.retry import backoff_delay
from minigun.runner.spec import CHILD_BOOTSTRAP
from support import wait_until


def test_spec_defaults_match_the_design() -> None:
    spec = RunSpec("pkg.mod:Cls")
    assert spec.params == {} and spec.options == {}
    assert (spec.python, spec.env, spec.cwd, spec.timeout) == (None, None, None, None)
    assert (spec.retries, spec.retry_delay, spec.retry_backoff) == (0, 1.0, 2.0)
    assert (spec.max_retry_delay, spec.retry_on, spec.grace) == (300, None, 30)
    assert spec.retryable_codes == DEFAULT_RETRYABLE


def test_spec_command_is_a_fixed_bootstrap_and_carries_nothing_of_the_run() -> None:
    spec = RunSpec(
        "pkg.mod:Cls",
        params={"day": "2026-11-28", "n": 3},
        grace=5,
        options={"execution": "inline", "max_threads": 4, "progress": False, "hud": None},
    )
    argv = spec.command()
    assert argv == [sys.executable, "-c", CHILD_BOOTSTRAP]
    assert "2026-11-28" not in " ".join(argv)


def test_spec_goes_to_the_child_as_data() -> None:
    spec = RunSpec(
        "pkg.mod:Cls",
        params={"day": "2026-11-28", "n": 3},
        grace=5,
        options={"execution": "inline", "max_threads": 4, "progress": False, "hud": None},
    )
    assert spec.child_spec() == {
        "target": "pkg.mod:Cls",
        "params": {"day": "2026-11-28", "n": 3},
        "options": {"execution": "inline", "max_threads": 4, "progress": False},
        "grace": 5.0,
        "timeout": None,
    }


def test_spec_python_selects_the_interpreter() -> None:
    assert RunSpec("a:B", python="/venvs/etl/bin/python").command()[0] == "/venvs/etl/bin/python"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"pipeline": "no_colon_no_py"},
        {"pipeline": "a:B", "params": {"x": object()}},
        {"pipeline": "a:B", "timeout": 0},
        {"pipeline": "a:B", "timeout": float("nan")},
        {"pipeline": "a:B", "retries": -1},
        {"pipeline": "a:B", "retries": 1.5},
        {"pipeline": "a:B", "grace": -1},
        {"pipeline": "a:B", "retry_backoff": 0.5},
        {"pipeline": "a:B", "retry_on": {300}},
        {"pipeline": "a:B", "options": {"bogus": 1}},
    ],
)
def test_spec_rejects_bad_values_in_the_callers_process(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RunSpec(**kwargs)  # type: ignore[arg-type]


def test_retry_on_never_includes_never_retry_codes() -> None:
    spec = RunSpec("a:B", retry_on={1, 2, 3, 99, 130, 143, 75})
    assert spec.retryable_codes == {1, 75}
    assert not spec.retryable_codes & NEVER_RETRY


def test_child_env_adds_overrides_and_removes_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEEP", "1")
    monkeypatch.setenv("DROP", "1")
    env = RunSpec("a:B", env={"NEW": "x", "DROP": None}).child_env()
    assert env["KEEP"] == "1" and env["NEW"] == "x" and "DROP" not in env
    assert env["PYTHONUNBUFFERED"] == "1"


def test_backoff_grows_exponentially_within_jitter_and_cap() -> None:
    rng = random.Random(7)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (10, 300.0), (5000, 300.0)]:
        for _ in range(50):
            delay = backoff_delay(attempt, delay=1.0, backoff=2.0, max_delay=300, rng=rng)
            assert ceiling / 2 <= delay <= ceiling


def test_backoff_jitter_varies() -> None:
    rng = random.Random(1)
    delays = {backoff_delay(3, delay=1, backoff=2, max_delay=60, rng=rng) for _ in range(20)}
    assert len(delays) > 10


def test_zero_delay_means_no_wait() -> None:
    assert backoff_delay(4, delay=0, backoff=2, max_delay=300) == 0


def test_line_buffer_splits_across_chunks_and_caps_long_lines() -> None:
    buf = LineBuffer("stdout")
    assert buf.feed(b"hel") == []
    assert buf.feed(b"lo\r\nwor") == ["hello"]
    assert buf.flush() == ["wor"]
    assert buf.flush() == []
    long = buf.feed(b"x" * (MAX_LINE * 2 + 5))
    assert [len(line) for line in long] == [MAX_LINE, MAX_LINE]
    assert buf.flush() == ["xxxxx"]


def test_log_tail_keeps_the_last_lines() -> None:
    tail = LogTail(3)
    for i in range(10):
        tail.add(str(i))
    assert tail.text() == "7\n8\n9"


@pytest.mark.parametrize(
    ("returncode", "code"),
    [(0, 0), (1, 1), (75, 75), (-9, 137), (-15, 143), (-2, 130), (-11, 139), (200, 200)],
)
def test_returncode_mapping(returncode: int, code: int) -> None:
    assert exit_code_from_returncode(returncode) == code


def test_every_contract_code_has_a_status() -> None:
    statuses = {code: status_for(code) for code in ExitCode}
    assert statuses[ExitCode.OK] == "succeeded"
    assert statuses[ExitCode.SKIPPED] == "skipped"
    assert statuses[ExitCode.TIMEOUT] == "timeout"
    assert statuses[ExitCode.TERMINATED] == statuses[ExitCode.INTERRUPTED] == "stopped"
    assert status_for(42) == "failed"


@pytest.fixture
def sigterm_received() -> Iterator[list[int]]:
    """The caller's own SIGTERM handler, recording what reaches it."""
    received: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_signal_too_late_to_cancel_is_handed_to_the_callers_handler(
    sigterm_received: list[int],
) -> None:
    with Cancellation() as cancellation:
        os.kill(os.getpid(), signal.SIGTERM)
        wait_until(lambda: cancellation.requested, what="the signal to arrive")
        assert cancellation.requested and sigterm_received == []
    assert sigterm_received == [signal.SIGTERM]


def test_a_signal_that_cancelled_the_run_is_not_handed_on(sigterm_received: list[int]) -> None:
    with Cancellation() as cancellation:
        os.kill(os.getpid(), signal.SIGTERM)
        wait_until(lambda: cancellation.requested, what="the signal to arrive")
        cancellation.consume()
    assert sigterm_received == []
