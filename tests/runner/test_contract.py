"""Each exit code of the contract, produced by a real pipeline in a real child and
observed through ``run_isolated``."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from minigun.runner import ExitCode, LogLine, RunOutcome, RunSpec, run_isolated
from support import child_env, read_ready, session_members, target, wait_until


@pytest.fixture(autouse=True)
def _in_a_temporary_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Partial writes dead letters to ./minigun-dead-letters: keep them out of the tree."""
    monkeypatch.chdir(tmp_path)


def spec(name: str, **kwargs: object) -> RunSpec:
    kwargs.setdefault("env", child_env())
    kwargs.setdefault("retry_delay", 0)
    return RunSpec(target(name), **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("pipeline", "code", "status", "retryable"),
    [
        ("Succeed", ExitCode.OK, "succeeded", False),
        ("Fail", ExitCode.FAILED, "failed", True),
        ("BadDefinition", ExitCode.USAGE, "usage_error", False),
        ("Partial", ExitCode.PARTIAL, "partial", False),
        ("Transient", ExitCode.TEMPFAIL, "failed", True),
        ("Skipped", ExitCode.SKIPPED, "skipped", False),
        ("SelfKill", ExitCode.KILLED, "killed", True),
    ],
)
def test_child_exit_code_is_the_outcome(
    pipeline: str, code: ExitCode, status: str, retryable: bool
) -> None:
    outcome = run_isolated(spec(pipeline))
    assert outcome.exit_code == code, outcome.log_tail
    assert outcome.status == status
    assert outcome.retryable is retryable
    assert outcome.attempts == 1
    assert outcome.ok is (code == ExitCode.OK)


def test_result_json_of_the_child_is_returned() -> None:
    outcome = run_isolated(spec("Succeed", params={"n": 4}))
    assert outcome.result is not None
    assert outcome.result["schema"] == "minigun.result/1"
    assert outcome.result["status"] == "succeeded"
    assert outcome.result["stats"]["total_produced"] == 4
    assert "item 9" in outcome.log_tail


def test_killed_child_has_no_result() -> None:
    outcome = run_isolated(spec("SelfKill"))
    assert outcome.exit_code == ExitCode.KILLED
    assert outcome.result is None


@pytest.mark.parametrize(
    "bad",
    [
        {"pipeline": "pipelines.nonexistent:Nope"},
        {"pipeline": "pipelines.contract:NoSuchClass"},
        {"pipeline": "pipelines.contract:_announce"},
        {"pipeline": "pipelines.contract:Succeed", "params": {"no_such_param": 1}},
    ],
    ids=["unknown-module", "unknown-class", "not-a-pipeline", "bad-params"],
)
def test_bad_target_or_params_is_usage_and_not_retried(bad: dict[str, object]) -> None:
    outcome = run_isolated(RunSpec(env=child_env(), retries=3, retry_delay=0, **bad))  # type: ignore[arg-type]
    assert outcome.exit_code == ExitCode.USAGE
    assert outcome.attempts == 1
    assert "minigun: error:" in outcome.log_tail
    assert "Traceback" not in outcome.log_tail


def test_missing_interpreter_is_usage() -> None:
    outcome = run_isolated(spec("Succeed", python="/nonexistent/python3", retries=2))
    assert outcome.exit_code == ExitCode.USAGE
    assert outcome.attempts == 1
    assert "cannot start" in outcome.log_tail


