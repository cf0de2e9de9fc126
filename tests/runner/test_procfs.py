"""Reading a process group's memory from /proc (what ``inspect --sample`` measures)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from minigun.runner import procfs
from minigun.runner.sample import MemorySample
from support import wait_until

pytestmark = pytest.mark.skipif(not procfs.available(), reason="needs Linux's /proc")

#: A group leader that forks one child holding 8 MiB of private pages, then waits.
LEADER = (
    "import os, sys, time\n"
    "if os.fork() == 0:\n"
    "    block = bytearray(8 * 1024 * 1024)\n"
    "    for i in range(0, len(block), 4096): block[i] = 1\n"
    "    time.sleep(60); os._exit(0)\n"
    "print('ready', flush=True); time.sleep(60)\n"
)


def test_this_process_has_a_resident_set() -> None:
    memory = procfs.process_memory(os.getpid())
    assert memory is not None
    assert memory.rss > 0 and 0 < memory.uss <= memory.rss


def test_a_gone_process_reads_as_none() -> None:
    assert procfs.process_memory(2**22 + 12345) is None  # above Linux's largest pid


def test_a_session_child_and_its_fork_are_found_and_measured() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", LEADER], stdout=subprocess.PIPE, start_new_session=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        assert procfs.session_children(os.getpid()) == [proc.pid]
        sample = MemorySample(seconds=1)

        def child_touched_its_pages() -> bool:
            leader, children = procfs.group_memory(proc.pid)
            sample.add(leader, children)
            return bool(children) and children[0].uss >= 8 * 1024 * 1024

        wait_until(child_touched_its_pages, 10.0, "the fork's 8 MiB to be resident")
        assert sample.parent_rss > 0
        assert sample.children_seen == 1 and sample.children_at_once == 1
        assert sample.child_uss >= 8 * 1024 * 1024
        assert sample.peak_total >= sample.child_uss  # parent and child at one instant
    finally:
        os.killpg(proc.pid, 9)
        proc.wait()
