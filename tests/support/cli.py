"""The ``minigun`` command line run in this process, through click's ``CliRunner``.

For what fails before any pipeline runs (a bad option, a bad ``-p``, an unknown
command): the same entry point as the console script (:func:`minigun.cli.run_cli`,
error presentation included) in milliseconds instead of a Python start-up. Anything
that runs a pipeline, imports a user's file or sends a signal stays a subprocess
(:func:`support.run_cli`).
"""

from __future__ import annotations

from dataclasses import dataclass

from click.testing import CliRunner

from minigun.cli import run_cli

__all__ = ["CliResult", "invoke_cli"]


@dataclass(frozen=True)
class CliResult:
    """What a ``subprocess.CompletedProcess`` of the CLI would hold."""

    returncode: int
    stdout: str
    stderr: str


def _runner() -> CliRunner:
    try:  # click < 8.2 mixes stderr into stdout unless told not to
        return CliRunner(mix_stderr=False)  # type: ignore[call-arg]
    except TypeError:  # click >= 8.2: always separate
        return CliRunner()


def invoke_cli(*args: str) -> CliResult:
    """``minigun ARGS`` in this process, its output captured."""
    with _runner().isolation() as streams:
        code = run_cli(list(args))
    out, err = streams[0], streams[1]
    return CliResult(code, out.getvalue().decode(), err.getvalue().decode())
