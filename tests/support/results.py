"""Assertions about a run's result, shared by the engine tests."""

from __future__ import annotations

from collections import Counter
from typing import Any

import minigun as mg


def assert_conserved(result: mg.RunResult) -> None:
    """Every item a stage received ended as exactly one outcome (DESIGN 3.2)."""
    for name, stage in result.stats.stages.items():
        if stage["items_in"] == 0 and stage["processed"] == 0:
            continue
        ends = (
            stage["processed"]
            + stage["dropped"]
            + stage["skipped"]
            + stage["dead_letters"]
            + stage["failed"]
        )
        assert stage["items_in"] == ends, f"stage {name}: {stage}"


def multiset(items: Any) -> Counter[Any]:
    return Counter(items)
