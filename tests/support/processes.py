"""Child processes started by tests: their environment, targets, and process checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil

from support.waiting import DEFAULT_TIMEOUT, wait_until

TESTS_DIR = Path(__file__).resolve().parents[1]
SRC_DIR = TESTS_DIR.parent / "src"


def child_env(**extra: str) -> dict[str, str]:
    """Environment additions that let a child import ``pipelines`` and ``support`` (the
    ``tests`` directory, as pytest's ``pythonpath`` setting does here) and this checkout."""
    path = os.pathsep.join([str(TESTS_DIR), str(SRC_DIR)])
    return {"PYTHONPATH": path, **extra}


def full_env(**extra: str) -> dict[str, str]:
    """The whole environment for a ``subprocess`` started by a test (CLI tests)."""
    env = dict(os.environ)
    env.update(child_env(**extra))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def untraced_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's) without the variables that start a coverage
    tracer in a child: for a child that must not carry one -- it checks what gets
    imported, it only burns CPU, or it runs under a file-size limit that the tracer's
    data file would break."""
    source = os.environ if env is None else env
    return {k: v for k, v in source.items() if not k.startswith("COVERAGE_PROCESS_")}


def target(name: str) -> str:
    return f"pipelines.contract:{name}"


def read_ready(path: Path, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
    """Wait for a pipeline's ready file and return its JSON."""
    wait_until(path.exists, timeout, f"ready file {path}")
    return json.loads(path.read_text())


def session_members(sid: int) -> list[psutil.Process]:
    """Live (non-zombie) processes whose session id is ``sid``.

    The runner starts each child in a new session, so this is every process the run
    created unless one deliberately escaped with its own ``setsid``.
    """
    members = []
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if os.getsid(proc.pid) == sid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                members.append(proc)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return members


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def minigun_cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "minigun", *args]


def run_cli(
    *args: str, cwd: str | None = None, timeout: float = 60, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m minigun ARGS`` to completion, capturing text output."""
    return subprocess.run(
        minigun_cli(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env=env or full_env(),
    )
