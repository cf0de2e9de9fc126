"""Core engine benchmarks: a 3-stage trivial pipeline against its peers, in one run.

producer -> x*2 -> counter over N items, measured against a plain Python loop
making the same calls, a hand-written three-thread ``queue.Queue`` pipeline and
``pypeln.thread``; plus the cost of stats and peak RSS at two sizes (backpressure).
Each figure is the median of ``--repeat`` runs; peers run in this same process tree.

    python benchmarks/core.py [--items 1000000] [--repeat 5] [--quick]
"""

from __future__ import annotations

import argparse
import json
import queue
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import minigun as mg


def double(x: int) -> int:
    return x * 2


class Counter:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self, x: int) -> None:
        self.n += 1


def plain_loop(n: int) -> int:
    count = Counter()
    for x in range(n):
        count(double(x))
    return count.n


def queue_pipeline(n: int) -> int:
    """The hand-written baseline: three threads joined by two ``queue.Queue``s."""
    done = object()
    q1: queue.Queue[object] = queue.Queue(maxsize=1000)
    q2: queue.Queue[object] = queue.Queue(maxsize=1000)
    count = Counter()

    def produce() -> None:
        for x in range(n):
            q1.put(x)
        q1.put(done)

    def process() -> None:
        while (x := q1.get()) is not done:
            q2.put(double(x))  # type: ignore[arg-type]
        q2.put(done)

    def consume() -> None:
        while (x := q2.get()) is not done:
            count(x)

    threads = [threading.Thread(target=t) for t in (produce, process, consume)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return count.n


def pypeln_thread(n: int) -> int:
    import pypeln as pl

    count = Counter()
    stage = pl.thread.map(double, range(n), workers=1, maxsize=1000)
    stage = pl.thread.each(count, stage, workers=1, maxsize=1000)
    pl.thread.run(stage)
    return count.n


class Trivial(mg.Pipeline):
    def __init__(self, n: int = 1000) -> None:
        self.n = n
        self.count = Counter()

    @mg.producer
    def numbers(self):
        return range(self.n)

    @mg.processor
    def times_two(self, x):
        return x * 2

    @mg.consumer
    def counter(self, x):
        self.count(x)


def minigun_run(execution: str, stats: bool = True) -> Callable[[int], int]:
    def run(n: int) -> int:
        p = Trivial(n)
        result = p.run(execution=execution, stats=stats, max_threads=1)
        assert result.ok, result
        return p.count.n

    return run


def measure(fn: Callable[[int], int], n: int, repeat: int) -> float:
    """Median items per second over ``repeat`` runs."""
    rates = []
    for _ in range(repeat):
        started = time.perf_counter()
        got = fn(n)
        elapsed = time.perf_counter() - started
        assert got == n, (fn, got, n)
        rates.append(n / elapsed)
    return statistics.median(rates)


_RSS_CHILD = """
import resource, sys
sys.path.insert(0, {here!r})
from core import Trivial
p = Trivial({n})
r = p.run(execution="thread", max_threads=1)
assert r.ok and p.count.n == {n}
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_rss_kib(n: int) -> int:
    here = str(__import__("pathlib").Path(__file__).parent)
    out = subprocess.run(
        [sys.executable, "-c", _RSS_CHILD.format(here=here, n=n)],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout.strip().splitlines()[-1])


def import_time_ms(repeat: int) -> float:
    """``import minigun`` under ``-S`` (no site: nothing preloaded by .pth files), so
    the figure includes every stdlib module minigun pulls in."""
    import os
    from pathlib import Path

    package_parent = str(Path(mg.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": package_parent}
    samples = []
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, "-S", "-X", "importtime", "-c", "import minigun"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        line = [ln for ln in out.stderr.splitlines() if ln.rstrip().endswith("| minigun")][-1]
        samples.append(int(line.split("|")[1]) / 1000)
    return statistics.median(samples)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="100,000 items, 3 runs")
    args = parser.parse_args(argv)
    n, repeat = (100_000, 3) if args.quick else (args.items, args.repeat)
    slow_n = max(n // 10, 10_000)  # pypeln is measured on fewer items: it is ~100x slower

    rates = {
        "plain loop": measure(plain_loop, n, repeat),
        "queue.Queue, 3 threads": measure(queue_pipeline, n, repeat),
        f"pypeln.thread ({slow_n:,} items)": measure(pypeln_thread, slow_n, repeat),
        "minigun inline": measure(minigun_run("inline"), n, repeat),
        "minigun thread": measure(minigun_run("thread"), n, repeat),
        "minigun thread, stats=False": measure(minigun_run("thread", stats=False), n, repeat),
        "minigun inline, stats=False": measure(minigun_run("inline", stats=False), n, repeat),
    }
    queue_rate = rates["queue.Queue, 3 threads"]
    pypeln_rate = rates[f"pypeln.thread ({slow_n:,} items)"]
    print(f"\n3-stage trivial pipeline, {n:,} items, median of {repeat} runs (items/s)")
    print(f"{'pipeline':<34}{'items/s':>14}{'vs queue.Queue':>16}{'vs pypeln':>12}")
    for name, rate in rates.items():
        print(f"{name:<34}{rate:>14,.0f}{rate / queue_rate:>15.1f}x{rate / pypeln_rate:>11.1f}x")
    thread_cost = 1 - rates["minigun thread"] / rates["minigun thread, stats=False"]
    inline_cost = 1 - rates["minigun inline"] / rates["minigun inline, stats=False"]
    rss_small, rss_large = peak_rss_kib(n // 10), peak_rss_kib(n)
    imports = import_time_ms(repeat * 2)
    summary = {
        "inline_items_per_s": rates["minigun inline"],
        "thread_vs_queue": rates["minigun thread"] / queue_rate,
        "thread_vs_pypeln": rates["minigun thread"] / pypeln_rate,
        "stats_cost_thread": thread_cost,
        "stats_cost_inline": inline_cost,
        "rss_small_mib": rss_small / 1024,
        "rss_large_mib": rss_large / 1024,
        "rss_growth": rss_large / rss_small - 1,
        "import_ms": imports,
    }
    print()
    print(f"stats cost (thread): {thread_cost:+.1%}   stats cost (inline): {inline_cost:+.1%}")
    print(
        f"peak RSS: {n // 10:,} items {rss_small / 1024:.1f} MiB, {n:,} items "
        f"{rss_large / 1024:.1f} MiB ({summary['rss_growth']:+.1%})"
    )
    print(f"import minigun: {imports:.1f} ms (python -S -X importtime, median)")
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
