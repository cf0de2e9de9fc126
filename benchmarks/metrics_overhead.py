"""What ``--metrics-textfile`` costs a run: ``minigun run`` with and without it.

Runs the example ETL job (``examples/etl.py``, an in-memory database) through the
isolated runner, alternating plain runs and runs with ``--metrics-textfile`` (and
``--result-file`` in both, so the timeline is in both), and prints the median wall
time and parent CPU time of each and the difference. The textfile sink lives in the
CLI parent: it imports prometheus_client once and rewrites the file at most once a
second, so its cost is a fixed start-up share plus a little per second of run.

As in ``startup.py``, minigun's and prometheus_client's modules are byte-compiled
first (an editable install, or uv's, with ``PYTHONDONTWRITEBYTECODE`` would otherwise
recompile them at every start), and
the CPU time of the measured processes (``RUSAGE_CHILDREN``: the CLI parent and the
pipeline's child) is printed next to the wall time, which moves with other load.

Usage: ``python benchmarks/metrics_overhead.py [--runs 5] [--rows 5000]``
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ETL = ROOT / "examples" / "etl.py"


def one_run(rows: int, workdir: str, textfile: bool) -> tuple[float, float]:
    """Wall and CPU seconds of one ``minigun run`` of the ETL example."""
    command = [sys.executable, "-m", "minigun", "run", str(ETL), "-p", f"rows={rows}"]
    command += ["-p", "db=:memory:", "--no-progress", "--result-file", "result.json"]
    if textfile:
        command += ["--metrics-textfile", "etl.prom"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, cwd=workdir, check=True, capture_output=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rows", type=int, default=5000)
    args = parser.parse_args()
    compileall.compile_dir(str(ROOT / "src" / "minigun"), quiet=1)
    try:  # as pip does on install (uv does not unless asked)
        import prometheus_client

        compileall.compile_dir(os.path.dirname(prometheus_client.__file__), quiet=1)
    except ImportError:
        sys.exit("prometheus_client is missing: pip install '.[metrics]'")
    times: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as workdir:
        one_run(args.rows, workdir, True)  # warm the disk cache for both
        for _ in range(args.runs):
            for textfile in (False, True):
                times[textfile].append(one_run(args.rows, workdir, textfile))
    print(f"examples/etl.py, rows={args.rows}, median of {args.runs}, alternating")
    medians = {}
    for textfile, label in ((False, "plain"), (True, "--metrics-textfile")):
        wall = statistics.median(w for w, _ in times[textfile])
        cpu = statistics.median(c for _, c in times[textfile])
        medians[textfile] = (wall, cpu)
        print(f"  {label:<20} wall {wall * 1000:7.1f} ms   cpu {cpu * 1000:7.1f} ms")
    d_wall = medians[True][0] - medians[False][0]
    d_cpu = medians[True][1] - medians[False][1]
    print(
        f"  difference           wall {d_wall * 1000:+7.1f} ms ({d_wall / medians[False][0]:+.1%})"
        f"   cpu {d_cpu * 1000:+7.1f} ms"
    )


if __name__ == "__main__":
    main()
