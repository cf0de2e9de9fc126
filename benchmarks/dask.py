"""Dask executor benchmarks (issue 11), each figure the median of ``--repeat`` runs, the
cases interleaved within each round so machine noise hits them alike:

1. CPU-bound: the workload of ``fork.py`` (400 items of ~5 ms of pure-Python work) in a
   dask stage on a two-worker ``LocalCluster`` (one thread each), against minigun
   ``inline`` and against hand-written dask on the same cluster: ``client.map`` +
   ``as_completed``, one task per item (what the dask docs show) and, for reference,
   with the items in chunks of 10. Every case connects its own client, as a run does.
   Also shown: the same stage with a ``LocalCluster`` started for the run (its
   start-up included), and ``multiprocessing.Pool(2)`` (forked, chunksize 10): what two
   processes get from this machine without dask, the ceiling for the rest.
2. Per-item overhead: trivial items (``x + 1``) through a dask stage on the same
   cluster, with adaptive chunks and with ``chunk=1`` (one task per item), against
   minigun ``inline``, and hand-written ``client.map`` + ``as_completed`` of one task
   per item (dask's own cost of a task): wall time per item.

    python benchmarks/dask.py [--repeat 5] [--quick] [--items 200000]

Python puts a script's directory first on ``sys.path``, where this file would hide the
``dask`` package from everything that imports it; so that directory goes last before
anything is imported.
"""

from __future__ import annotations

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE] + [_HERE]

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

from _measure import medians, table  # noqa: E402

import minigun as mg  # noqa: E402

# ---------------------------------------------------------------------- the workload


def burn(x: int, loops: int) -> int:
    """About 5 ms of pure-Python work: ``fork.py``'s ``burn``, with its loop count passed
    in (a worker process does not share this one's calibration)."""
    total = 0
    for i in range(loops):
        total += i * i % 7
    return x + (total & 1)


def burn_chunk(xs: list[int], loops: int) -> list[int]:
    return [burn(x, loops) for x in xs]


def calibrate(target: float = 0.005) -> int:
    loops = 10_000
    while True:
        samples = []
        for _ in range(5):
            started = time.perf_counter()
            burn(0, loops)
            samples.append(time.perf_counter() - started)
        took = statistics.median(samples)
        if abs(took - target) / target < 0.1:
            return loops
        loops = max(1000, int(loops * target / took))


# ---------------------------------------------------------------------- pipelines


class Cpu(mg.Pipeline):
    def __init__(self, n: int, loops: int) -> None:
        self.n = n
        self.loops = loops

    @mg.producer
    def numbers(self):  # type: ignore[no-untyped-def]
        return range(self.n)

    @mg.processor(execution="dask")
    def work(self, x):  # type: ignore[no-untyped-def]
        return burn(x, self.loops)


def _trivial(chunk: int | None) -> type[mg.Pipeline]:
    class Trivial(mg.Pipeline):
        def __init__(self, n: int) -> None:
            self.n = n

        @mg.producer
        def numbers(self):  # type: ignore[no-untyped-def]
            return range(self.n)

        @mg.processor(execution="dask", chunk=chunk)
        def inc(self, x):  # type: ignore[no-untyped-def]
            return x + 1

    return Trivial


def run_minigun(pipeline: mg.Pipeline, stage: str, **overrides: object) -> int:
    result = pipeline.run(**overrides)
    assert result.ok, (result, result.error)
    return int(result.stats.stages[stage]["processed"])


def pool_cpu(n: int, loops: int) -> int:
    import functools
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(2) as pool:
        work = functools.partial(burn, loops=loops)
        return sum(1 for _ in pool.imap_unordered(work, range(n), chunksize=10))


def client_map(address: str, n: int, loops: int) -> int:
    from distributed import Client, as_completed

    with Client(address, set_as_default=False) as client:
        futures = client.map(burn, range(n), loops=loops, pure=False)
        return sum(
            1 for future in as_completed(futures, loop=client.loop) if future.result() is not None
        )


def inc(x: int) -> int:
    return x + 1


def client_map_trivial(address: str, n: int) -> int:
    from distributed import Client, as_completed

    with Client(address, set_as_default=False) as client:
        futures = client.map(inc, range(n), pure=False)
        return sum(1 for future in as_completed(futures, loop=client.loop) if future.result())


def client_map_chunked(address: str, n: int, loops: int, size: int = 10) -> int:
    from distributed import Client, as_completed

    chunks = [list(range(i, min(n, i + size))) for i in range(0, n, size)]
    with Client(address, set_as_default=False) as client:
        futures = client.map(burn_chunk, chunks, loops=loops, pure=False)
        return sum(len(future.result()) for future in as_completed(futures, loop=client.loop))


# ---------------------------------------------------------------------- groups


