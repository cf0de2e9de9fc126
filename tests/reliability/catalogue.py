"""The machinery of the bad-input catalogue: a row type and how each surface is tried.

A row names a surface -- the Python API (a pipeline definition or ``run()``
arguments), the runner (``RunSpec``), the adapters' spec building (``build_spec``) or
the CLI -- the input, what must come back (an exception type, or an exit code for the
CLI) and a fragment of the message. Every message must be one line without a
traceback: that is what a user reads in an orchestrator's log at 3 a.m.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import minigun as mg
from reliability.support import BAD_INPUTS, count

TESTS_DIR = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Bad:
    """One bad input. ``attempt`` raises (Python rows); ``argv`` is a CLI command line
    (``{tmp}`` is replaced by a scratch directory prepared by ``scratch``)."""

    id: str
    expect: type[BaseException] | int
    fragment: str
    attempt: Callable[[], Any] | None = None
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)


def params(rows: list[Bad]) -> Any:
    return pytest.mark.parametrize("row", rows, ids=[r.id for r in rows])


def one_clean_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got {len(lines)}:\n{text}"
    assert "Traceback" not in text, text
    assert "\x1b" not in text, f"raw escape sequence in {text!r}"
    return lines[0]


def check_python_row(row: Bad, monkeypatch: pytest.MonkeyPatch) -> None:
    assert row.attempt is not None
    assert isinstance(row.expect, type)
    for key, value in row.env.items():
        monkeypatch.setenv(key, value)
    count(BAD_INPUTS)
    with pytest.raises(BaseException) as info:
        row.attempt()
    assert isinstance(info.value, row.expect), f"{type(info.value).__name__}: {info.value}"
    line = one_clean_line(str(info.value))
    assert row.fragment in line, line


def run_cli(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> Any:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MINIGUN_")}
    environ.update(PYTHONPATH=str(TESTS_DIR), PYTHONUNBUFFERED="1", **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "minigun", *argv],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=str(cwd),
        env=environ,
    )


def check_cli_row(row: Bad, tmp: Path) -> None:
    assert isinstance(row.expect, int)
    argv = [a.replace("{tmp}", str(tmp)) for a in row.argv]
    count(BAD_INPUTS)
    proc = run_cli(argv, tmp, row.env)
    assert proc.returncode == row.expect, (proc.returncode, proc.stderr[-2000:])
    line = one_clean_line(proc.stderr)
    assert line.startswith("minigun: error: "), line
    assert row.fragment in line, line


# ---------------------------------------------------------------------- definitions


def define(
    work: dict[str, Any] | None = None,
    *,
    sink: dict[str, Any] | None = None,
    source: dict[str, Any] | None = None,
    attrs: dict[str, Any] | None = None,
) -> mg.Pipeline:
    """An instance of ``source -> work -> sink`` with the given stage options."""

    def produce(self: Any) -> Any:
        yield from range(3)

    def work_fn(self: Any, x: int) -> int:
        return x

    def sink_fn(self: Any, x: int) -> None:
        pass

    body: dict[str, Any] = {
        "source": mg.producer(**(source or {}))(produce),
        "work": mg.processor(**(work or {}))(work_fn),
        "sink": mg.consumer(**(sink or {}))(sink_fn),
        **(attrs or {}),
    }
    return type("Defined", (mg.Pipeline,), body)()


def run_defined(work: dict[str, Any] | None = None, **kwargs: Any) -> Callable[[], Any]:
    return lambda: define(work, **kwargs).run(execution="inline")


def run_with(**overrides: Any) -> Callable[[], Any]:
    return lambda: define().run(**overrides)


def body(**members: Any) -> Callable[[], Any]:
    """Run a pipeline class made of exactly ``members``."""
    return lambda: type("Custom", (mg.Pipeline,), members)().run(execution="inline")


def P(**options: Any) -> Any:
    """A fresh producer function (decorators mark functions: never share one)."""

    def gen(self: Any) -> Any:
        yield 1

    return mg.producer(**options)(gen)


def W(**options: Any) -> Any:
    """A fresh ``(self, item)`` processor."""
    return mg.processor(**options)(lambda self, x: x)


def C(**options: Any) -> Any:
    """A fresh ``(self, item)`` consumer."""
    return mg.consumer(**options)(lambda self, x: None)


def deep_json(depth: int) -> str:
    return "[" * depth + "]" * depth


def deep_list(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value
