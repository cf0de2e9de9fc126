"""The benchmark suite: every benchmark script in this folder, one after the other.

    python benchmarks/run.py            # full run (several minutes on 2 cores)
    python benchmarks/run.py --quick    # smaller sizes, fewer repeats
    python benchmarks/run.py core fork  # only some sections

Each section runs minigun and its peers in the same process tree and prints a table
of medians and ratios. Sections: core (engine vs plain loop, queue.Queue, pypeln),
fork (cow_fork/ipc_fork vs multiprocessing, mpire, pypeln, raw fork; memory),
async_io (async stages vs asyncio.gather + Semaphore, aiostream, pypeln.task and a
thread stage, on sleeps and on a loopback HTTP server), dask (a dask stage vs inline and
hand-written client.map on a LocalCluster), startup (``minigun run`` wall time vs bare
interpreters), hud (the cost of the live HUD and the progress bar).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
SECTIONS = ["core", "fork", "async_io", "dask", "startup", "hud"]


def main(argv: list[str]) -> int:
    flags = [a for a in argv if a.startswith("-")]
    wanted = [a for a in argv if not a.startswith("-")] or SECTIONS
    unknown = [w for w in wanted if w not in SECTIONS]
    if unknown:
        print(f"unknown section(s): {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
        return 2
    status = 0
    for section in wanted:
        script = HERE / f"{section}.py"
        if not script.exists():
            print(f"== {section}: {script.name} is missing")
            status = 1
            continue
        print(f"\n== {section} ==", flush=True)
        code = subprocess.call([sys.executable, str(script), *flags])
        status = status or code
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
