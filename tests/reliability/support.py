"""Helpers of the reliability suite: the counts it prints, waiting, process checks.

The counts live in this module (not in the conftest) so that test modules can bump
them with a plain import; ``conftest.pytest_terminal_summary`` prints them at the end
of the session, which is how CI shows how much the suite actually exercised.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from typing import Any

import psutil

import minigun as mg
from support import wait_until

#: What the suite exercised in this session, printed by the terminal-summary hook.
COUNTS: Counter[str] = Counter()

EXAMPLES = "examples run"
FAULTS = "faults injected"
BAD_INPUTS = "bad inputs covered"
SOAKED = "runs soaked"
VOLUME = "items through the volume run"

#: The order (and the full set) of the summary line's fields.
SUMMARY_FIELDS = (EXAMPLES, FAULTS, BAD_INPUTS, SOAKED)


def examples() -> int:
    """Property examples per property test: ``MINIGUN_RELIABILITY_EXAMPLES`` or 200."""
    raw = os.environ.get("MINIGUN_RELIABILITY_EXAMPLES", "").strip()
    if not raw:
        return 200
    value = int(raw)
    if value < 1:
        raise ValueError(f"MINIGUN_RELIABILITY_EXAMPLES={raw!r}: use a whole number >= 1")
    return value


def count(what: str, n: int = 1) -> None:
    COUNTS[what] += n


def wait_for(predicate: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> Any:
    """:func:`support.wait_until` with this suite's generous default deadline: deadlines
    here only turn a hang into a failure, the machine is shared and loaded."""
    return wait_until(predicate, timeout, what)


def first_time(marker: str) -> bool:
    """True exactly once per marker path, across forked processes (O_EXCL creation)."""
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        return False
    return True


def stage_ends(stage: dict[str, Any]) -> int:
    """The five ways an item a stage received can end (DESIGN 3.2), summed."""
    return (
        stage["processed"]
        + stage["dropped"]
        + stage["skipped"]
        + stage["dead_letters"]
        + stage["failed"]
    )


def assert_conserved(stages: dict[str, dict[str, Any]]) -> None:
    """Every stage: items received == processed + dropped + skipped + dead-lettered +
    failed. ``stages`` is ``result.stats.stages`` or the ``stats.stages`` of a result
    JSON."""
    for name, stage in stages.items():
        assert stage["items_in"] == stage_ends(stage), f"stage {name!r} leaks items: {stage}"


def assert_status_matches_code(result: mg.RunResult) -> None:
    expected = {
        "succeeded": mg.ExitCode.OK,
        "failed": (mg.ExitCode.FAILED, mg.ExitCode.TEMPFAIL),
        "partial": mg.ExitCode.PARTIAL,
        "skipped": mg.ExitCode.SKIPPED,
        "stopped": (mg.ExitCode.TERMINATED, mg.ExitCode.INTERRUPTED),
    }[result.status]
    codes = expected if isinstance(expected, tuple) else (expected,)
    assert result.exit_code in codes, (result.status, result.exit_code)
    assert result.ok == (result.exit_code == mg.ExitCode.OK)


def descendants() -> list[psutil.Process]:
    """Live children (any depth) of this process, zombies excluded."""
    alive = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except psutil.NoSuchProcess:
            continue
    return alive


def group_members(pgid: int) -> list[psutil.Process]:
    """Live (non-zombie) processes whose process group is ``pgid``."""
    members = []
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                members.append(proc)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return members
