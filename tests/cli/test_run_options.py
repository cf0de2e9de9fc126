"""``minigun run`` options: params parsing, overrides, targets as files, result file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from minigun.cli._errors import BadInput
from minigun.cli._params import parse_params
from support import TESTS_DIR, run_cli, target


def test_p_values_are_json_when_they_parse_else_strings() -> None:
    proc = run_cli(
        "run",
        target("Echo"),
        "-p",
        "n=3",
        "-p",
        "ratio=0.5",
        "-p",
        "on=true",
        "-p",
        "ids=[1,2]",
        "-p",
        "day=2026-11-28",
        "-p",
        "name=alice",
        "-p",
        'quoted="7"',
        "-p",
        "none=null",
        "-p",
        "eq=a=b",
    )
    assert proc.returncode == 0, proc.stderr
    echoed = json.loads(proc.stdout.strip().splitlines()[0])
    assert echoed == {
        "day": ["2026-11-28", "str"],
        "eq": ["a=b", "str"],
        "ids": [[1, 2], "list"],
        "n": [3, "int"],
        "name": ["alice", "str"],
        "none": [None, "NoneType"],
        "on": [True, "bool"],
        "quoted": ["7", "str"],
        "ratio": [0.5, "float"],
    }


def test_p_wins_over_params_json() -> None:
    assert parse_params(["a=2"], '{"a": 1, "b": "x"}') == {"a": "2", "b": "x"}


@pytest.mark.parametrize("bad", ["=1", "x", " =1"])
def test_bad_pairs_are_bad_input(bad: str) -> None:
    with pytest.raises(BadInput):
        parse_params([bad], None)


def test_file_target_with_and_without_class(tmp_path: Path) -> None:
    source = (TESTS_DIR / "pipelines" / "contract.py").read_text()
    single = tmp_path / "single.py"
    single.write_text(
        "import minigun as mg\n"
        "class Only(mg.Pipeline):\n"
        "    @mg.producer\n    def p(self):\n        yield 41\n"
        "    @mg.consumer\n    def c(self, x):\n        print('got', x + 1)\n"
    )
    many = tmp_path / "many.py"
    many.write_text(source)
    proc = run_cli("run", str(single), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "got 42"
    proc = run_cli("run", f"{many}:Succeed", "-p", "n=2", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["item 0", "item 1"]


def test_relative_file_target_resolves_against_the_cwd(tmp_path: Path) -> None:
    (tmp_path / "job.py").write_text(
        "import minigun as mg\n"
        "class Job(mg.Pipeline):\n"
        "    @mg.producer\n    def p(self):\n        yield 'ok'\n"
        "    @mg.consumer\n    def c(self, x):\n        print(x)\n"
    )
    proc = run_cli("run", "job.py", cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_execution_override_reaches_the_child(tmp_path: Path) -> None:
    result_file = tmp_path / "r.json"
    proc = run_cli(
        "run",
        target("Succeed"),
        "--execution",
        "inline",
        "--max-threads",
        "2",
        "--result-file",
        str(result_file),
    )
    assert proc.returncode == 0, proc.stderr
    stages = json.loads(result_file.read_text())["stats"]["stages"]
    assert {stage["executor"] for stage in stages.values()} == {"inline"}


def test_dead_letter_options_reach_the_child(tmp_path: Path) -> None:
    result_file = tmp_path / "r.json"
    letters = tmp_path / "letters"
    proc = run_cli(
        "run",
        target("Picky"),
        "--dead-letter-dir",
        str(letters),
        "--max-dead-letters",
        "1",
        "--result-file",
        str(result_file),
    )
    assert proc.returncode == 3, proc.stderr
    result = json.loads(result_file.read_text())
    assert result["status"] == "partial"
    assert len(list(letters.iterdir())) == 1


def test_result_file_is_replaced_atomically(tmp_path: Path) -> None:
    result_file = tmp_path / "r.json"
    result_file.write_text("old")
    proc = run_cli("run", target("Noop"), "--result-file", str(result_file))
    assert proc.returncode == 0
    assert json.loads(result_file.read_text())["status"] == "succeeded"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_progress_lines_off_a_terminal() -> None:
    proc = run_cli("run", "--in-process", target("Succeed"), "--progress")
    assert proc.returncode == 0
    # A short run finishes before the first periodic line; the summary is always there.
    assert "Succeed succeeded" in proc.stderr


def test_the_etl_example_runs_through_the_runner(tmp_path: Path) -> None:
    example = TESTS_DIR.parent / "examples" / "etl.py"
    db = tmp_path / "etl.sqlite"
    proc = run_cli("run", str(example), "-p", "rows=300", "-p", f"db={db}", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("loaded ") and f"into {db}" in proc.stdout


def test_a_run_without_result_removes_a_stale_result_file(tmp_path: Path) -> None:
    result_file = tmp_path / "r.json"
    result_file.write_text('{"status": "succeeded"}')
    proc = run_cli("run", target("SelfKill"), "--result-file", str(result_file))
    assert proc.returncode == 137
    assert not result_file.exists()


def test_closed_stdout_does_not_kill_the_run(tmp_path: Path) -> None:
    """``minigun run … | head -1``: the reader goes away, the batch job still finishes."""
    import subprocess

    from support import full_env, minigun_cli

    result_file = tmp_path / "r.json"
    proc = subprocess.Popen(
        minigun_cli("run", target("Succeed"), "-p", "n=2000", "--result-file", str(result_file)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=full_env(),
    )
    assert proc.stdout is not None
    proc.stdout.readline()
    proc.stdout.close()  # like `head -1` exiting
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert json.loads(result_file.read_text())["stats"]["total_consumed"] == 2000
