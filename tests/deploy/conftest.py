"""The deploy tests' tally: which templates passed which check, printed at the end.

``tox -e deploy`` prints the count so a template that silently stopped being checked
(renamed, its test skipped) shows as a smaller number."""

from __future__ import annotations

from collections import defaultdict

import pytest

#: template file name -> the checks it passed in this session.
VALIDATED: dict[str, set[str]] = defaultdict(set)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not VALIDATED:
        return
    checks = sum(len(done) for done in VALIDATED.values())
    terminalreporter.write_sep("-", "deployment templates")
    for name in sorted(VALIDATED):
        terminalreporter.write_line(f"{name}: {', '.join(sorted(VALIDATED[name]))}")
    terminalreporter.write_line(
        f"{len(VALIDATED)} templates validated ({checks} checks, each command by --dry-run)"
    )
