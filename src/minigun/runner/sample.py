"""A short sample run that measures memory: what ``minigun inspect --sample`` reads.

The pipeline runs for real, through :func:`~minigun.runner.run_isolated` (its own
process group, the same child as any run), for at most ``seconds``; then it is stopped
the way an operator stops it (the runner's cancel: SIGTERM, drain within ``grace``).
Meanwhile a thread reads the group's memory from ``/proc`` every ``interval`` seconds
(:mod:`minigun.runner.procfs`).

What is kept, and why:

- the parent's (the group leader's) peak RSS: the base every deployment pays, shared
  pages included;
- the peak USS of any other member (a forked child): what one more fork adds, since its
  shared copy-on-write pages are already counted in the parent's RSS;
- the peak of ``parent RSS + sum of the children's USS`` at one instant: the footprint
  actually seen (a cgroup charges a shared page once, so this is close to what a
  container's memory limit is compared with);
- the number of distinct children seen and the most alive at once.

A short sample sees a short-lived ``cow_fork`` child only if it lives across a reading;
the plan multiplies the child size by the configured process count, not by what the
sample happened to catch.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from minigun.runner import procfs
from minigun.runner.isolated import OnLog, run_isolated
from minigun.runner.outcome import RunOutcome
from minigun.runner.spec import RunSpec

__all__ = ["MemorySample", "sample_run"]


@dataclass
class MemorySample:
    """The figures of one sample run, in bytes (0 where nothing was seen)."""

    seconds: float
    parent_rss: int = 0
    child_uss: int = 0
    child_rss: int = 0
    peak_total: int = 0
    children_seen: int = 0
    children_at_once: int = 0
    readings: int = 0
    outcome: RunOutcome | None = None
    _pids: set[int] = field(default_factory=set, repr=False)

    def add(
        self, parent: procfs.ProcessMemory | None, children: list[procfs.ProcessMemory]
    ) -> None:
        """Fold one reading of the group into the peaks."""
        if parent is None and not children:
            return
        self.readings += 1
        if parent is not None:
            self.parent_rss = max(self.parent_rss, parent.rss)
        for child in children:
            self._pids.add(child.pid)
            self.child_uss = max(self.child_uss, child.uss)
            self.child_rss = max(self.child_rss, child.rss)
        self.children_seen = len(self._pids)
        self.children_at_once = max(self.children_at_once, len(children))
        total = (parent.rss if parent else 0) + sum(child.uss for child in children)
        self.peak_total = max(self.peak_total, total)


def sample_run(
    spec: RunSpec,
    seconds: float,
    *,
    interval: float = 0.02,
    on_log: OnLog | None = None,
    find_child: Callable[[], list[int]] | None = None,
) -> MemorySample:
    """Run ``spec`` for at most ``seconds`` while measuring its process group.

    ``spec`` should have no retries (one attempt is one sample). The child is found as
    the process that this one started in a session of its own (the runner's way of
    starting it); ``find_child`` replaces that search (tests). Raises ``RuntimeError``
    where there is no ``/proc`` to read.
    """
    if not procfs.available():
        raise RuntimeError("measuring needs Linux's /proc; the plan can only be estimated here")
    sample = MemorySample(seconds)
    finder = find_child or (lambda: procfs.session_children(os.getpid()))
    done = threading.Event()
    stop = threading.Event()

    def watch() -> None:
        leader: int | None = None
        while not done.is_set():
            if leader is None:
                found = finder()
                leader = found[0] if found else None
            if leader is not None:
                sample.add(*procfs.group_memory(leader))
            done.wait(interval)

    watcher = threading.Thread(target=watch, name="minigun-sample", daemon=True)
    timer = threading.Timer(seconds, stop.set)
    timer.daemon = True
    watcher.start()
    timer.start()
    try:
        sample.outcome = run_isolated(spec, on_log=on_log, cancel_event=stop)
    finally:
        timer.cancel()
        done.set()
        watcher.join()
    return sample
