"""The cow_fork executor: a new forked child per item (or per chunk of items).

The child inherits the parent's memory copy-on-write, items included, so nothing
is pickled on the way in: a stage can read a large structure loaded in
``before_run`` without copying it. The child runs the stage on its items, sends
the outputs back over a pipe (pickle protocol 5) and exits; the outputs then flow
on like any stage's. At most ``processes`` children exist at once: one driver
thread per process slot forks, waits and reaps, one child at a time.

How many items one child gets. A fork is not free: the parent copies its page
tables, parent and child take copy-on-write faults on every page they write
afterwards, and the child's exit tears the copy down again. That costs from
about 0.2 ms on a quiet machine to 2 ms and more on a small VM, a cost that grows
with the parent's memory. One child per item is the model and what ``chunk=1``
guarantees (nothing an item does in its child is seen by any other item, and a
crash costs exactly one item its attempt). By default (no ``chunk``) a child
gets one item *unless* that would spend more than :data:`OVERHEAD_SHARE` of the
stage's time on forking: the driver measures what each child costs beyond its
items (the parent's CPU in ``fork()`` plus the child's CPU from ``wait4``, minus
the CPU the child reports for its items) and the time per item (wall time, so an
I/O-bound stage is not mistaken for a fast one), and gives a child just enough
items to bring the share under the limit. The limit is tight (1%) because part
of a fork's cost cannot be told apart from the items': the copy-on-write faults
a child takes while it runs them. Items that take a hundred forks or more keep
one child each; items of a few milliseconds go a few dozen per child; trivial
ones thousands (measured figures in ``benchmarks/fork.py``). To keep every slot
busy to the end of a stream, an adaptive chunk never takes more than its fair
share of the items waiting in the inbox. ``chunk=N`` fixes the size.

A child that dies is an item failure carrying its signal or exit status; a child
whose item overruns ``timeout`` is killed and the item fails with
``mg.ItemTimeout`` (see :mod:`._fork_base`). The other items of its chunk run
again in a new child (their outputs are delivered once; side effects they had
in the dead child may repeat). Why forking from a multi-threaded parent cannot
deadlock the child is explained in :mod:`._fork_safety`.
"""

from __future__ import annotations

import select
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from minigun.core.executors import _fork_safety as safety
from minigun.core.executors._chunk_size import ChunkSizer, blend
from minigun.core.executors._fork_base import Chunk, ForkExecutor
from minigun.core.executors._fork_child import run_once
from minigun.core.executors._fork_protocol import Channel, Work, read_reply

if TYPE_CHECKING:
    from minigun.core.run_context import RunContext
    from minigun.core.stage import StageRuntime

__all__ = ["CowForkExecutor"]

#: The most of a stage's time the adaptive chunk lets forking cost.
OVERHEAD_SHARE = 0.01
MAX_CHUNK = 8192
#: CPU seconds one child costs, fixed instead of measured (None: measure it). A seam
#: for tests: the measured cost follows the machine's load (and a coverage tracer in
#: the child), so a test of the chunking rule sets the cost it reasons about.
FIXED_CHILD_COST: float | None = None


class CowForkExecutor(ForkExecutor):
    name = "cow_fork"
    #: A death inside a progress window replays its items one child each: at most this
    #: many forks (about a tenth of a second), where ipc_fork replays 1024 items for the
    #: price of as many round trips. Windows of 128 trivial items already make the
    #: progress writes negligible.
    MAX_WINDOW = 128

    def __init__(self, runtime: StageRuntime, run: RunContext) -> None:
        super().__init__(runtime, run)
        chunk = runtime.node.options.get("chunk")
        self.sizer = ChunkSizer(int(chunk) if chunk else None, None, MAX_CHUNK)
        #: CPU seconds one child costs beyond its items, a running estimate.
        self.child_cost: float | None = FIXED_CHILD_COST
        if self.child_cost is not None:
            self.sizer.target = self.child_cost / OVERHEAD_SHARE
        self._live: dict[int, int] = {}  # slot -> pid of its working child
        # slot -> {pid: the part of its cost known so far (None: learn nothing)} of
        # children that have replied and are exiting: reaped without waiting (tearing
        # down a large address space takes as long as a fork), at the latest when the
        # driver ends.
        self._exiting: dict[int, dict[int, float | None]] = {}

    def limit(self) -> int:
        """Items for the next child (see the module docstring)."""
        limit = self.sizer.limit()
        self.widen_inbox(limit)
        if self.sizer.fixed is None and limit > 1:
            fair = -(-len(self.runtime.inbox) // self.workers)
            limit = max(1, min(limit, fair))
        return limit

    def drive(self, slot: int, todo: deque[Chunk], current: list[Chunk]) -> None:
        self._exiting[slot] = {}
        while True:
            chunk = self.next_chunk(todo, self.limit())
            if chunk is None:
                return
            self._reap_exiting(slot, block=False)
            current.append(chunk)
            todo.extend(self._fork_one(slot, chunk))
            current.clear()

    def _reap_exiting(self, slot: int, block: bool) -> None:
        """Reap the slot's children that have exited, and learn what each cost."""
        exiting = self._exiting.get(slot, {})
        for pid, known_cost in list(exiting.items()):
            reaped = safety.reap_with_cpu(pid, block)
            if reaped is None:
                continue
            del exiting[pid]
            status, cpu = reaped
            if known_cost is not None and status == 0 and cpu > 0 and FIXED_CHILD_COST is None:
                self.child_cost = blend(self.child_cost, max(0.0, known_cost + cpu))
                self.sizer.target = self.child_cost / OVERHEAD_SHARE

    def _fork_one(self, slot: int, chunk: Chunk) -> list[Chunk]:
        """Fork a child for ``chunk``, wait for its reply or its end, and settle."""
        assert self.progress is not None
        progress, runtime, timed = self.progress, self.runtime, self.timeout is not None
        progress.reset(slot)
        items = chunk.items
        work = Work(0, items, self.window_for(chunk))

        def child(_down: int, up: int) -> None:
            run_once(runtime, work, up, progress, slot, timed)

        forking = time.thread_time()
        try:
            pid, _, up = safety.spawn(runtime.name, child, duplex=False)
        except OSError as exc:  # EAGAIN/ENOMEM: the items fail, retries may get through
            return self.fork_failed(chunk, exc)
        fork_cpu = time.thread_time() - forking
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
            else:
                self._exiting[slot][pid] = None
            self._live.pop(slot, None)
            safety.release_fds(up)
        if frame is None:
            return self.settle_death(chunk, slot, pid, status, timed_out)
        reply, again = self.load_reply(chunk, frame)
        if reply is None:
            return again
        self.sizer.learn(len(items), reply.busy)
        # What the child cost beyond its items: this, plus its CPU once it is reaped.
        self._exiting[slot][pid] = fork_cpu - reply.cpu
        self._reap_exiting(slot, block=False)
        return self.settle_reply(chunk, reply)

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
        self._reap_exiting(slot, block=True)
