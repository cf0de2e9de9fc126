"""Where dead letters go (precedence down to a default directory), what the result
says about them, and what ``Pipeline.replay`` refuses before anything runs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import minigun as mg
from minigun.core.dead_letters import ReplayError, default_directory
from minigun.core.result import summary_line


class Boom(RuntimeError):
    pass


class Failing(mg.Pipeline):
    """Dead-letters the items ``fail`` picks; drops the ones ``drop`` picks."""

    def __init__(self, n: int = 5, fail=lambda x: True, drop=lambda x: False) -> None:
        self.n, self.fail, self.drop = n, fail, drop
        self.seen: list[object] = []

    @mg.producer
    def src(self):
        yield from range(self.n)

    @mg.processor
    def keep(self, x):
        return None if self.drop(x) else x

    @mg.consumer(on_error="dead_letter")
    def sink(self, x):
        self.seen.append(x)
        if self.fail(x):
            raise Boom(f"item {x}")


class WithClassDirectory(Failing):
    dead_letter_dir: str | None = None  # set per test


def _parent(result: mg.RunResult) -> Path:
    assert result.dead_letter_file is not None
    return Path(result.dead_letter_file).parent


def test_a_plain_run_without_any_directory_keeps_dead_letters_in_memory() -> None:
    result = Failing().run(execution="inline")
    assert len(result.dead_letters) == 5 and result.dead_letter_file is None


def test_the_default_directory_is_used_when_nothing_else_names_one(tmp_path: Path) -> None:
    result = Failing().run(execution="inline", default_dead_letter_dir=str(tmp_path / "d"))
    assert _parent(result) == tmp_path / "d"
    assert len(mg.read_dead_letters(result.dead_letter_file)) == 5


def test_the_environment_beats_the_default(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MINIGUN_DEAD_LETTER_DIR", str(tmp_path / "env"))
    result = Failing().run(execution="inline", default_dead_letter_dir=str(tmp_path / "d"))
    assert _parent(result) == tmp_path / "env"


def test_an_empty_environment_variable_is_not_set(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MINIGUN_DEAD_LETTER_DIR", "")
    result = Failing().run(execution="inline", default_dead_letter_dir=str(tmp_path / "d"))
    assert _parent(result) == tmp_path / "d"


def test_the_class_attribute_beats_the_default(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(WithClassDirectory, "dead_letter_dir", str(tmp_path / "cls"))
    result = WithClassDirectory().run(
        execution="inline", default_dead_letter_dir=str(tmp_path / "d")
    )
    assert _parent(result) == tmp_path / "cls"


def test_the_environment_beats_the_class_attribute(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(WithClassDirectory, "dead_letter_dir", str(tmp_path / "cls"))
    monkeypatch.setenv("MINIGUN_DEAD_LETTER_DIR", str(tmp_path / "env"))
    assert _parent(WithClassDirectory().run(execution="inline")) == tmp_path / "env"


def test_a_run_argument_beats_everything(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(WithClassDirectory, "dead_letter_dir", str(tmp_path / "cls"))
    monkeypatch.setenv("MINIGUN_DEAD_LETTER_DIR", str(tmp_path / "env"))
    result = WithClassDirectory().run(
        execution="inline",
        dead_letter_dir=str(tmp_path / "arg"),
        default_dead_letter_dir=str(tmp_path / "d"),
    )
    assert _parent(result) == tmp_path / "arg"


def test_default_directory_is_absolute_under_the_working_directory(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert default_directory() == os.path.join(os.path.realpath(tmp_path), "minigun-dead-letters")
    assert not (tmp_path / "minigun-dead-letters").exists()  # created on the first record


def test_a_bad_default_directory_is_a_definition_error() -> None:
    with pytest.raises(mg.PipelineDefinitionError, match="default_dead_letter_dir"):
        Failing().run(default_dead_letter_dir=42)


def test_dead_letter_count_counts_every_dead_letter_not_only_those_in_the_json(
    tmp_path: Path,
) -> None:
    result = Failing(n=250).run(execution="inline", dead_letter_dir=str(tmp_path))
    data = json.loads(json.dumps(result.to_dict()))
    assert data["dead_letter_count"] == 250 and len(data["dead_letters"]) == 100
    assert data["dead_letters_written"] == 250
    assert data["dead_letter_file"] == result.dead_letter_file


def test_summary_line_names_the_count_and_the_file(tmp_path: Path) -> None:
    result = Failing(n=5000, fail=lambda x: x % 6 == 0).run(
        execution="inline", dead_letter_dir=str(tmp_path)
    )
    line = summary_line(result)
    assert line.startswith(f"Failing succeeded in {result.duration:.2f}s (exit 0): ")
    assert "produced 5,000, consumed 4,166, " in line
    assert ", bottleneck sink, 834 dead letters in " in line
    assert line.endswith(str(result.dead_letter_file))


def test_summary_line_says_when_dead_letters_are_only_in_memory() -> None:
    result = Failing(n=1).run(execution="inline")
    line = summary_line(result, "job")
    assert "produced 1, consumed 0, " in line
    assert line.endswith(", 1 dead letter (in memory only: no dead-letter directory)")


def test_summary_line_has_dropped_counts_and_nothing_about_dead_letters_without_any() -> None:
    result = Failing(n=10, fail=lambda x: False, drop=lambda x: x < 4).run(execution="inline")
    assert summary_line(result, "job") == (
        f"job succeeded in {result.duration:.2f}s (exit 0): produced 10, consumed 6, dropped 4,"
        f" {result.stats.throughput:,.0f} items/s, bottleneck {result.stats.bottleneck}"
    )


def test_summary_line_escapes_control_characters(tmp_path: Path) -> None:
    result = Failing(n=1).run(execution="inline", dead_letter_dir=str(tmp_path / "a\x1b[2Jb"))
    line = summary_line(result)
    assert "\x1b" not in line and "a\\x1b[2Jb" in line


# ---------------------------------------------------------------------------- replay


def _letters(tmp_path: Path, records: list[dict]) -> Path:
    path = tmp_path / "letters.jsonl"
    base = {"error": "Boom", "traceback": "", "attempts": 1, "time": 0.0}
    path.write_text("".join(json.dumps({**base, **r}) + "\n" for r in records))
    return path


@pytest.mark.parametrize(
    ("stage", "message"),
    [
        ("sinc", r"name stage 'sinc' \(did you mean 'sink'\?\), which Failing does not have"),
        ("src", "'src', a producer of Failing"),
    ],
)
def test_replay_refuses_letters_for_an_unknown_stage_or_a_producer_before_running(
    tmp_path: Path, stage: str, message: str
) -> None:
    path = _letters(tmp_path, [{"stage": "sink", "item": 1}, {"stage": stage, "item": 2}])
    p = Failing(fail=lambda x: False)
    with pytest.raises(ReplayError, match=message) as info:
        p.replay(path, execution="inline")
    assert info.value.exit_code == mg.ExitCode.USAGE
    assert p.seen == []  # nothing ran


def test_replay_refuses_an_unfaithful_item_unless_told_to_leave_it_out(tmp_path: Path) -> None:
    path = _letters(
        tmp_path,
        [
            {"stage": "sink", "item": {"$mg": "tuple", "v": [1, 2]}},
            {"stage": "sink", "item": "<Opaque object at 0x1>", "item_faithful": False},
        ],
    )
    p = Failing(fail=lambda x: False)
    with pytest.raises(ReplayError, match="not recorded faithfully"):
        p.replay(path, execution="inline")
    assert p.seen == []
    result = p.replay(path, execution="inline", skip_unfaithful=True)
    assert result.ok and p.seen == [(1, 2)]  # the tuple arrives as a tuple; no repr is fed


def test_replay_dead_letters_what_fails_again(tmp_path: Path) -> None:
    first = Failing().run(execution="inline", dead_letter_dir=str(tmp_path / "first"))
    again = Failing().replay(
        first.dead_letter_file,
        execution="inline",
        default_dead_letter_dir=str(tmp_path / "again"),
    )
    assert again.status == "succeeded" and len(again.dead_letters) == 5
    assert _parent(again) == tmp_path / "again"
    assert [d.item for d in mg.read_dead_letters(again.dead_letter_file)] == [0, 1, 2, 3, 4]
