"""Waiting for a condition, never for a fixed time.

A test that sleeps and then checks is a race with the machine's load; a test that
polls a condition until a generous deadline passes as soon as the condition holds and
fails only when it never does. The deadline is a bound on a hang, not on speed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["DEFAULT_TIMEOUT", "wait_until"]

T = TypeVar("T")

#: Seconds a condition may take to hold before the test fails: long enough for a
#: machine with every core busy and a coverage tracer on, short enough to end a hang.
DEFAULT_TIMEOUT = 30.0


def wait_until(
    predicate: Callable[[], T],
    timeout: float = DEFAULT_TIMEOUT,
    what: str = "condition",
    interval: float = 0.01,
) -> T:
    """Poll ``predicate`` until it returns something truthy, and return that.

    Raises ``AssertionError`` naming ``what`` once ``timeout`` seconds pass without it.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
