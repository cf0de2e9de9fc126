"""What both fork executors share in the parent: lifecycle, accounting, retries, blame.

Each fork executor runs one *driver* thread per process slot (``processes`` of
them). A driver takes chunks of items from the stage's inbox, has a child process
them and retires them through the runtime: every item taken from the inbox is
retired exactly once, by ``StageRuntime.complete`` (a failed item counts in
``n_in`` only, after ``settle_failure`` applied ``on_error``). Items that are to be
tried again (``retries``) or run again (their results died with a child) stay with
the driver in its ``todo`` list and keep the run's in-flight count up meanwhile, so
the run cannot end under them.

When a child dies or overruns its per-item ``timeout``, the item it was working on
(read from the shared :class:`~._fork_protocol.Progress` slot) gets the failure,
``mg.ChildDied`` with the signal or exit status or ``mg.ItemTimeout``, and goes
through ``retries``/``on_error`` like any exception. A child publishes its progress
once per window of items (see :mod:`._fork_protocol`); when it dies inside a window
of several, that window's items go again one item per chunk, without using an
attempt, and the death among them, if it happens again, has its exact item. Every
death either costs some item an attempt or turns a window into one-item chunks
(whose deaths do cost one), so a stage that keeps killing its children cannot loop
forever. The per-item ``timeout`` runs from the moment the child starts the item (it
is read from the same shared slot; such stages publish every item); a child's
``@mg.after_fork`` hook is setup, not an item, and is not timed.

Lifecycle: ``start`` calls the ``@mg.before_fork`` hooks (once per run, in the
parent), freezes the collector (see ``_fork_safety.freeze_gc``) and starts the
drivers; ``join`` returns once every driver has reaped its children. Where
``fork`` does not exist the executor runs the stage on threads instead, with one
``RuntimeWarning`` per run.
"""

from __future__ import annotations

import sys
import threading
import time
import warnings
from collections import deque
from typing import TYPE_CHECKING

from minigun import platform
from minigun.core.errors import ChildDied, ItemTimeout
from minigun.core.executors import _fork_safety as safety
from minigun.core.executors._chunk_size import ChunkSizer
from minigun.core.executors._chunks import Chunk, fail_chunk, one_per_chunk, settle_chunk
from minigun.core.executors._fork_protocol import Progress, Reply, loads
from minigun.core.executors.base import Executor
from minigun.core.executors.thread import ThreadExecutor
from minigun.core.stage import RemoteFailure

if TYPE_CHECKING:
    from minigun.core.run_context import RunContext
    from minigun.core.stage import StageRuntime

__all__ = ["Chunk", "Failure", "ForkExecutor"]

monotonic = time.monotonic

#: (index in chunk, exception, traceback text or None)
Failure = RemoteFailure


