"""Each exit code of the contract, observed as the exit status of ``minigun run``,
through the runner (the default) and ``--in-process``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support import run_cli, target


@pytest.fixture(autouse=True)
def _in_a_temporary_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Partial writes dead letters to ./minigun-dead-letters: keep them out of the tree."""
    monkeypatch.chdir(tmp_path)


CASES = [
    ("Succeed", 0, "succeeded"),
    ("Fail", 1, "failed"),
    ("BadDefinition", 2, None),
    ("Partial", 3, "partial"),
    ("Transient", 75, "failed"),
    ("Skipped", 99, "skipped"),
    ("SelfKill", 137, None),
]


@pytest.mark.parametrize(("pipeline", "code", "status"), CASES)
def test_minigun_run_exits_with_the_contract_code(
    tmp_path: Path, pipeline: str, code: int, status: str | None
) -> None:
    result_file = tmp_path / "result.json"
    proc = run_cli("run", target(pipeline), "--result-file", str(result_file))
    assert proc.returncode == code, proc.stderr
    if status is None:
        assert not result_file.exists()
    else:
        result = json.loads(result_file.read_text())
        assert result["status"] == status
        assert result["exit_code"] == code


@pytest.mark.parametrize(("pipeline", "code", "status"), [c for c in CASES if c[0] != "SelfKill"])
def test_in_process_run_exits_with_the_contract_code(
    tmp_path: Path, pipeline: str, code: int, status: str | None
) -> None:
    result_file = tmp_path / "result.json"
    proc = run_cli("run", "--in-process", target(pipeline), "--result-file", str(result_file))
    assert proc.returncode == code, proc.stderr
    if status is not None:
        assert json.loads(result_file.read_text())["status"] == status


def test_timeout_exits_124_and_the_result_says_timeout_too(tmp_path: Path) -> None:
    result_file = tmp_path / "result.json"
    proc = run_cli(
        "run",
        target("Endless"),
        "--timeout",
        "1",
        "--grace",
        "5",
        "--result-file",
        str(result_file),
    )
    assert proc.returncode == 124, proc.stderr
    assert "timed out after 1s" in proc.stderr
    result = json.loads(result_file.read_text())
    assert (result["status"], result["exit_code"]) == ("timeout", 124)
    assert result["stop"] == {"requested_by": "timeout", "grace": 5.0, "drained": True}


def test_in_process_timeout_stops_the_run_with_124(tmp_path: Path) -> None:
    result_file = tmp_path / "result.json"
    proc = run_cli(
        "run",
        "--in-process",
        target("Endless"),
        "--timeout",
        "1",
        "--result-file",
        str(result_file),
    )
    assert proc.returncode == 124, proc.stderr
    result = json.loads(result_file.read_text())
    assert result["status"] == "timeout" and result["exit_code"] == 124


def test_retries_then_success_through_the_cli(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    proc = run_cli(
        "run", target("FlakyOnce"), "-p", f"marker={marker}", "--retries", "2", "--retry-delay", "0"
    )
    assert proc.returncode == 0, proc.stderr
    assert "attempt 1/3" in proc.stderr and "exited 1" in proc.stderr
    assert "retrying in" in proc.stderr


def test_child_stdout_goes_to_stdout_and_stderr_to_stderr() -> None:
    proc = run_cli("run", target("Succeed"), "-p", "n=3")
    assert proc.returncode == 0
    assert proc.stdout.splitlines() == ["item 0", "item 1", "item 4"]
    assert "Succeed succeeded" in proc.stderr


def test_single_successful_attempt_adds_no_runner_noise() -> None:
    proc = run_cli("run", target("Noop"), "--no-progress")
    assert proc.returncode == 0
    assert "attempt" not in proc.stderr


def test_failing_stage_traceback_is_in_the_log() -> None:
    proc = run_cli("run", target("Fail"))
    assert proc.returncode == 1
    assert "RuntimeError: boom on" in proc.stderr
