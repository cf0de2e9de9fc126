"""The complete resource plan: cores, memory and the recommendation templates use.

The graph's plan (:meth:`minigun.core.graph.StageGraph.plan`) counts processes,
threads and cores. This module adds memory and turns both into what a deployment
asks for (``examples/deploy/`` takes its numbers from here):

- memory = runner + base + processes x child size, the rule users of fork pools know
  with the runner added (``minigun run`` is a process of its own in the container,
  taken as this CLI process's RSS). Base is the pipeline process's RSS, child size
  what one fork adds (its private pages, USS).
  *Measured* by a sample run (``minigun inspect --sample``, see
  :mod:`minigun.runner.sample`); otherwise *estimated*: base is this interpreter's RSS
  after importing the target and building its graph (the run's parent does the same
  before it starts), and a child is assumed to copy every page of it (the worst case
  for copy-on-write; Python's reference counting writes to the objects a child
  touches). Where a sample saw more at one instant than the rule gives, that is used.
- the recommendation: a CPU request of ``cores``, a memory request of the figure above
  rounded up to :data:`REQUEST_STEP_MIB` and a memory limit with :data:`HEADROOM` on
  top, rounded up to :data:`LIMIT_STEP_MIB` (never below :data:`MIN_LIMIT_MIB`), as Kubernetes
  quantities and as ECS units (1024 CPU units a core, memory in MiB).
"""

from __future__ import annotations

import math
import os
from typing import Any

__all__ = [
    "HEADROOM",
    "LIMIT_STEP_MIB",
    "MIN_LIMIT_MIB",
    "REQUEST_STEP_MIB",
    "complete_plan",
    "current_rss",
    "render_plan",
]

#: Memory limit = memory x HEADROOM: peaks between samples, a larger input, allocator slack.
HEADROOM = 1.5
#: Limits are rounded up to this many MiB (a readable figure; containers round anyway).
LIMIT_STEP_MIB = 64
#: Requests are rounded up to this many MiB (finer: the request is what the scheduler reserves).
REQUEST_STEP_MIB = 32
#: No limit below this: an interpreter with a few imports already needs tens of MiB.
MIN_LIMIT_MIB = 128

_MIB = 1024 * 1024


def current_rss() -> int:
    """This process's RSS in bytes (``/proc``), or the peak RSS where there is none."""
    from minigun.runner import procfs

    memory = procfs.process_memory(os.getpid()) if procfs.available() else None
    if memory is not None:
        return memory.rss
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # bytes on macOS, KiB else


def complete_plan(plan: dict[str, Any], memory: dict[str, Any]) -> dict[str, Any]:
    """``plan`` (the graph's, with any LocalCluster added) with ``memory`` and the
    recommendation filled in. ``memory`` holds ``source`` (``measured``/``estimated``),
    ``runner_bytes``, ``base_bytes`` and ``child_bytes`` at least; ``peak_bytes`` (the
    pipeline's group at its largest) when measured."""
    processes = int(plan.get("processes") or 0)
    runner, base = int(memory["runner_bytes"]), int(memory["base_bytes"])
    child = int(memory["child_bytes"])
    by_rule = runner + base + processes * child
    total = max(by_rule, runner + int(memory.get("peak_bytes") or 0))
    request_mib = max(REQUEST_STEP_MIB, _round_up(total / _MIB, REQUEST_STEP_MIB))
    limit_mib = max(MIN_LIMIT_MIB, _round_up(total * HEADROOM / _MIB, LIMIT_STEP_MIB))
    cores = max(1, int(plan.get("cores") or 1))
    return {
        **plan,
        "memory": {**memory, "processes": processes, "total_bytes": total},
        "recommendation": {
            "cpu_request": str(cores),
            "memory_request": f"{request_mib}Mi",
            "memory_limit": f"{limit_mib}Mi",
            "memory_limit_mib": limit_mib,
            "ecs_cpu_units": cores * 1024,
            "headroom": HEADROOM,
        },
    }


def _round_up(value: float, step: int) -> int:
    return int(math.ceil(value / step) * step)


def _mib(value: Any) -> str:
    return f"{int(value or 0) / _MIB:.1f} MiB"


def render_plan(plan: dict[str, Any]) -> list[str]:
    """The plan as text lines: cores, memory (how it was found), the recommendation."""
    processes = plan.get("processes", 0)
    local = sum(c.get("workers", 0) for c in plan.get("dask") or [] if c.get("local"))
    parts = [f"{processes} fork processes", "1 parent"]
    if local:
        parts.append(f"{local} LocalCluster workers")
    lines = [
        f"cores: {plan.get('cores', '?')} ({' + '.join(parts)}; threads, async and remote dask"
        f" stages share the parent's); this machine has {plan.get('machine_cores', '?')}"
    ]
    memory = plan.get("memory") or {}
    if memory:
        if memory.get("source") == "measured":
            how = (
                f"measured over a {memory.get('sample_seconds', 0):g} s sample run,"
                f" {memory.get('children_seen', 0)} child process(es) seen"
            )
        else:
            how = "estimated: no sample run; a child assumed to copy all of the parent"
        lines.append(
            f"memory ({how}): runner {_mib(memory.get('runner_bytes'))}"
            f" + base {_mib(memory.get('base_bytes'))}"
            f" + {memory.get('processes', 0)} x {_mib(memory.get('child_bytes'))}"
            f" = {_mib(memory.get('total_bytes'))}"
            + (
                f" (peak seen {_mib(memory['peak_bytes'])})"
                if memory.get("source") == "measured"
                else ""
            )
        )
    advice = plan.get("recommendation") or {}
    if advice:
        lines.append(
            f"recommendation: cpu request {advice['cpu_request']},"
            f" memory request {advice['memory_request']},"
            f" memory limit {advice['memory_limit']}"
            f" (+{round((advice['headroom'] - 1) * 100)}% headroom);"
            f" ECS cpu {advice['ecs_cpu_units']}, memory {advice['memory_limit_mib']}"
        )
    lines += [f"warning: {w}" for w in plan.get("warnings") or []]
    return lines
