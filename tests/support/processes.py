"""Helpers shared by the runner and CLI tests: child environment, waiting, process checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

TESTS_DIR = Path(__file__).resolve().parents[1]
SRC_DIR = TESTS_DIR.parent / "src"


def child_env(**extra: str) -> dict[str, str]:
    """Environment additions that let a child import ``pipelines`` (and this checkout)."""
    path = os.pathsep.join([str(TESTS_DIR), str(SRC_DIR)])
    return {"PYTHONPATH": path, **extra}


def full_env(**extra: str) -> dict[str, str]:
    """The whole environment for a ``subprocess`` started by a test (CLI tests)."""
    env = dict(os.environ)
    env.update(child_env(**extra))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def target(name: str) -> str:
    return f"pipelines.contract:{name}"


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def read_ready(path: Path, timeout: float = 20.0) -> dict[str, Any]:
    """Wait for a pipeline's ready file and return its JSON."""
    wait_for(path.exists, timeout, f"ready file {path}")
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


def executor_available(name: str) -> bool:
    """Whether the engine ships executor ``name`` yet (fork executors land separately)."""
    import importlib.util

    return importlib.util.find_spec(f"minigun.core.executors.{name}") is not None
