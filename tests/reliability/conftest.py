"""The reliability suite's settings: hypothesis profile, orphan check, printed counts.

``MINIGUN_RELIABILITY_EXAMPLES`` raises the number of property examples (default
200, the CI floor). Examples are derandomized: a CI failure replays on a laptop with
the same command, and hypothesis prints the falsifying example and its blob.

The suite is its own tox env (``tox -e reliability``): it is collected when pytest is
pointed at this directory (or a file in it), or with ``MINIGUN_RELIABILITY=1``, not as
part of a plain ``pytest tests`` (the ``py`` envs), which it would slow by minutes.
``*_issue10.py`` files hold the checks of issue 10's findings.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from hypothesis import HealthCheck, settings

import minigun as mg
from reliability.support import COUNTS, SUMMARY_FIELDS, VOLUME, examples

if not mg.platform.fork_supported():  # pragma: no cover - POSIX CI
    pytest.skip("the reliability suite forks; this platform cannot", allow_module_level=True)


settings.register_profile(
    "reliability",
    max_examples=examples(),
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


HERE = Path(__file__).resolve().parent


def _asked_for(config: pytest.Config) -> bool:
    if os.environ.get("MINIGUN_RELIABILITY", "") == "1":
        return True
    for arg in config.args:
        path = Path(config.invocation_params.dir, arg.split("::")[0]).resolve()
        if path == HERE or HERE in path.parents:
            return True
    return False


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if not _asked_for(config):
        return True
    return None


@pytest.fixture(autouse=True)
def no_orphans() -> Iterator[None]:
    """After every test: no process started by it is still alive. Children that are
    exiting get a generous moment to be reaped; a leak stays a leak."""
    yield
    import time

    deadline = time.monotonic() + 30
    while True:
        left = [p for p in psutil.Process().children(recursive=True) if _alive(p)]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not left, f"processes outlived the test: {left}"


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    if not _asked_for(config):
        return
    fields = ", ".join(f"{name} {COUNTS[name]}" for name in SUMMARY_FIELDS)
    terminalreporter.write_line(f"reliability: {fields}")
    if COUNTS[VOLUME]:
        terminalreporter.write_line(f"reliability: {VOLUME} {COUNTS[VOLUME]}")
