"""The layering rules of DESIGN section 2, checked on the source: data flows one way."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "minigun"


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def files_under(package: str) -> list[Path]:
    return sorted((SRC / package).rglob("*.py"))


@pytest.mark.parametrize("path", files_under("core"), ids=lambda p: p.name)
def test_core_never_imports_runner_adapters_or_cli(path: Path) -> None:
    bad = {
        m
        for m in imported_modules(path)
        if m.startswith(("minigun.runner", "minigun.adapters", "minigun.cli"))
    }
    assert not bad, f"{path.relative_to(SRC)} imports {sorted(bad)}"


@pytest.mark.parametrize("path", files_under("adapters"), ids=lambda p: p.name)
def test_adapters_never_import_the_engine_or_cli(path: Path) -> None:
    bad = {m for m in imported_modules(path) if m.startswith(("minigun.core", "minigun.cli"))}
    bad |= {m for m in imported_modules(path) if m == "minigun"}
    assert not bad, f"{path.relative_to(SRC)} imports {sorted(bad)}"


@pytest.mark.parametrize("path", files_under("runner"), ids=lambda p: p.name)
def test_runner_never_imports_the_engine(path: Path) -> None:
    bad = {
        m
        for m in imported_modules(path)
        if m.startswith(("minigun.core", "minigun.adapters", "minigun.cli")) or m == "minigun"
    }
    assert not bad, f"{path.relative_to(SRC)} imports {sorted(bad)}"


@pytest.mark.parametrize(
    "path", files_under("report") + files_under("metrics"), ids=lambda p: p.name
)
def test_report_and_metrics_import_neither_engine_runner_nor_cli(path: Path) -> None:
    """They work on the result JSON and snapshots alone, so the adapters (which must
    not load the engine) and the CLI parent (which must stay lean) can use them."""
    bad = {
        m
        for m in imported_modules(path)
        if m.startswith(("minigun.core", "minigun.runner", "minigun.adapters", "minigun.cli"))
        or m == "minigun"
    }
    assert not bad, f"{path.relative_to(SRC)} imports {sorted(bad)}"
