"""The ``minigun`` command line: :func:`main` is the console script.

The commands and their error presentation live in :mod:`minigun.cli.app` (click).
This module stays free of click so that :func:`main` can start the run's child before
click is even imported: ``minigun run`` through the runner needs two interpreters, and
started side by side (see :mod:`minigun.runner.warm`) they cost about one.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing itself is not imported: the child is started first
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from minigun.cli._errors import BadInput
    from minigun.cli.app import cli, run_cli

__all__ = ["BadInput", "cli", "main", "run_cli"]

#: Words that mean ``minigun run`` will not start a child: it is not worth starting one.
_NO_CHILD = frozenset({"--in-process", "--dry-run", "-h", "--help"})


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point: run the CLI and exit with the contract's code."""
    args = list(sys.argv[1:] if argv is None else argv)
    warm = None
    if _runs_a_child(args):
        from minigun.runner.warm import start_warm_child

        warm = start_warm_child()
    try:
        from minigun.cli.app import run_cli

        code = run_cli(args, warm=warm)
    finally:
        if warm is not None:
            warm.discard()
    sys.exit(code)


def _runs_a_child(args: list[str]) -> bool:
    """Whether ``args`` look like ``minigun run …`` through the runner.

    A guess made before parsing, so it only decides whether to start a child early: a
    wrong guess costs one unused child or the time saved, never a different run.
    (``minigun --debug run`` gives the child another environment, so it starts late.)
    """
    rest = args
    while rest[:1] and rest[0].startswith("--log-format"):  # the group's own option
        rest = rest[1:] if "=" in rest[0] else rest[2:]
    return rest[:1] == ["run"] and not _NO_CHILD.intersection(rest)


def __getattr__(name: str) -> Any:
    if name == "BadInput":
        from minigun.cli._errors import BadInput

        return BadInput
    if name in ("cli", "run_cli"):
        from minigun.cli import app

        return getattr(app, name)
    raise AttributeError(f"module 'minigun.cli' has no attribute {name!r}")
