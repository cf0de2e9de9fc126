"""SIGTERM/SIGINT delivered to the process that called ``run_isolated``.

The caller is a small script started as a subprocess (the test cannot signal
pytest itself); it prints the outcome as JSON.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from support import child_env, full_env, read_ready, session_members, target, wait_until

CALLER = """
import json, sys
from minigun.runner import RunSpec, run_isolated
spec = RunSpec(sys.argv[1], params=json.loads(sys.argv[2]), env=json.loads(sys.argv[3]),
               grace=float(sys.argv[4]), retries=2, retry_delay=0)
outcome = run_isolated(spec)
print(json.dumps({"exit_code": int(outcome.exit_code), "status": outcome.status,
                  "attempts": outcome.attempts, "cancelled": outcome.cancelled,
                  "result_status": (outcome.result or {}).get("status")}))
"""


def _start_caller(pipeline: str, params: dict[str, object], grace: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            CALLER,
            target(pipeline),
            json.dumps(params),
            json.dumps(child_env()),
            str(grace),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=full_env(),
    )


@pytest.mark.parametrize(
    ("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"]
)
def test_signal_to_the_caller_cancels_the_run(tmp_path: Path, sig: int, code: int) -> None:
    ready = tmp_path / "ready"
    caller = _start_caller("Endless", {"ready": str(ready)}, grace=10)
    try:
        info = read_ready(ready)
        caller.send_signal(sig)
        out, _ = caller.communicate(timeout=20)
    finally:
        caller.kill()
    assert caller.returncode == 0
    outcome = json.loads(out.strip().splitlines()[-1])
    assert outcome == {
        "exit_code": code,
        "status": "stopped",
        "attempts": 1,
        "cancelled": True,
        "result_status": "stopped",
    }
    assert session_members(info["sid"]) == []


def test_second_signal_to_the_caller_kills_at_once(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    caller = _start_caller(
        "SleepyWithChildren", {"ready": str(ready), "ignore_sigterm": True}, grace=60
    )
    try:
        info = read_ready(ready)
        caller.send_signal(signal.SIGTERM)
        with pytest.raises(subprocess.TimeoutExpired):
            caller.wait(1.0)  # the stubborn helper holds the drain: grace is running
        caller.send_signal(signal.SIGTERM)
        out, _ = caller.communicate(timeout=10)
    finally:
        caller.kill()
    assert json.loads(out.strip().splitlines()[-1])["exit_code"] == 143
    assert session_members(info["sid"]) == []


@pytest.mark.parametrize(
    ("pipeline", "params"),
    [("Endless", {}), ("SleepyWithChildren", {"ignore_sigterm": True})],
    ids=["drains", "stuck-with-stubborn-helpers"],
)
def test_child_stops_itself_when_the_runner_is_sigkilled(
    tmp_path: Path, pipeline: str, params: dict[str, object]
) -> None:
    """SIGKILL cannot be forwarded: the orphaned child notices and cleans up its group."""
    ready = tmp_path / "ready"
    grace = 1.0
    caller = _start_caller(pipeline, {"ready": str(ready), **params}, grace=grace)
    try:
        info = read_ready(ready)
        caller.kill()
        caller.wait(10)
        # parent check interval (0.5 s) + grace + slack for a loaded machine
        wait_until(lambda: not session_members(info["sid"]), 0.5 + grace + 3, "an empty session")
    finally:
        caller.kill()
        for proc in session_members(info["sid"]) if ready.exists() else []:
            proc.kill()
