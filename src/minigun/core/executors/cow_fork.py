"""The cow_fork executor: a new forked child per item (or per ``chunk`` items).

The child inherits the parent's memory copy-on-write, items included, so nothing
is pickled on the way in: a stage can read a large structure loaded in
``before_run`` without copying it. The child runs the stage on its items, sends
the outputs back over a pipe (pickle protocol 5) and exits; the outputs then flow
on like any stage's. At most ``processes`` children exist at once: one driver
thread per process slot forks, waits and reaps, one child at a time.

A child that dies is an item failure carrying its signal or exit status; a child
whose item overruns ``timeout`` is killed and the item fails with
``mg.ItemTimeout`` (see :mod:`._fork_base`). Why forking from a multi-threaded
parent cannot deadlock the child is explained in :mod:`._fork_safety`.
"""

from __future__ import annotations

import select
from collections import deque
from typing import TYPE_CHECKING, Any

from minigun.core.executors import _fork_safety as safety
from minigun.core.executors._fork_base import Chunk, ForkExecutor
from minigun.core.executors._fork_child import run_once
from minigun.core.executors._fork_protocol import Channel, loads, read_reply

if TYPE_CHECKING:
    from minigun.core.engine import Run
    from minigun.core.stage import StageRuntime

__all__ = ["CowForkExecutor"]


class CowForkExecutor(ForkExecutor):
    name = "cow_fork"

    def __init__(self, runtime: StageRuntime, run: Run) -> None:
        super().__init__(runtime, run)
        self.chunk = int(runtime.node.options.get("chunk") or 1)
        self._live: dict[int, int] = {}  # slot -> pid of its working child
        # Children that have sent their reply and are exiting: reaped without waiting
        # (tearing down a large address space takes as long as a fork), at the latest
        # when the driver ends.
        self._exiting: dict[int, list[int]] = {}

    def drive(self, slot: int, todo: deque[Chunk], current: list[Chunk]) -> None:
        exiting = self._exiting.setdefault(slot, [])
        while True:
            chunk = self.next_chunk(todo, self.chunk)
            if chunk is None:
                return
            exiting[:] = [pid for pid in exiting if safety.reap(pid, block=False) is None]
            current.append(chunk)
            todo.extend(self._fork_one(slot, chunk))
            current.clear()

    def _fork_one(self, slot: int, chunk: Chunk) -> list[Chunk]:
        """Fork a child for ``chunk``, wait for its reply or its end, and settle."""
        assert self.progress is not None
        progress, runtime, timed = self.progress, self.runtime, self.timeout is not None
        progress.reset(slot)
        items = chunk.items

        def child(_down: int, up: int) -> None:
            run_once(runtime, items, up, progress, slot, timed)

        try:
            pid, _, up = safety.spawn(runtime.name, child, duplex=False)
        except OSError as exc:  # EAGAIN/ENOMEM: the items fail, retries may get through
            return self.fork_failed(chunk, exc)
        self._live[slot] = pid
        frame: Any = None
        timed_out = False
        try:
            if self.timeout is None:
                frame = read_reply(up)
            else:
                frame, timed_out = self._read_with_deadline(slot, chunk, up)
        finally:
            status = None
            if frame is None:  # dead, overrunning, or the driver is failing: make sure
                status = safety.kill_and_reap(pid)
            elif safety.reap(pid, block=False) is None:
                self._exiting[slot].append(pid)
            self._live.pop(slot, None)
            safety.release_fds(up)
        if frame is not None:
            return self.settle_reply(chunk, loads(frame))
        return self.settle_death(chunk, slot, pid, status, timed_out)

    def _read_with_deadline(self, slot: int, chunk: Chunk, up: int) -> tuple[Any, bool]:
        """The reply, or None once the child died or its item overran ``timeout``."""
        channel = Channel(up)
        try:
            poller = select.poll()
            poller.register(up, select.POLLIN)
            while True:
                wait = self.deadline_wait(slot, chunk)
                if wait is not None and wait <= 0:
                    return None, True
                poller.poll(None if wait is None else max(1, int(wait * 1000) + 1))
                frames = channel.receive()
                if frames:
                    return frames[0], False
                if channel.eof:
                    return None, False
        finally:
            channel.close()

    def cleanup(self, slot: int) -> None:
        pid = self._live.pop(slot, None)
        if pid is not None:  # only after an unexpected error in the driver
            safety.kill_and_reap(pid)
        for pid in self._exiting.pop(slot, []):
            safety.reap(pid)
