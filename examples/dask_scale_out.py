"""A CPU-bound stage on a Dask cluster: ``execution="dask"``.

Needs the ``dask`` extra (``pip install 'minigun-pipelines[dask]'``, or ``'.[dask]'`` in a
checkout). Run it::

    minigun run examples/dask_scale_out.py
    minigun run examples/dask_scale_out.py -p limit=2000000 --max-processes 2
    minigun run examples/dask_scale_out.py --dask-address tcp://scheduler:8786

It shows a stage whose items run on a Dask ``distributed`` cluster while the producer
and the consumer stay in the run's process. With no address given, minigun starts a
``LocalCluster`` for the run (one worker process per core; ``--max-processes`` lowers
it) and closes it at the end; ``--dask-address`` or ``MINIGUN_DASK_ADDRESS`` points the
same pipeline at a real cluster, unchanged. The pipeline file is shipped to the workers
with the instance, so they need minigun but not this file.

The work: counting the primes below ``limit`` by trial division, in ``blocks`` ranges
-- pure Python, so threads would hold the GIL and only processes or machines help.
The result line gives the count, the cluster it ran on (from the result JSON's
``cluster`` entry for the stage) and how many distinct workers did the counting.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from typing import Any

import minigun as mg


def count_primes(start: int, stop: int) -> int:
    """Primes in ``[start, stop)`` by trial division by odd numbers: deliberately CPU-bound."""
    count = 0
    for n in range(max(start, 2), stop):
        if n % 2 == 0:
            count += n == 2
            continue
        divisor = 3
        while divisor * divisor <= n and n % divisor:
            divisor += 2
        count += divisor * divisor > n
    return count


class DaskScaleOut(mg.Pipeline):
    """Count the primes below ``limit`` in ``blocks`` ranges on a Dask cluster."""

    def __init__(self, limit: int = 200_000, blocks: int = 24) -> None:
        self.limit = limit
        self.blocks = blocks
        self.primes = 0
        self.workers: set[str] = set()

    @mg.producer
    def ranges(self) -> Iterator[tuple[int, int]]:
        step = -(-self.limit // self.blocks)
        for start in range(0, self.limit, step):
            yield start, min(start + step, self.limit)

    @mg.processor(execution="dask", retries=1)
    def count(self, block: tuple[int, int]) -> dict[str, Any]:
        """Runs on a cluster worker; says which one, for the result line."""
        return {"primes": count_primes(*block), "worker": f"{socket.gethostname()}:{os.getpid()}"}

    @mg.consumer
    def add(self, counted: dict[str, Any]) -> None:
        self.primes += counted["primes"]
        self.workers.add(counted["worker"])

    @mg.after_run
    def report(self, result: mg.RunResult) -> None:
        cluster = result.to_dict()["stats"]["stages"]["count"].get("cluster", {})
        started = "a LocalCluster minigun started" if cluster.get("started_by_minigun") else ""
        print(
            f"{self.primes} primes below {self.limit}, counted in"
            f" {result.stats.stages['count'].processed} blocks by {len(self.workers)} workers"
            f" of {started or cluster.get('address', 'the cluster')}"
            f" ({cluster.get('workers', '?')} workers)"
        )