def group_cpu(address: str, n: int, repeat: int, loops: int) -> dict[str, float]:
    t = medians(
        {
            "minigun inline": (lambda: run_minigun(Cpu(n, loops), "work", execution="inline"), n),
            "minigun dask": (lambda: run_minigun(Cpu(n, loops), "work", dask_address=address), n),
            "client.map + as_completed, a task per item": (
                lambda: client_map(address, n, loops),
                n,
            ),
            "client.map + as_completed, 10 items per task": (
                lambda: client_map_chunked(address, n, loops),
                n,
            ),
            "multiprocessing.Pool(2), no dask (the ceiling)": (lambda: pool_cpu(n, loops), n),
        },
        repeat,
    )
    started_here = "minigun dask, LocalCluster started for the run"
    own = medians(
        {started_here: (lambda: run_minigun(Cpu(n, loops), "work"), n)}, max(1, repeat // 2)
    )
    t.update(own)
    inline, hand = t["minigun inline"], t["client.map + as_completed, a task per item"]
    rows = [(name, f"{s:.3f} s", f"{inline / s:.2f}x / {hand / s:.2f}x") for name, s in t.items()]
    table(
        f"1. CPU-bound, {n} items of ~5 ms ({loops:,} loops), two-worker LocalCluster"
        f" (median of {repeat})",
        rows,
        ("", "wall time", "speed vs inline / map"),
        widths=(52, 14, 26),
    )
    ours = t["minigun dask"]
    return {
        "cpu_dask_vs_inline": inline / ours,
        "cpu_dask_vs_client_map": hand / ours,
        "cpu_dask_vs_client_map_chunked": t["client.map + as_completed, 10 items per task"] / ours,
        "cpu_pool_vs_inline": inline / t["multiprocessing.Pool(2), no dask (the ceiling)"],
    }


def group_overhead(address: str, n: int, repeat: int) -> dict[str, float]:
    per_task = max(500, n // 100)
    t = medians(
        {
            "minigun inline": (
                lambda: run_minigun(_trivial(None)(n), "inc", execution="inline"),
                n,
            ),
            "minigun dask, adaptive chunks": (
                lambda: run_minigun(_trivial(None)(n), "inc", dask_address=address),
                n,
            ),
            f"minigun dask, chunk=1 ({per_task:,} items)": (
                lambda: run_minigun(_trivial(1)(per_task), "inc", dask_address=address),
                per_task,
            ),
            f"client.map + as_completed, a task per item ({per_task:,} items)": (
                lambda: client_map_trivial(address, per_task),
                per_task,
            ),
        },
        repeat,
    )
    counts = {name: (per_task if f"({per_task:,} items)" in name else n) for name in t}
    per_item = {name: t[name] / counts[name] * 1e6 for name in t}
    inline = per_item["minigun inline"]
    rows = [(name, f"{us:,.1f} us", f"{us - inline:+,.1f} us") for name, us in per_item.items()]
    table(
        f"2. Per-item cost, trivial items (x + 1), {n:,} items (median of {repeat})",
        rows,
        ("", "per item", "over inline"),
        widths=(52, 14, 26),
    )
    return {
        "trivial_dask_us_per_item": per_item["minigun dask, adaptive chunks"],
        "trivial_dask_chunk1_us_per_item": per_item[f"minigun dask, chunk=1 ({per_task:,} items)"],
        "trivial_inline_us_per_item": inline,
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--items", type=int, default=200_000, help="trivial items (group 2)")
    parser.add_argument("--cpu-items", type=int, default=400)
    parser.add_argument("--quick", action="store_true", help="fewer items and repeats")
    parser.add_argument("--only", choices=["cpu", "overhead"])
    args = parser.parse_args(argv)
    import importlib.util

    if importlib.util.find_spec("distributed") is None:
        print("skipped: distributed is not installed (pip install '.[dask]')")
        return 0
    repeat, items, cpu_items = args.repeat, args.items, args.cpu_items
    if args.quick:
        repeat, items, cpu_items = 3, items // 10, cpu_items // 2

    import logging

    from distributed import LocalCluster

    # Calibrated before the cluster starts: its processes importing dask would slow
    # the calibration down and make every item shorter than the ~5 ms it claims.
    loops = calibrate()
    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
        silence_logs=logging.WARNING,
    ) as cluster:
        address = cluster.scheduler_address
        print(f"cluster: {address}, 2 workers x 1 thread; {os.cpu_count()} cores here")
        figures: dict[str, float] = {}
        if args.only in (None, "cpu"):
            figures |= group_cpu(address, cpu_items, repeat, loops)
        if args.only in (None, "overhead"):
            figures |= group_overhead(address, items, repeat)
    print()
    for key, value in figures.items():
        print(f"{key} = {value:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
