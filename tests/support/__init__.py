"""Helpers shared by every test directory, imported one way: ``from support import …``.

``tests`` is on ``sys.path`` through pytest's ``pythonpath`` setting (pyproject), and on
a child's ``PYTHONPATH`` through :func:`child_env`, so the child pipelines in
``tests/pipelines`` and these helpers import the same way in both.
"""

from support.cli import CliResult, invoke_cli
from support.processes import (
    SRC_DIR,
    TESTS_DIR,
    alive,
    child_env,
    full_env,
    minigun_cli,
    read_ready,
    run_cli,
    session_members,
    target,
    untraced_env,
)
from support.results import assert_conserved, multiset
from support.waiting import DEFAULT_TIMEOUT, wait_until

__all__ = [
    "DEFAULT_TIMEOUT",
    "SRC_DIR",
    "TESTS_DIR",
    "CliResult",
    "alive",
    "assert_conserved",
    "child_env",
    "full_env",
    "invoke_cli",
    "minigun_cli",
    "multiset",
    "read_ready",
    "run_cli",
    "session_members",
    "target",
    "untraced_env",
    "wait_until",
]
