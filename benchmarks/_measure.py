"""What the fork and dask benchmarks share: timing a case, interleaved medians, a table."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

Case = tuple[Callable[[], int], int]  # what to run, and the count it must return


def timed(fn: Callable[[], int], expect: int) -> float:
    """Seconds ``fn`` took; it must return ``expect`` (a case that loses items is no win)."""
    started = time.perf_counter()
    got = fn()
    elapsed = time.perf_counter() - started
    assert got == expect, (fn, got, expect)
    return elapsed


def medians(cases: dict[str, Case], repeat: int) -> dict[str, float]:
    """Median seconds per case; the cases are interleaved within each round, so machine
    noise hits them alike."""
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeat):
        for name, (fn, expect) in cases.items():
            samples[name].append(timed(fn, expect))
    return {name: statistics.median(values) for name, values in samples.items()}


def table(
    title: str,
    rows: list[tuple[str, str, str]],
    header: tuple[str, str, str],
    widths: tuple[int, int, int] = (46, 16, 22),
) -> None:
    """Print rows of (name, figure, ratio) under ``title``."""
    a, b, c = widths
    print(f"\n{title}")
    print(f"{header[0]:<{a}}{header[1]:>{b}}{header[2]:>{c}}")
    for name, value, ratio in rows:
        print(f"{name:<{a}}{value:>{b}}{ratio:>{c}}")
