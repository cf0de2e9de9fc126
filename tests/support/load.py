"""Busy processes that keep every core loaded while a test session runs (``--load``).

A test that depends on speed passes on a quiet machine and fails on a busy one; run
the suite with ``pytest --load`` to find it before CI does. The burners are detached
from the test process (their parent exits at once), so the fork tests' check that no
child outlives a run does not see them; each one also exits by itself as soon as the
test process is gone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from support.processes import untraced_env

__all__ = ["start_burners", "stop_burners"]

# Run by a short-lived parent: it forks the burners, prints their pids and exits, so
# they are orphans, not descendants of the test process.
_START_BURNERS = """
import os, sys
watched, count = int(sys.argv[1]), int(sys.argv[2])
pids = []
for _ in range(count):
    pid = os.fork()
    if pid == 0:
        os.setsid()
        # Let go of the pipe the test process reads the pids from.
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        while True:
            for _ in range(200_000):
                pass
            try:
                os.kill(watched, 0)
            except OSError:
                os._exit(0)
    pids.append(pid)
print(" ".join(map(str, pids)), flush=True)
"""


def start_burners(count: int | None = None) -> list[int]:
    """Start ``count`` (default: one per core) CPU-bound processes; return their pids."""
    count = count or os.cpu_count() or 1
    # Pure load: no coverage tracer started in them (its .pth hook reads these).
    env = untraced_env()
    out = subprocess.run(
        [sys.executable, "-c", _START_BURNERS, str(os.getpid()), str(count)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout
    return [int(pid) for pid in out.split()]


def stop_burners(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
