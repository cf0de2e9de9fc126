"""Running the files of ``examples/`` as a user would: ``python -m minigun run FILE``.

Each run happens in a temporary working directory (the examples write their SQLite
files and dead letters in the current directory) and through the real CLI and runner,
with ``--result-file``, so the tests read the same result JSON a user or an
orchestrator gets. The session ends with a line ``examples run: N (...)`` naming every
example that went through the CLI, because a CI log must show that they ran, not only
that nothing failed.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from support import run_cli

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"

#: Names of the examples run through the CLI in this session, for the summary line.
_RAN: set[str] = set()


@dataclass(frozen=True)
class Ran:
    """One finished ``minigun`` command: its process and the result JSON it wrote."""

    proc: subprocess.CompletedProcess[str]
    result: dict[str, Any]

    @property
    def stages(self) -> dict[str, dict[str, Any]]:
        stages: dict[str, dict[str, Any]] = self.result["stats"]["stages"]
        return stages

    def line(self, start: str) -> str:
        """The one line of the pipeline's stdout that starts with ``start``."""
        (line,) = [x for x in self.proc.stdout.splitlines() if x.startswith(start)]
        return line


RunExample = Callable[..., Ran]


@pytest.fixture
def run_example(tmp_path: Path) -> RunExample:
    """``run_example(name, *args, command="run", timeout=120)``: run ``examples/NAME.py``
    in ``tmp_path`` through the CLI; fails the test unless it exits 0."""
    runs = 0

    def run(name: str, *args: str, command: str = "run", timeout: float = 120) -> Ran:
        nonlocal runs
        runs += 1
        result_file = tmp_path / f"result-{runs}.json"
        path = str(EXAMPLES_DIR / f"{name}.py")
        # replay takes the dead-letter file before the target
        where = (args[0], path, *args[1:]) if command == "replay" else (path, *args)
        proc = run_cli(
            command, *where, "--result-file", str(result_file), cwd=str(tmp_path), timeout=timeout
        )
        assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        _RAN.add(name)
        return Ran(proc, json.loads(result_file.read_text()))

    return run


def pytest_terminal_summary(terminalreporter: Any) -> None:
    names = ", ".join(sorted(_RAN))
    terminalreporter.write_line(f"examples run: {len(_RAN)} ({names})")
