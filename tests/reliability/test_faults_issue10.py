"""Fault-injection checks of issue 10's findings, each of which failed before the fixes.

What happened before the fixes:

- ``test_disk_full_for_dead_letters_*``: finding 5 -- ``OSError: [Errno 27] File too
  large`` from ``DeadLetterWriter.close`` escapes as a traceback, exit 1, no result
  JSON; the in-process ``run()`` raises ``OSError`` instead of returning a result.
- ``test_disk_full_for_the_result_file``: a traceback from ``write_json_atomic``
  (exit 1, which the runner would retry); no torn file is left, at least.
- ``test_timeout_result_and_exit_code_agree``: finding 8 -- the result JSON says
  ``stopped``/143 while the process exits 124.
- ``test_runner_persists_dead_letters_without_a_directory``: finding 1 -- no file
  (``dead_letter_file`` is None) and the summary line does not mention them.
- ``test_a_producer_that_raises_loses_nothing_it_yielded``: finding 4 -- 50 yielded,
  31 produced and consumed; 200 -> 127; 500 -> 255 (on every executor).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

import minigun as mg
from minigun.runner import run_isolated
from reliability.support import FAULTS, assert_conserved, count, wait_for
from reliability.test_faults import TESTS_DIR, child_spec, limited_cli

LIMIT = 100_000  # bytes: a few hundred dead-letter records, but a whole result JSON
MANY = ["-p", "n=600", "-p", "size=200"]


def records_in(directory: Path) -> list[mg.DeadLetter]:
    (path,) = directory.iterdir()
    return mg.read_dead_letters(path)  # a torn last record is reported, not fatal


@pytest.mark.parametrize("mode", [["--in-process"], []], ids=["in-process", "runner"])
def test_disk_full_for_dead_letters_fails_the_run_cleanly(mode: list[str], tmp_path: Path) -> None:
    count(FAULTS)
    proc = limited_cli(
        LIMIT,
        "run",
        *mode,
        "reliability.faulty:BigDeadLetters",
        *MANY,
        "--dead-letter-dir",
        str(tmp_path / "dl"),
        "--result-file",
        str(tmp_path / "r.json"),
        cwd=tmp_path,
    )
    assert proc.returncode == mg.ExitCode.FAILED, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "dead letters could not be written" in proc.stderr, proc.stderr[-2000:]
    # The same per-file limit applies to the result file, which carries the first 100
    # dead letters: it is written whole, or not at all with a line that says so.
    if (tmp_path / "r.json").exists():
        result = json.loads((tmp_path / "r.json").read_text())
        assert (result["status"], result["exit_code"]) == ("failed", 1)
        assert_conserved(result["stats"]["stages"])
    else:
        assert "cannot write the result file" in proc.stderr, proc.stderr[-2000:]
    kept = records_in(tmp_path / "dl")
    assert kept, "the records written before the disk filled are readable"
    assert all(r.stage == "reject" for r in kept)


def test_disk_full_for_dead_letters_in_process_run_returns_a_failed_result(
    tmp_path: Path,
) -> None:
    count(FAULTS)
    script = (
        "import json, sys\n"
        "from reliability.faulty import BigDeadLetters\n"
        f"r = BigDeadLetters(n=600, size=200).run(dead_letter_dir={str(tmp_path / 'dl')!r})\n"
        "print(json.dumps([r.status, int(r.exit_code)]))\n"
    )
    proc = limited_cli(LIMIT, "-c", script, cwd=tmp_path, python_args=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == ["failed", 1]


def test_disk_full_for_the_result_file(tmp_path: Path) -> None:
    count(FAULTS)
    proc = limited_cli(
        300,
        "run",
        "--in-process",
        "reliability.faulty:Small",
        "--result-file",
        str(tmp_path / "r.json"),
        cwd=tmp_path,
    )
    assert proc.returncode == mg.ExitCode.FAILED, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "r.json" in proc.stderr
    assert not (tmp_path / "r.json").exists()
    assert not list(tmp_path.glob(".minigun-result-*")), "a temporary file was left behind"


def test_timeout_result_and_exit_code_agree(tmp_path: Path) -> None:
    ready = str(tmp_path / "ready")
    spec = child_spec("reliability.faulty:Hang", {"ready": ready}, timeout=4, grace=1)
    done: list[Any] = []
    runner = threading.Thread(target=lambda: done.append(run_isolated(spec)))
    runner.start()
    wait_for(lambda: list(tmp_path.glob("ready.*")), 120, "the hanging stage")
    runner.join(180)
    count(FAULTS)
    (outcome,) = done
    assert outcome.exit_code == mg.ExitCode.TIMEOUT
    assert outcome.result is not None
    assert outcome.result["exit_code"] == 124


def test_runner_persists_dead_letters_without_a_directory(tmp_path: Path) -> None:
    # The default directory is ./minigun-dead-letters of the run's working directory.
    spec = child_spec("reliability.faulty:BigDeadLetters", {"n": 5, "size": 10}, cwd=str(tmp_path))
    lines: list[str] = []
    outcome = run_isolated(spec, on_log=lines.append)
    assert outcome.exit_code == mg.ExitCode.OK
    assert outcome.result is not None
    path = outcome.result["dead_letter_file"]
    assert path and Path(path).exists()
    assert Path(path).parent == tmp_path / "minigun-dead-letters"
    assert len(mg.read_dead_letters(path)) == 5
    assert any(path in line for line in lines), lines[-5:]


def test_python_child_sees_the_tests_directory() -> None:
    """Guard for the helpers above: the child imports this checkout's pipelines."""
    proc = subprocess.run(
        [sys.executable, "-c", "import reliability.faulty"],
        env={"PYTHONPATH": str(TESTS_DIR)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("n", [50, 200, 500])
@pytest.mark.parametrize("execution", ["inline", "thread", "ipc_fork"])
def test_a_producer_that_raises_loses_nothing_it_yielded(n: int, execution: str) -> None:
    """Finding 4: today 50 yielded -> 31 consumed, 200 -> 127, 500 -> 255."""

    class Raises(mg.Pipeline):
        def __init__(self) -> None:
            self.seen: list[int] = []

        @mg.producer
        def numbers(self) -> Any:
            yield from range(n)
            raise RuntimeError("the source went away")

        @mg.processor(execution=execution, processes=2)
        def work(self, x: int) -> int:
            return x

        @mg.consumer
        def save(self, x: int) -> None:
            self.seen.append(x)

    count(FAULTS)
    pipeline = Raises()
    result = pipeline.run()
    assert (result.status, result.exit_code) == ("failed", mg.ExitCode.FAILED)
    assert result.stats.total_produced == n
    assert sorted(pipeline.seen) == list(range(n))
    assert_conserved(result.stats.stages)
