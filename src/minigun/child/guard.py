"""The child's lifetime guard: when the runner dies, the whole process group dies with it.

The runner holds the write end of the child's control channel (its stdin) for as long
as it lives and never closes it while the child runs; the kernel closes it when the
runner dies, however it dies (SIGKILL included). End-of-file on that pipe therefore
means the platform has given up on this attempt -- Airflow SIGKILLed the task process,
Prefect killed a cancelled flow run -- and a drain that nobody supervises could overlap
the platform's retry of the same task. So the guard does not drain: it SIGKILLs the
group at once. Grace is what a *living* runner gives.

The guard is armed before the target is imported (a pipeline stuck importing, or in
``__init__``, is covered too) and depends on nothing else: its own daemon thread,
blocked in ``select`` on the pipe, waking every ``POLL`` seconds to check also that its
parent is still the runner (a second witness, for a runner whose pipe end leaked into
a process that outlives it). It does not write to stdout or stderr -- their reader is
gone -- and no stream error or user code path can end it, short of killing the
process.

Lines after the spec on the control channel are control messages; the only one today
is ``{"stop": REASON}``, sent just before the runner signals the group, so that the
run records *why* it was stopped (a timeout is 124, not 143).
"""

from __future__ import annotations

import json
import os
import select
import signal
import threading
from collections.abc import Callable

__all__ = ["POLL", "LifetimeGuard"]

#: Seconds between checks of the parent pid while the pipe stays quiet.
POLL = 0.5


class LifetimeGuard:
    """Watches the control channel ``fd``; ends the group when the runner is gone."""

    def __init__(self, fd: int, runner_pid: int | None) -> None:
        self.fd = fd
        self.runner_pid = runner_pid
        self.stop_reason: str | None = None
        self._pending = b""
        self._on_stop: Callable[[str], None] | None = None
        # Messages are read by the guard thread, and also by poll() from a signal
        # handler; one lock (re-entrant: a handler may interrupt a handler) keeps a
        # message from being read twice or torn between the two.
        self._lock = threading.RLock()
        self._eof = False

    def read_spec(self) -> bytes | None:
        """The first line of the channel (the spec), or None if the runner died first."""
        while b"\n" not in self._pending:
            chunk = os.read(self.fd, 1 << 20)
            if not chunk:
                return None
            self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        return line

    def arm(self, on_stop: Callable[[str], None] | None = None) -> None:
        """Start watching. ``on_stop(reason)`` is called for a control stop message."""
        self._on_stop = on_stop
        threading.Thread(target=self._watch, name="minigun-lifetime-guard", daemon=True).start()

    def poll(self) -> None:
        """Read and act on whatever control messages have already arrived, now.

        The runner writes ``{"stop": "timeout"}`` *before* it signals the group, so a
        SIGTERM handler that calls this first knows why it was sent, even when the
        guard thread has not been scheduled since.
        """
        with self._lock:
            if self._eof:
                return
            try:
                readable, _, _ = select.select([self.fd], [], [], 0)
                chunk = os.read(self.fd, 65536) if readable else None
            except OSError:
                chunk = b""
            if chunk is None:
                return
            if not chunk:
                self._eof = True  # the guard thread sees it too and ends the group
                return
            self._pending += chunk
            self._handle_messages()

    def _watch(self) -> None:
        with self._lock:
            self._handle_messages()
        while not self._eof:
            try:
                readable, _, _ = select.select([self.fd], [], [], POLL)
            except InterruptedError:  # pragma: no cover - PEP 475 retries select itself
                continue
            if readable:
                self.poll()
            elif self.runner_pid is not None and os.getppid() != self.runner_pid:
                break
        end_group()

    def _handle_messages(self) -> None:
        while b"\n" in self._pending:
            line, _, self._pending = self._pending.partition(b"\n")
            try:
                message = json.loads(line)
            except ValueError:
                continue
            reason = message.get("stop") if isinstance(message, dict) else None
            if isinstance(reason, str):
                self.stop_reason = reason
                if self._on_stop is not None:
                    try:
                        self._on_stop(reason)
                    except Exception:  # the guard must survive anything a callback does
                        pass


def end_group() -> None:
    """SIGKILL this process's group (this process included) -- or just this process
    when it does not lead its group (started by hand, not by a runner)."""
    try:
        if os.getpgrp() == os.getpid():
            os.killpg(os.getpid(), signal.SIGKILL)
    finally:
        os.kill(os.getpid(), signal.SIGKILL)
