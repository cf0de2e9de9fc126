"""``minigun replay`` as a user runs it: real files, a real ``python -m minigun`` process.

Findings 2, 3 and 10: items that failed again vanished (exit 0, "consumed 0"); an
unknown or producer stage was a traceback and exit 1; a tuple came back as a list,
``{7: ...}`` as ``{'7': ...}``, a repr was fed to the stage; an ``item_pickle`` ran code.
"""

from __future__ import annotations

import base64
import json
import pickle
import textwrap
from pathlib import Path
from typing import Any

import pytest

import minigun as mg
from support import run_cli

JOB = textwrap.dedent(
    """
    import enum
    import minigun as mg

    class Colour(enum.Enum):
        RED = 1

    ITEMS = [(1, 2), {7: "seven"}, {1, 2}, b"raw", Colour.RED, "text"]

    class Typed(mg.Pipeline):
        \"\"\"Dead-letters every item while ``strict``; prints what it accepts, typed.\"\"\"

        max_dead_letters = None

        def __init__(self, strict: bool = True) -> None:
            self.strict = strict

        @mg.producer
        def numbers(self):
            yield from ITEMS

        @mg.consumer(on_error="dead_letter")
        def accept(self, x):
            if self.strict:
                raise ValueError("not yet")
            print(f"accepted {type(x).__name__} {x!r}", flush=True)
    """
)


@pytest.fixture
def job(tmp_path: Path) -> str:
    (tmp_path / "typed_job.py").write_text(JOB)
    return f"{tmp_path / 'typed_job.py'}:Typed"


def _first_run(job: str, tmp_path: Path) -> Path:
    proc = run_cli("run", "--in-process", job, "--dead-letter-dir", str(tmp_path / "first"))
    assert proc.returncode == 0, proc.stderr
    (path,) = (tmp_path / "first").iterdir()
    return path


def _letters(tmp_path: Path, records: list[dict[str, Any]]) -> Path:
    path = tmp_path / "forged.jsonl"
    base = {"error": "E", "traceback": "", "attempts": 1, "time": 0.0}
    path.write_text("".join(json.dumps({**base, **r}) + "\n" for r in records))
    return path


def test_replayed_items_arrive_exactly_as_they_were(job: str, tmp_path: Path) -> None:
    letters = _first_run(job, tmp_path)
    proc = run_cli("replay", str(letters), job, "-p", "strict=false", cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert sorted(proc.stdout.splitlines()) == sorted(
        [
            "accepted tuple (1, 2)",
            "accepted dict {7: 'seven'}",
            "accepted set {1, 2}",
            "accepted bytes b'raw'",
            "accepted Colour <Colour.RED: 1>",
            "accepted str 'text'",
        ]
    )
    assert not (tmp_path / "minigun-dead-letters").exists()  # nothing failed again


def test_what_fails_again_goes_to_the_default_directory_and_is_reported(
    job: str, tmp_path: Path
) -> None:
    letters = _first_run(job, tmp_path)
    result_file = tmp_path / "replay.json"
    proc = run_cli(
        "replay", str(letters), job, "--result-file", str(result_file), cwd=str(tmp_path)
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(result_file.read_text())
    assert result["status"] == "succeeded" and result["dead_letter_count"] == 6
    again = Path(result["dead_letter_file"])
    assert again.parent == (tmp_path / "minigun-dead-letters").resolve()
    assert len(mg.read_dead_letters(again)) == 6
    assert f"6 of 6 item(s) failed again and were dead-lettered again to {again}" in proc.stderr


def test_what_fails_again_goes_to_the_dead_letter_dir_option(job: str, tmp_path: Path) -> None:
    letters = _first_run(job, tmp_path)
    chosen = tmp_path / "chosen"
    proc = run_cli("replay", str(letters), job, "--dead-letter-dir", str(chosen), cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    (again,) = chosen.iterdir()
    assert len(mg.read_dead_letters(again)) == 6
    assert not (tmp_path / "minigun-dead-letters").exists()


def test_too_many_failing_again_is_partial_exit_3(job: str, tmp_path: Path) -> None:
    letters = _first_run(job, tmp_path)
    proc = run_cli("replay", str(letters), job, "--max-dead-letters", "2", cwd=str(tmp_path))
    assert proc.returncode == 3, proc.stderr


@pytest.mark.parametrize(
    ("stage", "words"),
    [("acept", "name stage 'acept' (did you mean 'accept'?)"), ("numbers", "a producer")],
)
def test_an_unknown_or_producer_stage_is_one_line_exit_2_before_anything_runs(
    job: str, tmp_path: Path, stage: str, words: str
) -> None:
    forged = _letters(tmp_path, [{"stage": "accept", "item": 1}, {"stage": stage, "item": 2}])
    proc = run_cli("replay", str(forged), job, "-p", "strict=false", cwd=str(tmp_path))
    assert proc.returncode == 2
    assert proc.stdout == ""  # the good record did not run either
    (line,) = proc.stderr.splitlines()
    assert line.startswith("minigun: error: ") and words in line


def test_an_unfaithful_item_is_one_line_exit_2_and_never_fed_as_its_repr(
    job: str, tmp_path: Path
) -> None:
    forged = _letters(
        tmp_path,
        [
            {"stage": "accept", "item": {"$mg": "tuple", "v": [3, 4]}},
            {"stage": "accept", "item": "<Thing at 0x7f>", "item_faithful": False},
        ],
    )
    proc = run_cli("replay", str(forged), job, "-p", "strict=false", cwd=str(tmp_path))
    assert proc.returncode == 2 and proc.stdout == ""
    (line,) = proc.stderr.splitlines()
    assert "1 dead letter(s) hold an item that was not recorded faithfully" in line
    assert "--skip-unfaithful" in line

    proc = run_cli(
        "replay", str(forged), job, "-p", "strict=false", "--skip-unfaithful", cwd=str(tmp_path)
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["accepted tuple (3, 4)"]
    assert "not replayed: a dead letter of stage 'accept'" in proc.stderr
    assert "<Thing at 0x7f>" in proc.stderr


class _Exploit:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        import os

        return (os.system, (f"touch {self.marker}",))


def test_an_item_pickle_is_never_executed(job: str, tmp_path: Path) -> None:
    """Finding 10: replay unpickled ``item_pickle``; the payload ran and replay exited 0."""
    marker = tmp_path / "pwned"
    payload = base64.b64encode(pickle.dumps(_Exploit(str(marker)))).decode()
    forged = _letters(tmp_path, [{"stage": "accept", "item": "x", "item_pickle": payload}])
    proc = run_cli("replay", str(forged), job, "-p", "strict=false", cwd=str(tmp_path))
    assert not marker.exists()
    assert proc.returncode == 2 and "pickle" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_torn_last_record_is_reported_and_the_rest_replayed(job: str, tmp_path: Path) -> None:
    letters = _first_run(job, tmp_path)
    data = letters.read_bytes()
    letters.write_bytes(data[: len(data) - 40])  # the last record cut short
    proc = run_cli("replay", str(letters), job, "-p", "strict=false", cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 5
    assert "the last record is torn" in proc.stderr
