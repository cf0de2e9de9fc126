"""Signals to ``minigun run``: SIGTERM drains and exits 143 with a ``stopped`` result."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

from support import alive, full_env, minigun_cli, read_ready, session_members, target


def _start(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        minigun_cli(*args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env(),
    )


@pytest.mark.parametrize("mode", [[], ["--in-process"]], ids=["runner", "in-process"])
@pytest.mark.parametrize(
    ("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"]
)
def test_signal_stops_the_run_and_writes_a_stopped_result(
    tmp_path: Path, mode: list[str], sig: int, code: int
) -> None:
    ready, result_file = tmp_path / "ready", tmp_path / "result.json"
    proc = _start(
        "run",
        *mode,
        target("Endless"),
        "-p",
        f"ready={ready}",
        "--result-file",
        str(result_file),
        "--no-progress",
    )
    try:
        info = read_ready(ready)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == code, err
    result = json.loads(result_file.read_text())
    assert result["status"] == "stopped"
    assert result["exit_code"] == code
    assert result["stats"]["total_produced"] >= 5
    if mode:  # in-process: the pipeline ran in the CLI process itself, which has exited
        assert not alive(info["pid"])
    else:  # through the runner: the child's whole session is gone
        assert session_members(info["sid"]) == []


def _sleepy_in_process(ready: Path, grace: str, result: Path) -> subprocess.Popen[str]:
    """``minigun run --in-process`` of a stage that sleeps a minute once ``ready``."""
    args = ["-p", f"ready={ready}", "-p", "sleepers=0", "--grace", grace]
    args += ["--result-file", str(result)]
    return _start("run", "--in-process", target("SleepyWithChildren"), *args)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_second_signal_exits_at_once_with_a_result_that_says_so(
    tmp_path: Path, sig: int, code: int
) -> None:
    ready, result_file = tmp_path / "ready", tmp_path / "result.json"
    proc = _sleepy_in_process(ready, "60", result_file)
    try:
        read_ready(ready)
        proc.send_signal(sig)
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(1.0)  # draining: the stage sleeps for a minute
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == code
    assert "second signal" in err
    result = json.loads(result_file.read_text())
    assert (result["status"], result["exit_code"]) == ("stopped", code)
    assert result["stop"]["drained"] is False
    assert result["stats"]["total_produced"] == 1


def test_drain_longer_than_grace_exits_with_a_result_that_says_so(tmp_path: Path) -> None:
    ready, result_file = tmp_path / "ready", tmp_path / "result.json"
    proc = _sleepy_in_process(ready, "0.5", result_file)
    try:
        read_ready(ready)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 143
    assert "did not drain within 0.5s" in err
    result = json.loads(result_file.read_text())
    assert result["exit_code"] == 143
    assert result["stop"] == {"requested_by": "SIGTERM", "grace": 0.5, "drained": False}