def test_retry_then_success(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    lines: list[str] = []
    outcome = run_isolated(
        spec("FlakyOnce", params={"marker": str(marker)}, retries=2, retry_delay=0.05),
        on_log=lines.append,
    )
    assert outcome.exit_code == ExitCode.OK, outcome.log_tail
    assert outcome.attempts == 2
    assert marker.exists()
    runner_lines = [line for line in lines if isinstance(line, LogLine) and line.stream == "runner"]
    assert any("attempt 1/3" in line and "exited 1" in line for line in runner_lines)
    assert any("attempt 2/3" in line and "exited 0" in line for line in runner_lines)
    assert any("retrying in" in line for line in runner_lines)
    # every attempt is kept, not only the last one's result
    assert [(a.attempt, a.exit_code) for a in outcome.history] == [(1, 1), (2, 0)]
    record = outcome.runner_record()
    assert record["attempts"] == 2 and record["exit_code"] == 0
    assert [a["status"] for a in record["history"]] == ["failed", "succeeded"]
    assert all(a["duration"] > 0 for a in record["history"])


def test_retryable_failure_uses_every_attempt() -> None:
    outcome = run_isolated(spec("Transient", retries=2, retry_delay=0))
    assert outcome.exit_code == ExitCode.TEMPFAIL
    assert outcome.attempts == 3
    assert outcome.retryable


@pytest.mark.parametrize("pipeline", ["Skipped", "Partial", "BadDefinition"])
def test_never_retry_codes_are_not_retried_even_if_asked(pipeline: str) -> None:
    outcome = run_isolated(spec(pipeline, retries=3, retry_on={2, 3, 99}))
    assert outcome.attempts == 1


def test_retry_on_narrows_the_retryable_codes() -> None:
    outcome = run_isolated(spec("Fail", retries=2, retry_on={75}))
    assert outcome.exit_code == ExitCode.FAILED
    assert outcome.attempts == 1
    assert not outcome.retryable


def test_on_log_gets_lines_while_the_child_runs(tmp_path: Path) -> None:
    gate = tmp_path / "gate"

    def on_log(line: str) -> None:
        if line == "waiting-for-gate":
            gate.touch()

    outcome = run_isolated(spec("Handshake", params={"gate": str(gate)}, timeout=30), on_log=on_log)
    assert outcome.exit_code == ExitCode.OK, outcome.log_tail


def test_a_failure_reaches_the_caller_as_an_error_record_with_its_traceback() -> None:
    lines: list[LogLine] = []
    run_isolated(spec("Fail"), on_log=lines.append)
    assert {"log", "runner"} <= {line.stream for line in lines}
    failure = [line for line in lines if "boom on" in line and "Traceback" in line]
    assert failure and failure[0].stream == "log" and failure[0].level == logging.ERROR


def test_log_lines_keep_their_stream_level_logger_and_time() -> None:
    lines: list[LogLine] = []
    before = time.time()
    outcome = run_isolated(spec("Chatty"), on_log=lines.append)
    assert outcome.exit_code == ExitCode.OK, outcome.log_tail
    by_text = {str(line): line for line in lines}
    assert by_text["printed"].stream == "stdout" and by_text["printed"].level == logging.INFO
    assert by_text["warned"].stream == "stderr" and by_text["warned"].level == logging.WARNING
    logged = by_text["logged at warning"]
    assert (logged.stream, logged.level, logged.logger) == ("log", logging.WARNING, "chatty")
    assert before <= logged.created <= time.time()
    assert by_text["logged at info"].level == logging.INFO
    # A traceback printed on stderr is an error, from its first line to the exception.
    assert by_text["Traceback (most recent call last):"].level == logging.ERROR
    assert by_text["ValueError: printed traceback"].level == logging.ERROR
    assert by_text["after the traceback"].level == logging.WARNING


def _cancel_when_ready(ready: Path, event: threading.Event) -> threading.Thread:
    def go() -> None:
        wait_until(ready.exists, 30, "ready file")
        event.set()

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    return thread


def test_cancel_event_stops_the_run_with_143(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    event = threading.Event()
    _cancel_when_ready(ready, event)
    outcome = run_isolated(
        spec("Endless", params={"ready": str(ready)}, grace=10, retries=2), cancel_event=event
    )
    assert outcome.exit_code == ExitCode.TERMINATED
    assert outcome.status == "stopped"
    assert outcome.cancelled
    assert not outcome.retryable
    assert outcome.attempts == 1
    # The child drained and recorded the stop itself.
    assert outcome.result is not None
    assert outcome.result["status"] == "stopped"
    assert outcome.result["exit_code"] == ExitCode.TERMINATED
    info = read_ready(ready)
    assert session_members(info["sid"]) == []


def test_cancel_reaches_every_process_of_the_group(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    event = threading.Event()
    _cancel_when_ready(ready, event)
    grace = 1.0
    outcome = run_isolated(
        spec("SleepyWithChildren", params={"ready": str(ready)}, grace=grace),
        cancel_event=event,
    )
    assert outcome.exit_code == ExitCode.TERMINATED
    info = read_ready(ready)
    assert session_members(info["sid"]) == []
    assert outcome.duration < 50  # not the 60 s the stage sleeps


def test_cancel_event_from_another_thread_while_not_in_main_thread(tmp_path: Path) -> None:
    """Adapters call the runner from worker threads: no signal handlers, event still works."""
    ready = tmp_path / "ready"
    event = threading.Event()
    _cancel_when_ready(ready, event)
    box: list[RunOutcome] = []
    worker = threading.Thread(
        target=lambda: box.append(
            run_isolated(spec("Endless", params={"ready": str(ready)}), cancel_event=event)
        )
    )
    worker.start()
    worker.join(30)
    assert box and box[0].exit_code == ExitCode.TERMINATED


def test_signal_handlers_are_restored() -> None:
    before = (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT))
    run_isolated(spec("Noop"))
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_child_runs_in_its_own_session(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    event = threading.Event()
    _cancel_when_ready(ready, event)
    run_isolated(spec("Endless", params={"ready": str(ready)}), cancel_event=event)
    info = read_ready(ready)
    assert info["sid"] == info["pid"] == info["pgid"]
    assert info["sid"] != os.getsid(0)


def test_cancel_before_start_spawns_nothing() -> None:
    event = threading.Event()
    event.set()
    outcome = run_isolated(spec("Succeed"), cancel_event=event)
    assert outcome.exit_code == ExitCode.TERMINATED
    assert outcome.attempts == 0 and outcome.cancelled


def test_cancel_during_backoff_ends_the_wait(tmp_path: Path) -> None:
    event = threading.Event()
    lines: list[str] = []

    def on_log(line: str) -> None:
        lines.append(line)
        if line.startswith("minigun: retrying in"):
            threading.Timer(0.2, event.set).start()

    outcome = run_isolated(
        spec("Fail", retries=3, retry_delay=30, max_retry_delay=30),
        on_log=on_log,
        cancel_event=event,
    )
    assert outcome.exit_code == ExitCode.TERMINATED
    assert outcome.attempts == 1 and outcome.cancelled
    assert outcome.duration < 25  # not the 30 s backoff


def test_cwd_resolves_a_relative_file_target(tmp_path: Path) -> None:
    (tmp_path / "job.py").write_text(
        "import minigun as mg\n"
        "class Job(mg.Pipeline):\n"
        "    @mg.producer\n    def p(self):\n        yield 'from cwd'\n"
        "    @mg.consumer\n    def c(self, x):\n        print(x)\n"
    )
    outcome = run_isolated(RunSpec("job.py", cwd=tmp_path, env=child_env()))
    assert outcome.exit_code == ExitCode.OK, outcome.log_tail
    assert "from cwd" in outcome.log_tail


def test_python_selects_the_childs_interpreter(tmp_path: Path) -> None:
    """A pipeline may live in another virtualenv: the child runs ``spec.python``."""
    import stat
    import sys

    marker = tmp_path / "used"
    wrapper = tmp_path / "venv-python"
    wrapper.write_text(f'#!/bin/sh\necho "$@" > {marker}\nexec {sys.executable} "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    outcome = run_isolated(spec("Noop", python=str(wrapper)))
    assert outcome.exit_code == ExitCode.OK, outcome.log_tail
    assert marker.read_text().startswith("-c import sys")
