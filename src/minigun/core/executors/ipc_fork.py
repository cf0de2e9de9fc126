"""The ipc_fork executor: ``processes`` persistent forked workers fed over pipes.

Each worker is forked once (again only if it dies) and keeps whatever state the
stage builds in it (``self.model = ...`` inside the stage, or in
``@mg.after_fork``) across all its items. Items travel in chunks, pickled with
protocol 5; results come back one reply per chunk, as soon as the chunk is done.

Chunk size adapts like a self-tuning ``multiprocessing.Pool`` chunksize (see
:mod:`._chunk_size`): chunks carry about :data:`TARGET_CHUNK_SECONDS` of work, so a million
trivial items cost a few hundred round trips while 5 ms items go one or two at a
time and keep every worker busy. A stage option ``chunk=N`` fixes the size instead.
Each worker has up to :data:`DEPTH` chunks outstanding, so it starts the next chunk
while the parent is still handling the previous reply.

One driver thread per worker does all of that worker's I/O, non-blocking, under
``poll``: it writes chunks while it reads replies, so a large chunk and a large
reply can never block each other on full pipes.

A worker that dies (segfault, ``os._exit``, SIGKILL, OOM kill) fails the item it
was on (see :mod:`._fork_base`), and the driver forks a new worker for the rest.
Results travel once per chunk, so the items of the same chunk that were finished
before the crash lost their results with the worker and run again: their side
effects may happen twice (at-least-once), their outputs are delivered once.
Why forking from the multi-threaded parent cannot deadlock a worker is explained
in :mod:`._fork_safety`.
"""

from __future__ import annotations

import gc
import select
import time
from collections import deque
from typing import TYPE_CHECKING

from minigun.core.executors import _fork_safety as safety
from minigun.core.executors._chunk_size import ChunkSizer
from minigun.core.executors._fork_base import Chunk, ForkExecutor
from minigun.core.executors._fork_child import serve
from minigun.core.executors._fork_protocol import Channel, Work, dumps, type_name

if TYPE_CHECKING:
    from minigun.core.engine import Run
    from minigun.core.stage import StageRuntime

__all__ = ["IpcForkExecutor"]

#: Seconds of child work one chunk should carry.
TARGET_CHUNK_SECONDS = 0.01
MAX_CHUNK = 8192
#: Chunks in flight per worker.
DEPTH = 2
#: While a worker is busy and the next chunk is not full, look for new items this often.
TOP_UP_POLL = 0.005
#: How long a worker may take to exit once its pipe is closed at the end of a run.
EXIT_GRACE = 5.0

monotonic = time.monotonic

_IN = select.POLLIN | select.POLLHUP | select.POLLERR
_OUT = select.POLLOUT


class _Worker:
    """One live worker process and the parent's end of its pipes."""

    __slots__ = ("channel", "down", "pid", "poller", "served", "up")

    def __init__(self, pid: int, down: int, up: int) -> None:
        self.pid = pid
        self.down = down
        self.up = up
        self.channel = Channel(up, down)
        self.poller = select.poll()
        self.poller.register(up, _IN)
        self.served = 0  # replies received: a worker that never replied died in setup


