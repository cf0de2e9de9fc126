"""Resolving target strings to Pipeline classes (in this process)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from minigun.targets import TargetError, load_pipeline_class, split_target


@pytest.mark.parametrize(
    ("target", "parts"),
    [
        ("pkg.mod:Cls", ("pkg.mod", "Cls")),
        ("path/to/job.py:Cls", ("path/to/job.py", "Cls")),
        ("job.py", ("job.py", None)),
        ("  pkg.mod:Outer.Inner ", ("pkg.mod", "Outer.Inner")),
    ],
)
def test_split_target(target: str, parts: tuple[str, str | None]) -> None:
    assert split_target(target) == parts


@pytest.mark.parametrize("target", ["", ":Cls", "pkg.mod", "pkg.mod:"])
def test_split_target_rejects(target: str) -> None:
    with pytest.raises(TargetError):
        split_target(target)


def test_module_target_loads_the_class() -> None:
    cls = load_pipeline_class("pipelines.contract:Succeed")
    assert cls.__name__ == "Succeed"


@pytest.fixture(autouse=True)
def _restore_import_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """File targets put their directory on sys.path; keep that out of other tests."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name in ("_minigun_target_", "solo_job_for_targets"):
            del sys.modules[name]


def test_file_target_is_registered_for_pickling(tmp_path: Path) -> None:
    job = tmp_path / "solo_job_for_targets.py"
    job.write_text(
        "import minigun as mg\n"
        "class Solo(mg.Pipeline):\n"
        "    @mg.producer\n    def p(self):\n        yield 1\n"
        "    @mg.consumer\n    def c(self, x):\n        pass\n"
    )
    cls = load_pipeline_class(str(job))
    assert cls.__name__ == "Solo"
    assert sys.modules[cls.__module__].__file__ == str(job)
    assert load_pipeline_class(f"{job}:Solo") is cls  # loaded once


def test_file_target_shadowing_a_loaded_module_gets_a_private_name(tmp_path: Path) -> None:
    job = tmp_path / "json.py"
    job.write_text(
        "import minigun as mg\n"
        "class J(mg.Pipeline):\n"
        "    @mg.producer\n    def p(self):\n        yield 1\n"
        "    @mg.consumer\n    def c(self, x):\n        pass\n"
    )
    cls = load_pipeline_class(str(job))
    assert cls.__module__ == "_minigun_target_"
    import json

    assert json.dumps([1]) == "[1]"  # the real json module is untouched
