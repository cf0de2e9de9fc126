"""Fork executor tests: real forks, real signals, and no child left behind, ever."""

from __future__ import annotations

from collections.abc import Iterator

import psutil
import pytest

import minigun as mg

if not mg.platform.fork_supported():  # pragma: no cover - POSIX CI
    pytest.skip("fork is not available on this platform", allow_module_level=True)


@pytest.fixture(autouse=True)
def no_orphans() -> Iterator[None]:
    """After every test, at once: no child process of this process exists, zombies
    included. A run's executors reap every child before the run returns."""
    yield
    left = psutil.Process().children(recursive=True)
    assert not left, f"child processes outlived the run: {left}"