class IpcForkExecutor(ForkExecutor):
    name = "ipc_fork"

    def __init__(self, runtime: StageRuntime, run: Run) -> None:
        super().__init__(runtime, run)
        chunk = runtime.node.options.get("chunk")
        self.sizer = ChunkSizer(int(chunk) if chunk else None, TARGET_CHUNK_SECONDS, MAX_CHUNK)
        self._workers: dict[int, _Worker] = {}
        self._spawned = 0

    # ------------------------------------------------------------------ workers

    def _spawn(self, slot: int) -> _Worker:
        assert self.progress is not None
        progress, runtime, timed = self.progress, self.runtime, self.timeout is not None
        progress.reset(slot)
        if self._spawned >= self.workers:
            gc.freeze()  # a respawn: keep what was created since the start shared too
        self._spawned += 1

        def child(down: int, up: int) -> None:
            serve(runtime, down, up, progress, slot, timed)

        pid, down, up = safety.spawn(runtime.name, child, duplex=True)
        worker = _Worker(pid, down, up)
        self._workers[slot] = worker
        return worker

    def _retire(self, slot: int, kill: bool) -> int | None:
        """End the slot's worker; returns its wait status."""
        worker = self._workers.pop(slot, None)
        if worker is None:
            return None
        safety.release_fds(worker.down)
        status: int | None = None
        if not kill:  # end of input: it exits on its own once it reads end-of-file
            deadline = time.monotonic() + EXIT_GRACE
            while status is None and time.monotonic() < deadline:
                status = safety.reap(worker.pid, block=False)
                if status is None:
                    time.sleep(0.001)
        if status is None:
            status = safety.kill_and_reap(worker.pid)
        worker.channel.close()
        safety.release_fds(worker.up)
        return status

    def cleanup(self, slot: int) -> None:
        self._retire(slot, kill=True)  # still there only if the driver failed

    # ------------------------------------------------------------------ sending

    def _encode(self, chunk: Chunk) -> bytes | None:
        """The chunk's frame; items that cannot be pickled fail here (None: none left)."""
        window = self.window_for(chunk)
        try:
            return dumps(Work(chunk.seq, chunk.items, window))
        except Exception:
            pass
        runtime = self.runtime
        keep: list[int] = []
        for i, item in enumerate(chunk.items):
            try:
                dumps(item)
            except Exception as exc:
                error = TypeError(
                    f"stage {runtime.name!r}: an item of type {type_name(item)!r} cannot be sent "
                    f"to an ipc_fork worker (items are pickled): {exc}; make it picklable "
                    "or use execution='cow_fork', which does not pickle items"
                )
                runtime.settle_failure(item, error, chunk.attempts[i] + 1)
                runtime.complete(1, 0, 0, [], [], units=runtime.units_of([item]))
            else:
                keep.append(i)
        chunk.items = [chunk.items[i] for i in keep]
        chunk.attempts = [chunk.attempts[i] for i in keep]
        return dumps(Work(chunk.seq, chunk.items, window)) if chunk.items else None

    # ------------------------------------------------------------------ the driver

    def drive(self, slot: int, todo: deque[Chunk], current: list[Chunk]) -> None:
        pending = Chunk([])  # new items taken from the inbox, not sent yet
        try:
            self._drive(slot, todo, current, pending)
        except BaseException:
            todo.append(pending)  # so that the caller retires them
            raise

    def _drive(self, slot: int, todo: deque[Chunk], current: list[Chunk], pending: Chunk) -> None:
        """Keep the worker fed: retries first, then new items in chunks of ``limit()``.

        While the worker is busy, new items accumulate in ``pending`` (taken from the
        inbox without waiting) until a full chunk is ready, so trivial items travel
        in large chunks even when the inbox holds fewer than a chunk at any moment;
        when the worker is idle, whatever is there goes at once.
        """
        inbox = self.runtime.inbox
        worker: _Worker | None = None
        seq = 0
        closed = False

        def send(chunk: Chunk) -> None:
            nonlocal seq, worker
            seq += 1
            chunk.seq = seq
            payload = self._encode(chunk)
            if payload is None:
                return
            if worker is None:
                try:
                    worker = self._spawn(slot)
                except OSError as exc:  # EAGAIN/ENOMEM: the items fail, retries may follow
                    todo.extend(self.fork_failed(chunk, exc))
                    return
            current.append(chunk)
            worker.channel.send(payload)

        while True:
            limit = self.sizer.limit()
            self.widen_inbox(limit)
            room = worker is None or not worker.channel.want_write
            now = monotonic()
            while room and len(current) < DEPTH and todo and todo[0].due <= now:
                send(todo.popleft())
            if not closed and len(pending.items) < limit:
                idle = not current and not pending.items
                wait: float | None = 0.0
                if idle:
                    wait = None if not todo else max(0.0, min(c.due for c in todo) - now)
                batch = inbox.get_batch(limit - len(pending.items), wait)
                if batch is None:
                    closed = True
                elif pending.items:
                    pending.items.extend(batch)
                else:
                    pending.items = batch  # the common case: no copy
            if (
                pending.items
                and room
                and len(current) < DEPTH
                and (len(pending.items) >= limit or not current or closed)
            ):
                chunk, pending.items = Chunk(pending.items), []
                send(chunk)
                if worker is not None and len(current) < DEPTH and not worker.channel.want_write:
                    # Fill the worker's next slot now rather than after its next reply:
                    # a worker with a chunk queued behind the one it is on does not wait
                    # for this thread between chunks.
                    continue
            if not current:
                if closed and not pending.items and not todo:
                    self._retire(slot, kill=False)
                    return
                if closed and todo and not pending.items:
                    time.sleep(min(max(0.0, min(c.due for c in todo) - monotonic()), 0.05))
                continue
            assert worker is not None
            top_up = not closed and len(pending.items) < limit
            worker = self._wait(slot, worker, todo, current, top_up)

    def _wait(
        self,
        slot: int,
        worker: _Worker,
        todo: deque[Chunk],
        current: list[Chunk],
        top_up: bool,
    ) -> _Worker | None:
        """Wait for the worker to make progress; handle replies, a death or an overrun."""
        channel = worker.channel
        deadline = self.deadline_wait(slot, current[0])
        if deadline is not None and deadline <= 0:
            self._dead(slot, worker, todo, current, timed_out=True)
            return None
        waits = [w for w in (deadline, TOP_UP_POLL if top_up else None) if w is not None]
        if todo:
            waits.append(max(0.0, min(c.due for c in todo) - monotonic()))
        timeout_ms = None if not waits else max(1, int(min(waits) * 1000) + 1)
        if channel.want_write:
            worker.poller.register(worker.down, _OUT)
        try:
            worker.poller.poll(timeout_ms)
        finally:
            if channel.want_write:
                worker.poller.unregister(worker.down)
        if channel.want_write:
            channel.flush()
        for frame in channel.receive():
            chunk = current.pop(0)
            worker.served += 1
            reply, again = self.load_reply(chunk, frame)
            if reply is None:
                todo.extend(again)
                continue
            assert reply.seq == chunk.seq, (reply.seq, chunk.seq)
            self.sizer.learn(len(chunk.items), reply.busy)
            todo.extend(self.settle_reply(chunk, reply))
        if channel.eof or (channel.broken and not current):
            if current:
                self._dead(slot, worker, todo, current, timed_out=False)
            else:
                self._retire(slot, kill=True)
            return None
        return worker

    def _dead(
        self,
        slot: int,
        worker: _Worker,
        todo: deque[Chunk],
        current: list[Chunk],
        timed_out: bool,
    ) -> None:
        """The worker died or overran: settle the chunk it was on, send the rest again."""
        pid = worker.pid
        status = self._retire(slot, kill=True)
        assert self.progress is not None
        first, rest = current[0], current[1:]
        current.clear()
        seq, _index, _ = self.progress.read(slot)
        if seq != first.seq and worker.served and not timed_out:
            # Killed between chunks (say, by an operator while idle): no item to blame.
            rest.insert(0, first)
            again = []
        else:
            again = self.settle_death(first, slot, pid, status, timed_out)
        for chunk in reversed(rest):
            todo.appendleft(chunk)
        todo.extend(again)
