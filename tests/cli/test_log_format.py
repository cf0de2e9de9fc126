"""``--log-format json``: every line a log router reads is one JSON object that keeps
the level, logger and time each record had where it was made (in the runner's child)."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

import pytest

from minigun.cli import _runs_a_child
from support import full_env, run_cli, target


def _records(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_every_line_is_json_with_the_records_level_logger_and_time() -> None:
    before = time.time()
    proc = run_cli("--log-format", "json", "run", target("Chatty"))
    after = time.time()
    assert proc.returncode == 0, proc.stderr
    out, err = _records(proc.stdout), _records(proc.stderr)  # each line parses
    records = out + err
    assert {r["run_id"] for r in records} == {records[0]["run_id"]}
    assert {r["pipeline"] for r in records} == {target("Chatty")}
    for record in records:
        assert {"time", "level", "logger", "message"} <= set(record)
        made = datetime.fromisoformat(record["time"].replace("Z", "+00:00")).timestamp()
        assert before - 1 <= made <= after + 1

    def find(message: str) -> dict[str, Any]:
        return next(r for r in records if r["message"] == message)

    assert find("printed") == {**find("printed"), "stream": "stdout", "level": "INFO"}
    assert find("warned")["stream"] == "stderr" and find("warned")["level"] == "WARNING"
    assert find("logged at info") == {
        **find("logged at info"),
        "logger": "chatty",
        "level": "INFO",
    }
    assert find("logged at warning")["level"] == "WARNING"
    assert find("ValueError: printed traceback")["level"] == "ERROR"
    summary = next(r for r in err if r["logger"] == "minigun.run")
    assert "Chatty succeeded" in summary["message"] and summary["level"] == "INFO"


def test_a_failure_is_logged_at_error() -> None:
    proc = run_cli("--log-format", "json", "run", target("Fail"))
    assert proc.returncode == 1
    levels = {r["level"] for r in _records(proc.stderr)}
    assert "ERROR" in levels


def test_the_environment_chooses_the_format_too() -> None:
    proc = run_cli("run", target("Noop"), env=full_env(MINIGUN_LOG_FORMAT="json"))
    assert proc.returncode == 0, proc.stderr
    assert _records(proc.stderr)


def test_text_is_the_default_and_reads_as_before() -> None:
    proc = run_cli("run", target("Chatty"))
    assert proc.returncode == 0, proc.stderr
    assert "printed" in proc.stdout.splitlines()
    lines = proc.stderr.splitlines()
    assert "warned" in lines and "logged at warning" in lines
    assert any(line.startswith("minigun: Chatty succeeded") for line in lines)


def test_a_bad_format_is_a_usage_error() -> None:
    proc = run_cli("--log-format", "yaml", "run", target("Noop"))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "yaml" in proc.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--log-format", "json", "run", "a.py:P"],
        ["--log-format=json", "run", "a.py:P"],
    ],
)
def test_the_group_option_does_not_stop_the_early_child_start(args: list[str]) -> None:
    assert _runs_a_child(args)
