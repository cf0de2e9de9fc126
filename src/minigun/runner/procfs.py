"""Memory of a process group, read from Linux's ``/proc`` (no psutil).

The resource plan's measured figures come from here: the runner's child leads its own
process group (its session), and every fork the pipeline makes stays in that group, so
"the run" is exactly the processes whose process-group id is the child's pid.

Per process we read ``/proc/PID/smaps_rollup`` (Linux 4.14+): ``Rss`` (what ``top``
shows, shared pages included), ``Pss`` and the private pages (``Private_Clean`` +
``Private_Dirty``, the USS: what the process alone costs, and what a forked child adds
on top of the pages it still shares copy-on-write with its parent). Where that file is
missing, ``/proc/PID/status`` gives ``VmRSS`` and the USS is taken as the RSS (an
over-estimate, never an under-estimate). psutil would do the same in more code and one
more dependency; the core install stays at click and rich.

A process can exit between listing and reading: it is simply left out.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["ProcessMemory", "available", "group_memory", "session_children"]

_PROC = "/proc"


@dataclass(frozen=True)
class ProcessMemory:
    """One process at one instant, in bytes."""

    pid: int
    rss: int
    uss: int


def available() -> bool:
    """Whether this system has a Linux-style ``/proc`` to measure with."""
    return os.path.isfile(os.path.join(_PROC, "self", "stat"))


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name (which may hold spaces)."""
    try:
        with open(os.path.join(_PROC, str(pid), "stat"), "rb") as f:
            raw = f.read().decode("ascii", "replace")
    except OSError:
        return None
    end = raw.rfind(")")
    return raw[end + 2 :].split() if end >= 0 else None


def _pids() -> list[int]:
    try:
        return [int(name) for name in os.listdir(_PROC) if name.isdigit()]
    except OSError:
        return []


def session_children(parent: int) -> list[int]:
    """Children of ``parent`` that lead their own session (how the runner starts a child)."""
    found = []
    for pid in _pids():
        fields = _stat_fields(pid)
        # After the name: state, ppid, pgrp, session, ...
        if fields and len(fields) > 3 and int(fields[1]) == parent and int(fields[3]) == pid:
            found.append(pid)
    return found


def _group_pids(pgid: int) -> list[int]:
    members = []
    for pid in _pids():
        fields = _stat_fields(pid)
        if fields and len(fields) > 2 and int(fields[2]) == pgid and fields[0] != "Z":
            members.append(pid)
    return members


def _read_kib(path: str, wanted: tuple[str, ...]) -> dict[str, int] | None:
    try:
        with open(path, "rb") as f:
            text = f.read().decode("ascii", "replace")
    except OSError:
        return None
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key in wanted:
            parts = rest.split()
            if parts and parts[0].isdigit():
                values[key] = int(parts[0]) * 1024
    return values


def process_memory(pid: int) -> ProcessMemory | None:
    """``pid``'s RSS and USS now, or None when it is gone (or not readable)."""
    rollup = _read_kib(
        os.path.join(_PROC, str(pid), "smaps_rollup"), ("Rss", "Private_Clean", "Private_Dirty")
    )
    if rollup and "Rss" in rollup:
        uss = rollup.get("Private_Clean", 0) + rollup.get("Private_Dirty", 0)
        return ProcessMemory(pid, rollup["Rss"], uss or rollup["Rss"])
    status = _read_kib(os.path.join(_PROC, str(pid), "status"), ("VmRSS",))
    if status and "VmRSS" in status:
        return ProcessMemory(pid, status["VmRSS"], status["VmRSS"])
    return None


def group_memory(pgid: int) -> tuple[ProcessMemory | None, list[ProcessMemory]]:
    """The group leader's memory and that of every other live member of its group."""
    leader: ProcessMemory | None = None
    others: list[ProcessMemory] = []
    for pid in _group_pids(pgid):
        memory = process_memory(pid)
        if memory is None:
            continue
        if pid == pgid:
            leader = memory
        else:
            others.append(memory)
    return leader, others
