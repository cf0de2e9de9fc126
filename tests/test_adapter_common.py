"""What every adapter shows of a run (``adapters._common``), without any orchestrator."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from minigun.adapters._common import describe_outcome, outcome_summary, relay_to, run_cancellable
from minigun.runner import LogLine, RunOutcome, RunSpec
from support import child_env, read_ready, target


def _outcome(result: dict[str, object]) -> RunOutcome:
    return RunOutcome(
        exit_code=0,
        status="succeeded",
        attempts=1,
        duration=1.5,
        result=result,
        log_tail="",
        retryable=False,
    )


def test_every_adapter_names_the_dead_letters_and_their_file() -> None:
    outcome = _outcome(
        {
            "status": "succeeded",
            "dead_letter_count": 100,
            "dead_letter_file": "/data/dl/Etl-1.jsonl",
            "stats": {"total_produced": 100, "total_consumed": 0},
        }
    )
    assert outcome_summary(outcome)["dead_letter_file"] == "/data/dl/Etl-1.jsonl"
    line = describe_outcome("etl:Etl", outcome)
    assert "100 dead letter(s) in /data/dl/Etl-1.jsonl" in line


def test_no_dead_letters_no_mention() -> None:
    outcome = _outcome({"status": "succeeded", "dead_letter_count": 0, "stats": {}})
    assert "dead letter" not in describe_outcome("etl:Etl", outcome)


def test_relay_to_logs_each_line_at_its_own_level(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("platform")
    relay = relay_to(logger)
    with caplog.at_level(logging.DEBUG, logger="platform"):
        relay(LogLine("Traceback (most recent call last):", "stderr", level=logging.ERROR))
        relay(LogLine("progress", "log", level=logging.INFO))
        relay("a plain string")
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.ERROR, "Traceback (most recent call last):"),
        (logging.INFO, "progress"),
        (logging.INFO, "a plain string"),
    ]


class _TaskKilled(Exception):
    """What an orchestrator raises into its task's thread to end it."""


def test_lines_keep_flowing_to_the_platform_while_a_cancelled_pipeline_drains(
    tmp_path: Path,
) -> None:
    ready = tmp_path / "ready"
    spec = RunSpec(target("SlowDrain"), params={"ready": str(ready)}, env=child_env(), grace=30)
    seen: list[tuple[float, str]] = []

    def on_log(line: str) -> None:
        seen.append((time.monotonic(), str(line)))

    def kill_task(signum: int, frame: object) -> None:
        raise _TaskKilled

    previous = signal.signal(signal.SIGUSR1, kill_task)
    killer = threading.Thread(
        target=lambda: (read_ready(ready), os.kill(os.getpid(), signal.SIGUSR1)), daemon=True
    )
    killer.start()
    try:
        with pytest.raises(_TaskKilled):
            run_cancellable(spec, on_log=on_log)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    stopped = next(t for t, line in seen if "stopping" in line)
    drained = [t for t, line in seen if line.startswith("consumed") and t > stopped]
    assert len(drained) >= 4, seen
    # Relayed as they came, over the drain (about 2 s), not all at once at its end.
    assert drained[-1] - drained[0] > 0.5, seen


def test_build_spec_takes_runner_settings_by_name_with_their_declared_defaults() -> None:
    from minigun.adapters._common import RUNNER_SETTINGS, RunnerSettings, build_spec

    spec = build_spec("m:C", {"a": 1}, timeout=5, execution="inline")
    assert spec.timeout == 5 and spec.options == {"execution": "inline"}
    assert spec.grace == RunnerSettings.grace and spec.retries == RunnerSettings.runner_retries
    assert len(RUNNER_SETTINGS) == 10
    with pytest.raises(TypeError, match="unknown runner setting"):
        build_spec("m:C", graec=3)
