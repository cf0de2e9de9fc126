"""The e2e env: each real scheduler on loopback, in a temporary home.

One server per platform: each platform is one test module and its server a
module-scoped fixture, so ``-k airflow`` starts Airflow alone and a platform's
server is torn down (whole process tree) as soon as its scenarios are done, which
leaves the two loaded cores to the next platform. The table of measured stop times is
printed at the end of the session.

Run: ``tox -e e2e`` (all four platforms), ``tox -e e2e -- -k airflow`` (one platform;
likewise ``prefect``, ``dagster``, ``luigi``). Server logs (``standalone.log``,
``server.log``/``serve.log``, ``dev.log``, luigid's logdir) stay in pytest's
temporary directories for post-mortems.
"""

from __future__ import annotations

from typing import Any

from .support import MEASUREMENTS, format_table


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not MEASUREMENTS:
        return
    terminalreporter.section("minigun e2e: platform stop action -> pipeline group gone")
    for row in format_table(MEASUREMENTS):
        terminalreporter.write_line(row)
