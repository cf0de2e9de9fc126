"""What watching a run costs: the core benchmark's pipeline with the live HUD, the
progress bar, and nothing, drawn on a real pseudo-terminal.

The pipeline is ``benchmarks/core.py``'s (producer -> x*2 -> counter, thread
executor, one thread a stage), driven in this process exactly as ``minigun run
--in-process`` drives it (``drive_here``), with stderr pointed at a pty whose other end
a thread drains, so rich renders as it would for a person. Runs are interleaved and
each figure is the median of ``--repeat``; the target (issue 13): the HUD costs under
5% of throughput.

    python benchmarks/hud.py [--items 1000000] [--repeat 5] [--quick]
"""

from __future__ import annotations

import argparse
import io
import os
import pty
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from core import Trivial
from minigun.cli.run import drive_here


class _Terminal:
    """A pty: ``stream`` is a text file on its slave end; the master is read and dropped."""

    def __init__(self) -> None:
        self.master, slave = pty.openpty()
        self.stream = io.TextIOWrapper(io.FileIO(slave, "w"), write_through=True)
        self.done = False
        self.reader = threading.Thread(target=self._drain, daemon=True)
        self.reader.start()

    def _drain(self) -> None:
        while not self.done:
            try:
                os.read(self.master, 65536)
            except OSError:
                return


def run_once(n: int, mode: str, terminal: _Terminal) -> float:
    pipeline = Trivial(n)
    saved = sys.stderr
    sys.stderr = terminal.stream  # the reporters draw on sys.stderr
    try:
        started = time.perf_counter()
        code = drive_here(
            lambda: pipeline.run(background=True, execution="thread", max_threads=1),
            "Trivial",
            grace=30,
            timeout=None,
            result_file=None,
            progress=mode != "none",
            hud=mode == "hud",
        )
        elapsed = time.perf_counter() - started
    finally:
        sys.stderr = saved
    assert code == 0 and pipeline.count.n == n, (code, pipeline.count.n)
    return n / elapsed


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="200,000 items, 3 runs")
    args = parser.parse_args(argv)
    n, repeat = (200_000, 3) if args.quick else (args.items, args.repeat)
    terminal = _Terminal()
    modes = ("none", "bar", "hud")
    rates: dict[str, list[float]] = {mode: [] for mode in modes}
    for _ in range(repeat):
        for mode in modes:
            rates[mode].append(run_once(n, mode, terminal))
    medians = {mode: statistics.median(values) for mode, values in rates.items()}
    print(f"{n:,} items, median of {repeat} interleaved runs, drawn on a pty")
    print(f"{'display':<10} {'items/s':>12} {'vs none':>9}")
    for mode in modes:
        ratio = medians[mode] / medians["none"]
        print(f"{mode:<10} {medians[mode]:>12,.0f} {ratio:>8.3f}x")
    cost = 1 - medians["hud"] / medians["none"]
    print(f"\nHUD overhead: {cost:.1%} of throughput (target < 5%)")
    terminal.done = True
    return medians


if __name__ == "__main__":
    main()
