"""Shared test helpers: conservation checks and an execution-strategy fixture."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))


@pytest.fixture(autouse=True)
def _clean_minigun_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests choose their executor explicitly; a developer's MINIGUN_* must not leak in."""
    for name in list(os.environ):
        if name.startswith("MINIGUN_"):
            monkeypatch.delenv(name)
