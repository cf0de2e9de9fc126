"""Fork executor benchmarks: cow_fork and ipc_fork against their peers, in one run.

Four groups (issue 3), each figure the median of ``--repeat`` runs, peers measured in
this same process tree and interleaved with minigun so machine noise hits both:

1. ipc_fork, ``processes=2``, N trivial items (``x + 1``) against
   ``multiprocessing.Pool(2).imap_unordered`` (chunksize 10,000), ``mpire.WorkerPool(2)
   .map_unordered`` and ``pypeln.process.map`` (on fewer items: it is far slower).
2. CPU-bound: 400 items of ~5 ms of pure-Python work: minigun inline, ipc_fork and
   cow_fork (``processes=2``; cow_fork both with its default adaptive chunk and with
   ``chunk=1``, a fork per item) against ``multiprocessing.Pool(2)`` (chunksize 1).
3. cow_fork, ``processes=2``, trivial items, ``chunk=1`` and adaptive, against a
   serial raw ``os.fork`` + pipe + pickle loop (the physical floor of one fork per
   item).
4. Memory: a 1 GiB read-only array (numpy) loaded in ``before_run`` and read in full by
   each of 2 children: total PSS of the process tree (sum of
   ``/proc/PID/smaps_rollup``) for cow_fork, ipc_fork and ``ProcessPoolExecutor`` with
   the spawn method; and a ~300 MB dict of small objects (children run a full
   ``gc.collect()`` and a few lookups) with and without ``gc.freeze()``. Each memory
   case runs in a fresh interpreter.

    python benchmarks/fork.py [--items 1000000] [--repeat 5] [--quick] [--only GROUP]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import pickle
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _measure import medians, table

import minigun as mg

HERE = Path(__file__).resolve().parent


# ---------------------------------------------------------------------- helpers


def inc(x: int) -> int:
    return x + 1


# ---------------------------------------------------------------------- 1. ipc_fork, trivial


def _trivial_pipeline(execution: str, chunk: int | None = None) -> type[mg.Pipeline]:
    """``range(n)`` into one fork stage, ``processes=2``, that adds one (groups 1 and 3)."""

    class Trivial(mg.Pipeline):
        def __init__(self, n: int) -> None:
            self.n = n

        @mg.producer
        def numbers(self):  # type: ignore[no-untyped-def]
            return range(self.n)

        @mg.processor(execution=execution, processes=2, chunk=chunk)
        def inc(self, x):  # type: ignore[no-untyped-def]
            return x + 1

    return Trivial


def minigun_trivial(execution: str, n: int, chunk: int | None = None) -> int:
    result = _trivial_pipeline(execution, chunk)(n).run()
    assert result.ok, result
    return int(result.stats.stages["inc"]["processed"])


def pool_trivial(n: int) -> int:
    with multiprocessing.get_context("fork").Pool(2) as pool:
        return sum(1 for _ in pool.imap_unordered(inc, range(n), chunksize=10_000))


def mpire_trivial(n: int) -> int:
    from mpire import WorkerPool

    with WorkerPool(n_jobs=2, start_method="fork") as pool:
        return sum(1 for _ in pool.map_unordered(inc, range(n), iterable_len=n))


def pypeln_trivial(n: int) -> int:
    import pypeln as pl

    return sum(1 for _ in pl.process.map(inc, range(n), workers=2, maxsize=1000))


def group_trivial(n: int, repeat: int) -> dict[str, float]:
    slow_n = max(n // 100, 2_000)
    t = medians(
        {
            "minigun ipc_fork": (lambda: minigun_trivial("ipc_fork", n), n),
            "multiprocessing.Pool(2).imap_unordered": (lambda: pool_trivial(n), n),
            "mpire.WorkerPool(2).map_unordered": (lambda: mpire_trivial(n), n),
            f"pypeln.process.map ({slow_n:,} items)": (lambda: pypeln_trivial(slow_n), slow_n),
        },
        repeat,
    )
    rates = {name: (slow_n if "pypeln" in name else n) / s for name, s in t.items()}
    ours = rates["minigun ipc_fork"]
    rows = [
        (name, f"{rate:,.0f}/s", "1.00x" if name == "minigun ipc_fork" else f"{ours / rate:.2f}x")
        for name, rate in rates.items()
    ]
    table(
        f"1. ipc_fork, processes=2, {n:,} trivial items (median of {repeat})",
        rows,
        ("", "items/s", "minigun is x faster"),
    )
    pypeln_name = f"pypeln.process.map ({slow_n:,} items)"
    return {
        "ipc_vs_pool": ours / rates["multiprocessing.Pool(2).imap_unordered"],
        "ipc_vs_mpire": ours / rates["mpire.WorkerPool(2).map_unordered"],
        "ipc_vs_pypeln": ours / rates[pypeln_name],
        "ipc_items_per_s": ours,
    }


# ---------------------------------------------------------------------- 2. CPU-bound

_LOOPS = 0


def burn(x: int) -> int:
    """About 5 ms of pure-Python work (calibrated at start-up)."""
    total = 0
    for i in range(_LOOPS):
        total += i * i % 7
    return x + (total & 1)


def calibrate(target: float = 0.005) -> int:
    global _LOOPS
    _LOOPS = 10_000
    while True:
        samples = []
        for _ in range(5):
            started = time.perf_counter()
            burn(0)
            samples.append(time.perf_counter() - started)
        took = statistics.median(samples)
        if abs(took - target) / target < 0.1:
            return _LOOPS
        _LOOPS = max(1000, int(_LOOPS * target / took))


def _cpu_pipeline(execution: str, chunk: int | None = None) -> type[mg.Pipeline]:
    class Cpu(mg.Pipeline):
        def __init__(self, n: int = 400) -> None:
            self.n = n

        @mg.producer
        def numbers(self):  # type: ignore[no-untyped-def]
            return range(self.n)

        @mg.processor(execution=execution, processes=2, chunk=chunk)
        def work(self, x):  # type: ignore[no-untyped-def]
            return burn(x)

    return Cpu


def minigun_cpu(execution: str, n: int, chunk: int | None = None) -> int:
    result = _cpu_pipeline(execution, chunk)(n).run()
    assert result.ok, result
    return int(result.stats.stages["work"]["processed"])


def pool_cpu(n: int) -> int:
    with multiprocessing.get_context("fork").Pool(2) as pool:
        return sum(1 for _ in pool.imap_unordered(burn, range(n), chunksize=1))


def group_cpu(n: int, repeat: int) -> dict[str, float]:
    loops = calibrate()
    t = medians(
        {
            "minigun inline": (lambda: minigun_cpu("inline", n), n),
            "minigun ipc_fork": (lambda: minigun_cpu("ipc_fork", n), n),
            "minigun cow_fork": (lambda: minigun_cpu("cow_fork", n), n),
            "minigun cow_fork, chunk=1": (lambda: minigun_cpu("cow_fork", n, 1), n),
            "multiprocessing.Pool(2).imap_unordered": (lambda: pool_cpu(n), n),
        },
        repeat,
    )
    inline, pool = t["minigun inline"], t["multiprocessing.Pool(2).imap_unordered"]
    rows = [(name, f"{s:.3f} s", f"{inline / s:.2f}x / {pool / s:.2f}x") for name, s in t.items()]
    table(
        f"2. CPU-bound, {n} items of ~5 ms ({loops:,} loops), processes=2 (median of {repeat})",
        rows,
        ("", "wall time", "speed vs inline / Pool"),
    )
    return {
        "cpu_ipc_vs_inline": inline / t["minigun ipc_fork"],
        "cpu_cow_vs_inline": inline / t["minigun cow_fork"],
        "cpu_ipc_vs_pool": pool / t["minigun ipc_fork"],
        "cpu_cow_vs_pool": pool / t["minigun cow_fork"],
        "cpu_cow1_vs_inline": inline / t["minigun cow_fork, chunk=1"],
        "cpu_cow1_vs_pool": pool / t["minigun cow_fork, chunk=1"],
    }


# ---------------------------------------------------------------------- 3. cow_fork, trivial


def raw_fork_loop(n: int) -> int:
    """One fork per item, serially: pipe, fork, child pickles its result, parent reaps."""
    done = 0
    for x in range(n):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            data = pickle.dumps(inc(x), 5)
            os.write(w, data)
            os._exit(0)
        os.close(w)
        chunks = []
        while True:
            block = os.read(r, 65536)
            if not block:
                break
            chunks.append(block)
        os.close(r)
        os.waitpid(pid, 0)
        pickle.loads(b"".join(chunks))
        done += 1
    return done


def group_cow(n: int, repeat: int) -> dict[str, float]:
    one, auto = "minigun cow_fork, chunk=1 (a fork per item)", "minigun cow_fork (adaptive)"
    raw_name = "raw os.fork + pipe + pickle, serial"
    t = medians(
        {
            one: (lambda: minigun_trivial("cow_fork", n, 1), n),
            auto: (lambda: minigun_trivial("cow_fork", n), n),
            raw_name: (lambda: raw_fork_loop(n), n),
        },
        repeat,
    )
    raw = t[raw_name]
    rows = [(name, f"{n / s:,.0f}/s", f"{raw / s:.2f}x") for name, s in t.items()]
    table(
        f"3. cow_fork, {n:,} trivial items, processes=2 (median of {repeat})",
        rows,
        ("", "items/s", "vs raw fork loop"),
    )
    return {
        "cow_vs_raw_fork": raw / t[one],
        "cow_items_per_s": n / t[one],
        "cow_adaptive_vs_raw_fork": raw / t[auto],
    }


# ---------------------------------------------------------------------- 4. memory

_MEMORY_CHILD = r"""
import gc, os, sys, time, json
sys.path.insert(0, {here!r})
import minigun as mg
from fork import tree_pss, wait_for

