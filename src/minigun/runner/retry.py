"""How long to wait before the next attempt.

Exponential backoff with "equal jitter": half of the exponential delay is fixed, the
other half random. The fixed half guarantees the back-off actually backs off; the
random half keeps many tasks that failed together (a database restart) from retrying
in lock step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import random

__all__ = ["backoff_delay"]


def backoff_delay(
    failed_attempts: int,
    *,
    delay: float,
    backoff: float,
    max_delay: float,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait after ``failed_attempts`` (>= 1) failed attempts.

    The ceiling is ``min(max_delay, delay * backoff ** (failed_attempts - 1))``; the
    result lies in ``[ceiling / 2, ceiling]``.
    """
    if failed_attempts < 1:
        raise ValueError("failed_attempts must be >= 1")
    try:
        ceiling = delay * backoff ** (failed_attempts - 1)
    except OverflowError:
        ceiling = max_delay
    ceiling = min(max_delay, ceiling)
    if ceiling <= 0:
        return 0.0
    if rng is None:
        import random  # only after a failure: keeps the runner's start-up lean

        rng = random.Random()
    draw = rng.random()
    return ceiling / 2 + draw * ceiling / 2
