"""Counts the documentation snippets that ran and says so in the terminal summary."""

from __future__ import annotations

import pytest

_EXECUTED = pytest.StashKey[list]()


@pytest.fixture
def executed_snippets(request: pytest.FixtureRequest) -> list[str]:
    """Where a snippet test records the snippet it ran."""
    return request.config.stash.setdefault(_EXECUTED, [])


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    executed = terminalreporter.config.stash.get(_EXECUTED, None)
    if executed is not None:
        terminalreporter.write_line(f"runnable snippets executed: {len(executed)}")