CASE, SIZE, FLAG = {case!r}, {size}, {flag!r}

def read_all(obj):
    import numpy as np
    return int(np.bitwise_xor.reduce(obj, dtype=np.uint64)) if obj.size else 0

if CASE.startswith("dict"):
    if CASE == "dict-nofreeze":
        from minigun.core.executors import _fork_safety
        _fork_safety.freeze_gc = lambda: None
        _fork_safety.unfreeze_gc = lambda: None

if CASE == "spawn":
    import numpy as np
    from concurrent.futures import ProcessPoolExecutor
    import multiprocessing as mp
    from fork import spawn_reader
    data = np.ones(SIZE // 8, dtype=np.uint64)
    with ProcessPoolExecutor(2, mp_context=mp.get_context("spawn")) as ex:
        futures = [ex.submit(spawn_reader, data, FLAG, i) for i in range(2)]
        wait_for(FLAG, 2)
        pss = tree_pss(os.getpid())
        open(FLAG + ".go", "w").close()
        [f.result() for f in futures]
    print(json.dumps({{"pss": pss}}))
    sys.exit(0)

class Mem(mg.Pipeline):
    @mg.before_run
    def load(self):
        if CASE.startswith("dict"):
            self.data = {{i: [i, str(i)] for i in range(SIZE)}}
        else:
            import numpy as np
            self.data = np.ones(SIZE // 8, dtype=np.uint64)
        gc.collect()

    @mg.after_fork
    def touch(self):  # in every child (each cow_fork child, each ipc_fork worker)
        if CASE.startswith("dict"):
            gc.collect()  # what a long-lived child's collector does sooner or later
            _ = [self.data[k] for k in range(0, SIZE, 1000)]
        else:
            read_all(self.data)
        open(f"{{FLAG}}.{{os.getpid()}}", "w").close()

    @mg.producer
    def items(self):
        yield from range(4)  # a driver holds at most 2: both workers get some

    @mg.processor(execution=CASE.split("-")[0] if not CASE.startswith("dict") else "cow_fork",
                  processes=2, chunk=1)
    def wait(self, i):
        while not os.path.exists(FLAG + ".go"):
            time.sleep(0.01)
        return i

def measure():
    wait_for(FLAG, 2)
    PSS.append(tree_pss(os.getpid()))
    open(FLAG + ".go", "w").close()

import threading
PSS = []
t = threading.Thread(target=measure)
t.start()
result = Mem().run()
t.join()
assert result.ok, result
print(json.dumps({{"pss": PSS[0]}}))
"""


def spawn_reader(data, flag: str, i: int) -> int:  # type: ignore[no-untyped-def]
    """ProcessPoolExecutor task: read the (pickled, so copied) array, then wait."""
    import numpy as np

    int(np.bitwise_xor.reduce(data, dtype=np.uint64))
    open(f"{flag}.{os.getpid()}", "w").close()
    while not os.path.exists(flag + ".go"):
        time.sleep(0.01)
    return i


def wait_for(flag: str, n: int, timeout: float = 300) -> None:
    prefix = os.path.basename(flag) + "."
    folder = os.path.dirname(flag)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        names = os.listdir(folder)
        ready = [f for f in names if f.startswith(prefix) and f[len(prefix) :].isdigit()]
        if len(ready) >= n:
            time.sleep(0.2)  # let the readers settle
            return
        time.sleep(0.02)
    raise TimeoutError("readers did not report")


def tree_pss(pid: int) -> int:
    """Total PSS (bytes) of ``pid`` and all its descendants, from smaps_rollup."""
    import psutil

    total = 0
    root = psutil.Process(pid)
    for proc in [root, *root.children(recursive=True)]:
        try:
            with open(f"/proc/{proc.pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            pass
    return total


def memory_case(case: str, size: int) -> int:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        flag = os.path.join(tmp, "ready")
        code = _MEMORY_CHILD.format(here=str(HERE), case=case, size=size, flag=flag)
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=600
        )
        if out.returncode != 0:
            raise RuntimeError(f"memory case {case} failed:\n{out.stderr[-3000:]}")
        return int(json.loads(out.stdout.strip().splitlines()[-1])["pss"])


def group_memory(quick: bool) -> dict[str, float]:
    gib = 1 << 30
    size = gib // 4 if quick else gib
    dict_items = 300_000 if quick else 2_000_000  # ~300 MB of small objects at full size
    results = {
        "cow_fork": memory_case("cow_fork", size),
        "ipc_fork": memory_case("ipc_fork", size),
        "ProcessPoolExecutor (spawn)": memory_case("spawn", size),
    }
    rows = [(name, f"{pss / gib:.2f} GiB", f"{pss / size:.2f}x") for name, pss in results.items()]
    table(
        f"4a. {size / gib:.2f} GiB read-only array read in full by 2 children: tree PSS",
        rows,
        ("", "total PSS", "x the array"),
    )
    frozen = memory_case("dict-freeze", dict_items)
    thawed = memory_case("dict-nofreeze", dict_items)
    mib = 1 << 20
    table(
        f"4b. dict of {dict_items:,} small objects, 2 cow_fork children run gc.collect()",
        [
            ("with gc.freeze() (minigun default)", f"{frozen / mib:,.0f} MiB", "1.00x"),
            ("without gc.freeze()", f"{thawed / mib:,.0f} MiB", f"{thawed / frozen:.2f}x"),
        ],
        ("", "total PSS", "vs frozen"),
    )
    return {
        "array_bytes": size,
        "pss_cow_gib": results["cow_fork"] / gib,
        "pss_ipc_gib": results["ipc_fork"] / gib,
        "pss_spawn_gib": results["ProcessPoolExecutor (spawn)"] / gib,
        "pss_dict_frozen_mib": frozen / mib,
        "pss_dict_unfrozen_mib": thawed / mib,
    }


# ---------------------------------------------------------------------- main


GROUPS = ["trivial", "cpu", "cow", "memory"]


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="smaller sizes, 3 runs")
    parser.add_argument("--only", choices=GROUPS, help="run one group in this process")
    args = parser.parse_args(argv)
    n, repeat = (100_000, 3) if args.quick else (args.items, args.repeat)
    summary: dict[str, float] = {}
    if args.only is None:
        # Each group in a fresh interpreter: the cost of a fork grows with the
        # parent's memory, and the peers of one group (mpire, pypeln, numpy) must not
        # inflate the forks of the next.
        flags = [f"--items={args.items}", f"--repeat={args.repeat}"]
        flags += ["--quick"] if args.quick else []
        for group in GROUPS:
            out = subprocess.run(
                [sys.executable, __file__, "--only", group, *flags],
                capture_output=True,
                text=True,
            )
            lines = out.stdout.strip().splitlines()
            print("\n" + "\n".join(lines[:-1]), flush=True)
            if out.returncode != 0 or not lines:
                print(f"group {group} failed:\n{out.stderr[-3000:]}", flush=True)
                continue
            summary.update(json.loads(lines[-1]))
        print()
        print(json.dumps(summary))
        return summary
    if args.only == "trivial":
        summary.update(group_trivial(n, repeat))
    elif args.only == "cpu":
        summary.update(group_cpu(100 if args.quick else 400, repeat))
    elif args.only == "cow":
        summary.update(group_cow(300 if args.quick else 2000, repeat))
    else:
        summary.update(group_memory(args.quick))
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
