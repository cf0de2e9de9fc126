"""Start-up cost of an isolated run: ``minigun run`` against bare interpreters.

Measures wall time (median of N, default 10) of:

- ``python -c pass``                       -- the floor for any process
- a bare pair: ``python`` starting ``python -c pass`` and waiting -- the floor for
  any isolated run (a parent and a child interpreter)
- ``python -c "import minigun"``           -- the cost of the package itself
- ``python -m minigun run --in-process``   -- one process, the engine and the CLI
- ``python -m minigun run``                -- through the runner: parent + child, the
  child started before the parent parses its command line (``minigun.runner.warm``)

in interleaved rounds, on a no-op pipeline (a producer that yields one item and a
consumer that drops it; a producer alone is not a valid pipeline), and prints a table
with ratios. The target (issue 9): the isolated no-op run at most 100 ms (median of 10,
bytecode cached), reported next to the bare pair measured in the same rounds.

Wall time is what the issue targets, but on a shared machine it moves with other load,
so the CPU time of the measured processes (user + system, from ``RUSAGE_CHILDREN``) is
printed next to it. Before timing, minigun's modules are byte-compiled (as a wheel
install does): with ``PYTHONDONTWRITEBYTECODE`` set and an editable install, every
start would otherwise recompile them from source. ``--no-compile`` skips that.

Usage: ``python benchmarks/startup.py [--runs N] [--no-compile]``
"""

from __future__ import annotations

import argparse
import compileall
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

NOOP = """
import minigun as mg


class Noop(mg.Pipeline):
    @mg.producer
    def one(self):
        yield 1

    @mg.consumer
    def drop(self, item):
        pass
"""


BARE_PAIR = "import subprocess, sys; subprocess.run([sys.executable, '-c', 'pass'])"


def measure(argv: list[str], cwd: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process and all its children) for one run."""
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{argv} failed ({proc.returncode}): {proc.stderr.decode()}")
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    return elapsed, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args()
    py = sys.executable
    if not args.no_compile:
        import minigun

        compileall.compile_dir(os.path.dirname(minigun.__file__), quiet=1)
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "noop.py"), "w") as fh:
            fh.write(NOOP)
        cases = {
            "python -c pass": [py, "-c", "pass"],
            "bare pair (python -> python)": [py, "-c", BARE_PAIR],
            "python -c 'import minigun'": [py, "-c", "import minigun"],
            "minigun run --in-process": [
                py,
                "-m",
                "minigun",
                "run",
                "--in-process",
                "noop.py",
                "--no-progress",
            ],
            "minigun run (isolated)": [py, "-m", "minigun", "run", "noop.py", "--no-progress"],
        }
        for argv in cases.values():  # warm the page cache
            measure(argv, tmp)
        # Interleaved rounds: a burst of load from elsewhere on the machine hits every
        # command alike instead of skewing whichever happened to run during it.
        walls: dict[str, list[float]] = {name: [] for name in cases}
        cpus: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.runs):
            for name, argv in cases.items():
                wall, cpu = measure(argv, tmp)
                walls[name].append(wall)
                cpus[name].append(cpu)
    medians = {name: statistics.median(times) for name, times in walls.items()}
    cpu_medians = {name: statistics.median(times) for name, times in cpus.items()}
    bare = medians["python -c pass"]
    bare_cpu = cpu_medians["python -c pass"]
    isolated = medians["minigun run (isolated)"]
    print(f"{'command':<30} {'wall ms':>9} {'x pass':>7} {'cpu ms':>9} {'x pass':>7}")
    for name, seconds in medians.items():
        cpu = cpu_medians[name]
        print(
            f"{name:<30} {seconds * 1000:>9.1f} {seconds / bare:>7.2f}"
            f" {cpu * 1000:>9.1f} {cpu / bare_cpu:>7.2f}"
        )
    print()
    pair = medians["bare pair (python -> python)"]
    print(
        f"isolated run: {isolated * 1000:.0f} ms (target <= 100 ms);"
        f" the bare pair: {pair * 1000:.0f} ms; minigun's own cost on top:"
        f" {(isolated - pair) * 1000:.0f} ms ({isolated / pair:.2f}x the pair)"
    )


if __name__ == "__main__":
    main()
