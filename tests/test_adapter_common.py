"""What every adapter shows of a run (``adapters._common``), without any orchestrator."""

from __future__ import annotations

import logging

import pytest

from minigun.adapters._common import describe_outcome, outcome_summary, relay_to
from minigun.runner import LogLine, RunOutcome


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
