"""Session-wide test settings.

Every test runs without the developer's ``MINIGUN_*`` variables (below). Helpers shared
between test directories live in the ``support`` package (``tests/support``), which
pytest's ``pythonpath`` setting puts on ``sys.path``; ``--load`` keeps the machine's
cores busy for the whole session (see :mod:`support.load`), to shake out tests that
depend on speed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _clean_minigun_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests choose their executor explicitly; a developer's MINIGUN_* must not leak in."""
    for name in list(os.environ):
        if name.startswith("MINIGUN_"):
            monkeypatch.delenv(name)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--load",
        action="store",
        type=int,
        nargs="?",
        const=0,
        default=None,
        metavar="N",
        help="keep N processes (default: one per core) busy for the whole session",
    )


@pytest.fixture(scope="session", autouse=True)
def _cpu_load(request: pytest.FixtureRequest) -> Iterator[None]:
    """With ``--load``: every core busy while the tests run."""
    count = request.config.getoption("--load")
    if count is None:
        yield
        return
    from support.load import start_burners, stop_burners

    pids = start_burners(count or None)
    try:
        yield
    finally:
        stop_burners(pids)