class ForkExecutor(Executor):
    """Base of :class:`CowForkExecutor` and :class:`IpcForkExecutor`."""

    name = "fork"
    #: Seconds of work per progress window, and the most items one may hold: see
    #: ``window_for``. Larger windows cost less per item; a death inside one costs a
    #: replay of its items one per chunk (a round trip each on ipc_fork, a fork each
    #: on cow_fork).
    WINDOW_SECONDS = 50e-6
    MAX_WINDOW = 1024
    sizer: ChunkSizer

    def __init__(self, runtime: StageRuntime, run: RunContext) -> None:
        super().__init__(runtime, run)
        self.node = runtime.node
        self.timeout = runtime.node.timeout
        self._threads: list[threading.Thread] = []
        self._fallback: ThreadExecutor | None = None
        self._started = False
        self.progress: Progress | None = None
        if not platform.fork_supported():
            self._fallback = ThreadExecutor(runtime, run)
            self._fallback.workers = self.workers

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self._fallback is not None:
            if safety.once_per_run(self.run, "fork-fallback"):
                warnings.warn(
                    f"fork is not available on this platform ({sys.platform}); "
                    f"fork stages (first: {self.runtime.name!r}) run on threads instead",
                    RuntimeWarning,
                    stacklevel=2,
                )
            self._fallback.start()
            return
        if safety.once_per_run(self.run, "before_fork"):
            self.run.call_hooks("before_fork")
        self.progress = Progress(self.workers)
        safety.freeze_gc()
        self._started = True
        for slot in range(self.workers):
            thread = threading.Thread(
                target=self._guarded,
                args=(slot,),
                name=f"minigun-{self.name}-{self.runtime.name}-{slot}",
                daemon=True,
            )
            self._threads.append(thread)
            thread.start()

    def join(self) -> None:
        if self._fallback is not None:
            self._fallback.join()
            return
        for thread in self._threads:
            thread.join()
        if self._started:
            self._started = False
            safety.unfreeze_gc()
            if self.progress is not None:
                self.progress.close()

    def _guarded(self, slot: int) -> None:
        todo: deque[Chunk] = deque()
        current: list[Chunk] = []
        try:
            self.drive(slot, todo, current)
        except BaseException as exc:  # an executor bug must fail the run, not hang it
            self.cleanup(slot)
            self.run.fail(exc, self.runtime.name)
            self._fail_items(sum(len(c.items) for c in [*todo, *current]))
            # Keep draining: a producer blocked on this stage's full inbox must not
            # wait forever for a driver that is gone.
            inbox = self.runtime.inbox
            while (batch := inbox.get_batch(512)) is not None:
                self._fail_items(len(batch))
        finally:
            self.cleanup(slot)

    def _fail_items(self, n: int) -> None:
        if n:
            with self.runtime._lock:
                self.runtime.stats.errors += n
                self.runtime.stats.failed += n
            self.runtime.complete(n, 0, 0, [], [])

    def drive(self, slot: int, todo: deque[Chunk], current: list[Chunk]) -> None:
        """The driver loop of one slot; ``current`` lists chunks taken but not retired."""
        raise NotImplementedError

    def cleanup(self, slot: int) -> None:
        """Make sure the slot's child is gone (called when the driver ends, however)."""

    # ------------------------------------------------------------------ taking work

    def widen_inbox(self, limit: int) -> None:
        """Let the stage's inbox hold two chunks of ``limit`` items, if that is more
        than its ``queue_size``.

        Chunks of trivial items run to thousands of items, more than the default
        inbox of 1,000. Filled through the inbox alone, one chunk would take many
        rounds of the producer waking, refilling and blocking on the full inbox
        (ipc_fork on a million trivial items ran at two thirds of the speed). The
        bound stays in proportion: chunks are large only for items that take
        microseconds, and a driver holds a chunk or two beyond the inbox anyway.
        """
        self.runtime.inbox.capacity = max(self.node.queue_size, 2 * limit)

    def next_chunk(self, todo: deque[Chunk], limit: int, wait: bool = True) -> Chunk | None:
        """The next chunk to send: a due retry or rerun first, else new items.

        Returns None when there is nothing now and, with ``wait``, nothing will come
        (the inbox is closed and no retry is pending); without ``wait``, None just
        means "nothing ready now".
        """
        inbox = self.runtime.inbox
        while True:
            now = monotonic()
            if todo:
                ready = next((c for c in todo if c.due <= now), None)
                if ready is not None:
                    todo.remove(ready)
                    return ready
                due = min(c.due for c in todo)
                batch = inbox.get_batch(limit, max(0.0, due - now) if wait else 0)
                if batch is None:  # closed: only the pending retries are left
                    if not wait:
                        return None
                    time.sleep(min(max(0.0, due - monotonic()), 0.05))
                    continue
            else:
                batch = inbox.get_batch(limit, None if wait else 0)
                if batch is None:
                    return None
            if batch:
                return Chunk(batch)
            if not wait:
                return None

    # ------------------------------------------------------------------ retiring work

    def load_reply(
        self, chunk: Chunk, frame: bytes | bytearray
    ) -> tuple[Reply | None, list[Chunk]]:
        """Unpickle a child's reply to ``chunk``; ``(None, what to send again)`` if it
        cannot be rebuilt in the parent.

        The child pickled it, so this only fails when some output's class or
        ``__reduce__`` works in the child but not here. Which item's output it is
        cannot be told from a broken pickle, so the items go again one per chunk
        (without using an attempt: at least once, like the items of a child that
        died), and the one whose reply still fails is an item failure naming the stage.
        """
        try:
            return loads(frame), []
        except Exception as exc:
            if len(chunk.items) > 1:
                return None, one_per_chunk(chunk)
            error = TypeError(
                f"stage {self.runtime.name!r}: a result sent back from the {self.name} child "
                f"process cannot be unpickled in the parent: {type(exc).__name__}: {exc}"
            )
            return None, fail_chunk(self.runtime, chunk, [(0, error, None)])

    def settle_reply(self, chunk: Chunk, reply: Reply) -> list[Chunk]:
        return settle_chunk(self.runtime, chunk, reply)

    def window_for(self, chunk: Chunk) -> int:
        """Items per progress window for ``chunk`` (recorded on it for ``settle_death``).

        One with a per-item ``timeout`` (its clock starts with each item) or for a
        chunk that already has one-item windows (a replay); else about
        ``WINDOW_SECONDS`` of work, from the sizer's estimate of an item.
        """
        if self.timeout is not None:
            chunk.window = 1
        elif not chunk.window:
            chunk.window = self.sizer.window(self.WINDOW_SECONDS, self.MAX_WINDOW)
        return chunk.window

    def settle_death(
        self, chunk: Chunk, slot: int, pid: int, status: int | None, timed_out: bool
    ) -> list[Chunk]:
        """A child died (or was killed for overrunning) while ``chunk`` was its work.

        The shared slot says which window of the chunk the child was in. Items before
        it are sent again (their results died with the child), items after it never
        started. A one-item window names the item to blame: it fails. A larger one
        names no item, so its items are sent again one per chunk, each with a window
        of one, and none of them pays an attempt for this death: if the death comes
        back, it comes back on one item, which then pays. (An overrun is always
        exact: stages with a timeout have windows of one item.)
        """
        assert self.progress is not None
        seq, index, _ = self.progress.read(slot)
        n = len(chunk.items)
        started = seq == chunk.seq and 0 <= index < n
        end = min(n, index + max(1, chunk.window)) if started else 0
        if started and end - index > 1 and not timed_out:
            items, attempts = chunk.items, chunk.attempts
            again = [Chunk([items[i]], [attempts[i]], window=1) for i in range(index, end)]
            rest = [i for i in range(n) if not index <= i < end]
            if rest:
                again.append(Chunk([items[i] for i in rest], [attempts[i] for i in rest]))
            return again
        exc: BaseException
        if timed_out:
            exc = ItemTimeout(
                f"stage {self.runtime.name!r} took longer than its timeout of {self.timeout}s "
                f"on one item; its {self.name} child process (pid {pid}) was killed"
            )
        else:
            what = "an item" if started else "a chunk of items"
            exc = ChildDied(
                f"stage {self.runtime.name!r}: its {self.name} child process (pid {pid}) "
                f"{safety.describe_exit(status)} while processing {what}"
            )
        if started:
            failures: list[Failure] = [(index, exc, None)]
            rerun = [i for i in range(n) if i != index]
        else:
            # Died before starting the chunk (after_fork, reading) or while sending
            # results: nobody to single out, so every item of the chunk pays an attempt.
            failures = [(i, exc, None) for i in range(n)]
            rerun = []
        return fail_chunk(self.runtime, chunk, failures, rerun)

    def fork_failed(self, chunk: Chunk, exc: OSError) -> list[Chunk]:
        """``fork()`` itself failed (process or memory limits): every item pays an attempt."""
        error = ChildDied(f"stage {self.runtime.name!r}: cannot fork a {self.name} child: {exc}")
        failures: list[Failure] = [(i, error, None) for i in range(len(chunk.items))]
        return fail_chunk(self.runtime, chunk, failures)

    def deadline_wait(self, slot: int, chunk: Chunk) -> float | None:
        """Seconds until the item in progress overruns ``timeout`` (<= 0: it has);
        None without a timeout."""
        if self.timeout is None:
            return None
        assert self.progress is not None
        seq, index, started = self.progress.read(slot)
        if seq != chunk.seq or not 0 <= index < len(chunk.items) or not started:
            return min(self.timeout, 0.05)  # not started yet (forking, after_fork): look again
        return self.timeout - (time.monotonic_ns() - started) / 1e9
