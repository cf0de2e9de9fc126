"""A large read-only table, built once, read by ``cow_fork`` children without copies.

Run it::

    minigun run examples/shared_model.py
    minigun run examples/shared_model.py -p table_mb=128 -p queries=16

It shows what ``execution="cow_fork"`` is for: CPU work over large read-only data.
``@mg.before_run`` builds the table once, in the parent; every child forked for the
``query`` stage sees it copy-on-write, so nothing is pickled, sent or loaded again,
and the memory is shared until somebody writes to it. Each child measures itself from
``/proc/self/smaps_rollup`` (Linux): how much of its resident memory is private to it
and how much it shares with the parent. The result line compares both with the
table's size. Where ``/proc`` has no such file the figures are left out, saying so.

Keep such data in flat buffers -- ``array.array``, ``bytes``, a numpy array -- as here:
reading one never writes to it. A dict of millions of small Python objects is shared
at first too, but reading an object changes its reference count, which writes to its
page, and the child then copies that page: the "read-only" table is copied bit by bit.
"""

from __future__ import annotations

import array
import os
from collections.abc import Iterator
from typing import Any

import minigun as mg

MiB = 1024 * 1024


def memory_of_this_process() -> dict[str, int] | None:
    """Resident, private and shared bytes of this process; None where /proc lacks them.

    Private pages are this process's alone (what a fork would cost); shared ones are
    mapped by other processes too -- here, the parent's table.
    """
    try:
        with open("/proc/self/smaps_rollup") as rollup:
            lines = rollup.read().splitlines()
    except OSError:
        return None
    kib: dict[str, int] = {}
    for line in lines[1:]:
        name, _, rest = line.partition(":")
        fields = rest.split()
        if fields and fields[0].isdigit():
            kib[name] = int(fields[0])
    return {
        "rss": kib.get("Rss", 0) * 1024,
        "private": (kib.get("Private_Clean", 0) + kib.get("Private_Dirty", 0)) * 1024,
        "shared": (kib.get("Shared_Clean", 0) + kib.get("Shared_Dirty", 0)) * 1024,
    }


class SharedModel(mg.Pipeline):
    """Answer ``queries`` over a ``table_mb`` table of floats built before the run."""

    def __init__(self, table_mb: int = 64, queries: int = 8) -> None:
        self.table_mb = table_mb
        self.queries = queries
        self.children: dict[int, dict[str, int]] = {}  # child pid -> its largest figures

    @mg.before_run
    def build_table(self) -> None:
        """The "model": ``table_mb`` MiB of doubles, built once here, in the parent."""
        count = self.table_mb * MiB // 8
        self.table = array.array("d", range(count))
        self.parent_memory = memory_of_this_process()

    @mg.producer
    def query_ids(self) -> Iterator[int]:
        yield from range(self.queries)

    @mg.processor(execution="cow_fork", processes=4)
    def query(self, query_id: int) -> dict[str, Any]:
        """In a forked child: read the whole table (a strided sum touches every page)."""
        stride = 64
        total = sum(memoryview(self.table)[query_id % stride :: stride])
        return {
            "query": query_id,
            "sum": total,
            "pid": os.getpid(),
            "memory": memory_of_this_process(),
        }

    @mg.consumer
    def collect(self, answer: dict[str, Any]) -> None:
        memory = answer.get("memory")
        if memory is not None:
            known = self.children.get(answer["pid"], {})
            self.children[answer["pid"]] = {
                key: max(value, known.get(key, 0)) for key, value in memory.items()
            }

    @mg.after_run
    def report(self, result: mg.RunResult) -> None:
        answered = result.stats.stages["query"].processed
        line = f"answered {answered} queries over a {self.table_mb} MiB table"
        if not self.children or self.parent_memory is None:
            print(f"{line}; no memory figures here (they need Linux's /proc/self/smaps_rollup)")
            return
        private = max(child["private"] for child in self.children.values())
        shared = min(child["shared"] for child in self.children.values())
        print(
            f"{line} in {len(self.children)} cow_fork children; parent RSS"
            f" {self.parent_memory['rss'] / MiB:.1f} MiB; each child shared"
            f" >= {shared / MiB:.1f} MiB with it and had <= {private / MiB:.1f} MiB"
            " of its own"
        )
