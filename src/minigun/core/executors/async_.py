"""The async executor: ``async def`` stages as coroutines on one event loop per run.

Why a loop: a stage that waits on an HTTP API or a database holds a thread per call
on the thread executor, so 500 calls in flight would need 500 threads. Today's
clients for that work (httpx, aiohttp, asyncpg, aiobotocore) are async: on a loop,
500 calls in flight are 500 small coroutines on one thread.

**The loop.** :class:`EventLoop` is the run's loop on a thread of its own
(``minigun-loop``), started by :meth:`Run.event_loop` the first time an async stage,
an async producer or an async ``before_run``/``after_run`` hook needs it, and closed
after the ``after_run`` hooks: the hooks and every stage share it, so a client opened
in ``before_run`` is used by every call and closed in ``after_run``. Closing cancels
whatever user code left running (as ``asyncio.run`` does), finalises async generators
and the default executor, so no task is left pending on a closed loop. uvloop is used
when it is installed, unless ``MINIGUN_UVLOOP=0``.

**Crossing the boundary.** The engine's inboxes are thread-side and block
(:mod:`minigun.core.inbox`); the loop must never block, or every coroutine of the run
stalls. So each async stage has two plain threads that do the blocking for it:

- the *feeder* takes items from the stage's inbox, at most as many as the stage has
  free slots (``concurrency``), and hands them to the loop, which starts one task per
  item. With every slot taken it takes nothing more: the inbox fills and the stages
  upstream block on it, exactly as they would on a slow thread stage.
- the *deliverer* takes finished items from the loop (outcomes are collected per loop
  iteration, one wake-up for many items), settles them through the stage's runtime
  (``StageRuntime.complete`` / ``settle_failure``: routing, ``on_error``, dead letters
  and stats have one implementation for every executor) and only then frees their
  slots, refilling them at once from the inbox when it has items (so the feeder is
  needed only to wait on an empty inbox). When a downstream inbox is full the
  deliverer blocks, slots stay taken, and the stage takes no more items, while the
  loop goes on running what is in flight.

A slot is held from the moment an item leaves the inbox until its outputs are handed
on, retries and their backoff included, so ``concurrency`` bounds the stage's items
in flight end to end, never just the calls.

**Per item** an attempt runs under the stage's ``timeout`` (on expiry the coroutine is
cancelled and the item fails with ``mg.ItemTimeout``), ``retries`` wait
``StageRuntime.retry_wait`` on the loop (``asyncio.sleep``, holding the slot), and a
failed attempt's outputs are dropped whole: each attempt emits into lists of its own
that are handed on only when it succeeds, as ``StageRuntime.apply`` withdraws them.

**Stopping.** A stop lets in-flight and queued items finish, as on every executor.
When the drain is cut short (the runner's grace is over, a second signal, or
:meth:`RunHandle.cancel_in_flight`), the coroutines in flight are cancelled so that
their ``finally`` blocks and ``async with`` exits run (connections are closed, not
dropped); they are counted as failed, and items the stage takes afterwards fail
without running.

**Async producers** (async generators) are pumped on the loop into a bounded buffer
that the producer's usual thread reads as a plain iterator (:class:`LoopSource`), so
chunking, stale hand-over, stop and errors are the producer machinery's own.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import warnings
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from types import GeneratorType
from typing import TYPE_CHECKING, Any, TypeVar

from minigun.core.errors import ItemTimeout, Skip
from minigun.core.executors.base import Executor
from minigun.core.stage import Out

if TYPE_CHECKING:
    from minigun.core.run_context import RunContext
    from minigun.core.stage import StageRuntime

__all__ = ["AsyncExecutor", "EventLoop", "LoopSource"]

log = logging.getLogger("minigun.async")
perf_counter = time.perf_counter
T = TypeVar("T")

#: Seconds a blocked bridge thread sleeps between checks it would otherwise miss (a
#: safety net: every wake-up is explicit).
_POLL = 0.1
#: Seconds the loop's close waits for cancelled leftovers (user tasks started in a
#: hook and never awaited) to unwind before it names them in a warning.
CLOSE_WAIT = 5.0
#: Items an async producer may run ahead of the thread that hands them on.
SOURCE_BUFFER = 256

# Outcomes of one item, as the deliverer sees them.
_PROCESSED, _DROPPED, _FAILED, _CANCELLED, _CRASHED = range(5)


def _uvloop_wanted() -> bool:
    raw = os.environ.get("MINIGUN_UVLOOP", "").strip().lower()
    return raw not in ("0", "false", "no", "off")


def _new_loop() -> tuple[asyncio.AbstractEventLoop, str]:
    """A new loop: uvloop's when it is installed and wanted, else asyncio's."""
    if _uvloop_wanted():
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop(), "uvloop"
    return asyncio.new_event_loop(), "asyncio"


class EventLoop:
    """One run's event loop, running on its own thread until :meth:`close`."""

    def __init__(self, name: str = "minigun-loop") -> None:
        self.loop, self.flavour = _new_loop()
        #: Set once the in-flight coroutines are being cancelled: stages start no more.
        self.cancelling = False
        self.closed = False
        self._close_lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            # Closed here, not by the thread that asked: a close that hangs or raises
            # (uvloop's can, when ResourceWarning is an error and user code left a
            # transport open) then costs this daemon thread a warning, never the run.
            try:
                self.loop.close()
            except Exception as exc:
                log.warning("closing the event loop failed: %r", exc)

    def on_loop(self) -> bool:
        """Whether the caller is the loop's own thread."""
        return threading.current_thread() is self._thread

    def submit(self, coro: Coroutine[Any, Any, T]) -> Any:
        """Start ``coro`` on the loop; a ``concurrent.futures.Future`` of its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, awaitable: Awaitable[T]) -> T:
        """Await ``awaitable`` on the loop and return its result (from any other thread).

        What it raises is raised here: an async hook's error is the run's error.
        """
        if self.on_loop():  # pragma: no cover - an engine bug, not a user error
            raise RuntimeError("EventLoop.run() called on the loop's own thread")

        async def wrap() -> T:
            return await awaitable

        result: T = self.submit(wrap()).result()
        return result

    def call(self, fn: Callable[..., Any], *args: Any) -> None:
        """Call ``fn(*args)`` on the loop soon (thread-safe, never blocks)."""
        self.loop.call_soon_threadsafe(fn, *args)

    # ------------------------------------------------------------------ ending

    def cancel_in_flight(self, wait: float) -> int:
        """Cancel every task on the loop and wait up to ``wait`` seconds for them to end.

        Returns how many were cancelled. Stages start nothing new afterwards (items
        they take fail without running). A loop that does not answer within ``wait``
        (a coroutine blocking it with a plain call) is left as it is.
        """
        self.cancelling = True
        if self.closed:
            return 0
        try:
            future = self.submit(self._cancel_all(wait))
        except RuntimeError:  # the loop is already closing
            return 0
        try:
            n: int = future.result(timeout=wait + _POLL)
            return n
        except Exception:
            return 0

    async def _cancel_all(self, wait: float) -> int:
        me = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=wait)
        return len(tasks)

    def close(self, wait: float = CLOSE_WAIT) -> None:
        """Cancel what is left, finalise async generators and the default executor,
        stop the loop, join its thread, close it. Idempotent."""
        with self._close_lock:
            if self.closed:
                return
            self.closed = True
        try:
            self.submit(self._finish(wait)).result(timeout=3 * wait)
        except Exception as exc:  # a loop blocked by a plain call: stop it anyway
            log.warning("the event loop did not shut down cleanly: %r", exc)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(wait)
            if self._thread.is_alive():
                log.warning(
                    "the event loop did not close within %gs (a transport left open, or a"
                    " plain call blocking it); its daemon thread is left behind",
                    wait,
                )

    async def _finish(self, wait: float) -> None:
        me = asyncio.current_task()
        leftovers = [t for t in asyncio.all_tasks() if t is not me and not t.done()]
        for task in leftovers:
            task.cancel()
        if leftovers:
            _, pending = await asyncio.wait(leftovers, timeout=wait)
            if pending:
                log.warning(
                    "%d task(s) did not end within %gs of being cancelled as the run ended: %s",
                    len(pending),
                    wait,
                    ", ".join(sorted(t.get_name() for t in pending)),
                )
        await self.loop.shutdown_asyncgens()
        try:
            await asyncio.wait_for(self.loop.shutdown_default_executor(), wait)
        except (asyncio.TimeoutError, NotImplementedError, AttributeError):
            pass


# --------------------------------------------------------------------------- stages


#: One finished item, from the loop to the deliverer (a tuple: it is made per item):
#: (status, item, latency, outputs or None, routed or None, error or None, attempts).
_Outcome = tuple[int, Any, float, "list[Any] | None", "list[tuple[str, Any]] | None", Any, int]


class AsyncExecutor(Executor):
    """Runs one ``async def`` stage on the run's loop, ``concurrency`` items at a time."""

    name = "async"

    def __init__(self, runtime: StageRuntime, run: RunContext) -> None:
        super().__init__(runtime, run)
        node = runtime.node
        self.concurrency = self.workers
        self.loop: EventLoop | None = None
        self._call: Callable[..., Any] = node.func
        self._timeout = node.timeout
        self._retries = node.retries
        self._warned_return = False
        self._attempt_fn: Callable[..., Awaitable[bool]] = {
            "value": self._value,
            "gen": self._gen,
            "out": self._out,
        }[node.shape]
        if node.kind == "consumer":
            self._attempt_fn = self._consume
        # The two commonest shapes are awaited inline in _one, a coroutine frame less.
        self._inline = (
            "consumer" if node.kind == "consumer" else node.shape if node.shape == "value" else ""
        )
        self._lock = threading.Lock()
        self._slots = threading.Condition(self._lock)  # the feeder waits for a free slot
        self._ready = threading.Condition(self._lock)  # the deliverer waits for outcomes
        self._free = self.concurrency  # slots neither reserved, running, nor awaiting delivery
        self._fed = False  # the feeder has taken its last item
        self._outcomes: deque[_Outcome] = deque()  # appended on the loop, popped by the deliverer
        self._wake_scheduled = False  # loop side: a deliverer wake-up is due this iteration
        self._tasks: set[asyncio.Task[None]] = set()  # the loop keeps only weak references
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.loop = self.run.event_loop()
        for role, target in (("feed", self._feed), ("deliver", self._deliver)):
            thread = threading.Thread(
                target=target, name=f"minigun-{self.runtime.name}-{role}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def join(self) -> None:
        for thread in self._threads:
            thread.join()

    # ------------------------------------------------------------------ thread side

    def _take(self, wait: bool) -> list[Any] | None:
        """Reserve every free slot, take up to that many items, give back the rest.

        The reservation makes the feeder (which waits for items) and the deliverer
        (which refills without waiting) unable to take more items than there are
        slots between them. ``None``: the inbox is closed and empty.
        """
        with self._lock:
            free = self._free
            self._free = 0
        batch: list[Any] | None = []
        try:
            if free > 0:
                batch = self.runtime.inbox.get_batch(free, None if wait else 0)
        finally:
            with self._lock:
                self._free += free - (len(batch) if batch else 0)
        return batch

    def _feed(self) -> None:
        """Inbox -> loop while the inbox has run dry: waits for items, never for slots
        it does not have (backpressure upstream)."""
        inbox = self.runtime.inbox
        assert self.loop is not None
        try:
            while True:
                with self._lock:
                    while self._free <= 0:
                        self._slots.wait(_POLL)
                batch = self._take(wait=True)
                if batch is None:
                    return
                if batch:
                    self._launch(batch)
        except BaseException as exc:  # an engine bug must fail the run, not hang it
            self.run.fail(exc, self.runtime.name)
            while (rest := inbox.get_batch(512)) is not None:
                self._retire_unrun(len(rest))
        finally:
            with self._lock:
                self._fed = True
                self._ready.notify()

    def _launch(self, batch: list[Any]) -> None:
        assert self.loop is not None
        try:
            self.loop.call(self._start, batch)
        except BaseException:
            with self._lock:
                self._free += len(batch)
            raise

    def _retire_unrun(self, n: int) -> None:
        if n:
            stats = self.runtime.stats
            stats.errors += n
            stats.failed += n
            self.runtime.complete(n, 0, 0, [], [])

    def _deliver(self) -> None:
        """Loop -> downstream: settle finished items, free their slots, and refill
        them straight from the inbox when it has items (the feeder only waits on an
        empty one), so a steady stream costs one thread wake-up per loop iteration."""
        outcomes = self._outcomes
        while True:
            with self._lock:
                while not outcomes:
                    if self._fed and self._free >= self.concurrency:
                        return  # nothing left to take, nothing on the loop
                    self._ready.wait(_POLL)
            batch = [outcomes.popleft() for _ in range(len(outcomes))]
            try:
                self._settle(batch)
            except BaseException as exc:  # an engine bug must fail the run, not hang it
                self.run.fail(exc, self.runtime.name)
            with self._lock:
                self._free += len(batch)
            try:
                more = None if self._fed else self._take(wait=False)
                if more:
                    self._launch(more)
            except BaseException as exc:  # pragma: no cover - an engine bug
                self.run.fail(exc, self.runtime.name)
            with self._lock:
                if self._free > 0:
                    self._slots.notify()

    def _settle(self, batch: list[_Outcome]) -> None:
        """Retire finished items through the stage's runtime, as every executor does.

        Counters this executor writes itself (``errors``/``failed`` of items cancelled
        at the end, ``retries``) have a single writer each: this thread, resp. the loop.
        """
        runtime = self.runtime
        outs: list[Any] = []
        routed: list[tuple[str, Any]] = []
        latencies: list[float] = []
        processed = dropped = 0
        for status, item, latency, item_outs, item_routed, error, attempts in batch:
            if status == _PROCESSED:
                processed += 1
                if item_outs:
                    outs.extend(item_outs)
                if item_routed:
                    routed.extend(item_routed)
            elif status == _DROPPED:
                dropped += 1
            elif status == _FAILED:
                runtime.settle_failure(item, error, attempts)
            else:
                runtime.stats.errors += 1
                runtime.stats.failed += 1
                if status == _CRASHED:
                    self.run.fail(error, runtime.name)
            latencies.append(latency)
        busy = sum(latencies)
        timed = latencies if self.run.timing else None
        units = 0
        if runtime.stats.batched_items is not None:
            # items cancelled or crashed at the end count as failed, not as consumed
            settled = (_PROCESSED, _DROPPED, _FAILED)
            units = runtime.units_of([outcome[1] for outcome in batch if outcome[0] in settled])
        runtime.complete(len(batch), processed, dropped, outs, routed, busy, timed, units)

    # ------------------------------------------------------------------ loop side

    def _start(self, batch: list[Any]) -> None:
        """Start one task per item (on the loop)."""
        assert self.loop is not None
        if self.loop.cancelling:
            for item in batch:
                self._finish((_CANCELLED, item, 0.0, None, None, None, 0))
            return
        create = self.loop.loop.create_task
        add = self._tasks.add
        for item in batch:
            add(create(self._one(item)))

    def _finish(self, outcome: _Outcome) -> None:
        """Queue a finished item for the deliverer; one wake-up per loop iteration."""
        self._outcomes.append(outcome)
        if not self._wake_scheduled:
            self._wake_scheduled = True
            assert self.loop is not None
            self.loop.loop.call_soon(self._wake)

    def _wake(self) -> None:
        self._wake_scheduled = False
        with self._lock:
            self._ready.notify()

    async def _one(self, item: Any) -> None:
        """One item to its end: attempts, timeout, retries. Always reports one outcome,
        and never raises (a task that raised would end up in the loop's logs, and a
        ``KeyboardInterrupt`` escaping a task would stop the loop itself)."""
        loop = self.loop
        assert loop is not None
        start = perf_counter()
        attempts = 0
        timeout = self._timeout
        inline = self._inline
        outs: list[Any] | None = None
        routed: list[tuple[str, Any]] | None = None
        try:
            while True:
                attempts += 1
                try:
                    if timeout is None and inline == "value":
                        result = await self._call(item)
                        if result is None:
                            self._finish(
                                (_DROPPED, item, perf_counter() - start, None, None, None, 0)
                            )
                            return
                        outs = list(result) if type(result) is GeneratorType else [result]
                        dropped = False
                    elif timeout is None and inline == "consumer":
                        await self._call(item)
                        dropped = False
                    else:
                        outs, routed = [], []
                        if timeout is None:
                            dropped = await self._attempt_fn(item, outs, routed)
                        else:
                            dropped = await self._timed(item, outs, routed, timeout)
                except asyncio.CancelledError as exc:
                    if loop.cancelling:
                        raise
                    error: BaseException = exc  # user code cancelled something of its own
                except Exception as exc:
                    error = exc
                else:
                    status = _DROPPED if dropped else _PROCESSED
                    self._finish((status, item, perf_counter() - start, outs, routed, None, 0))
                    return
                if (
                    not isinstance(error, Skip)
                    and attempts <= self._retries
                    and not self.run.stopping_now
                ):
                    self.runtime.stats.retries += 1  # written on the loop thread only
                    await asyncio.sleep(self.runtime.retry_wait(attempts))
                    continue
                latency = perf_counter() - start
                self._finish((_FAILED, item, latency, None, None, error, attempts))
                return
        except asyncio.CancelledError:
            self._finish((_CANCELLED, item, perf_counter() - start, None, None, None, attempts))
        except BaseException as exc:
            self._finish((_CRASHED, item, perf_counter() - start, None, None, exc, attempts))
        finally:
            self._tasks.discard(asyncio.current_task())

    async def _timed(
        self, item: Any, outs: list[Any], routed: list[tuple[str, Any]], timeout: float
    ) -> bool:
        """One attempt under ``timeout``: on expiry the coroutine is cancelled.

        Done by hand rather than with ``asyncio.wait_for`` (which starts a second task
        per item on Python < 3.12) or ``asyncio.timeout`` (3.11+): a timer cancels this
        task, and the cancellation it caused is told apart from any other by a flag.
        """
        task = asyncio.current_task()
        assert task is not None and self.loop is not None
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = True
            task.cancel()

        handle = self.loop.loop.call_later(timeout, expire)
        try:
            dropped = await self._attempt_fn(item, outs, routed)
        except asyncio.CancelledError:
            if not expired or self.loop.cancelling:
                raise
        finally:
            handle.cancel()
        if expired:
            uncancel = getattr(task, "uncancel", None)  # 3.11+: the cancel is consumed
            if uncancel is not None:
                uncancel()
            del outs[:], routed[:]
            raise ItemTimeout(
                f"stage {self.runtime.name!r} took longer than {timeout}s on one item;"
                " its coroutine was cancelled"
            )
        return dropped

    # ------------------------------------------------------------------ the user's call

    async def _value(self, item: Any, outs: list[Any], routed: list[tuple[str, Any]]) -> bool:
        result = await self._call(item)
        if result is None:
            return True
        if type(result) is GeneratorType:
            outs.extend(result)
        else:
            outs.append(result)
        return False

    async def _gen(self, item: Any, outs: list[Any], routed: list[tuple[str, Any]]) -> bool:
        agen: AsyncIterator[Any] = self._call(item)
        async for value in agen:
            outs.append(value)
        return False

    async def _out(self, item: Any, outs: list[Any], routed: list[tuple[str, Any]]) -> bool:
        result = await self._call(item, Out(outs, routed))
        if result is not None and not self._warned_return:
            self._warned_return = True
            warnings.warn(
                f"stage {self.runtime.name!r} takes an out parameter, so its return value is"
                " ignored; emit with out.emit(x) instead",
                RuntimeWarning,
                stacklevel=2,
            )
        return False

    async def _consume(self, item: Any, outs: list[Any], routed: list[tuple[str, Any]]) -> bool:
        await self._call(item)
        return False


# --------------------------------------------------------------------------- producers


class LoopSource(Iterator[Any]):
    """An async generator's items, pumped on the run's loop, read by a producer thread.

    The pump runs up to :data:`SOURCE_BUFFER` items ahead and then waits for the
    thread to take them, so a producer blocked by backpressure holds its async
    generator at a ``yield`` without blocking the loop. The thread sleeps only while
    the buffer is empty, and returns early once the run is stopping (the producer
    machinery then ends the source). An error from the generator is raised to the
    thread after the items it yielded before it. :meth:`close` cancels the pump and
    closes the generator (its ``finally`` blocks run on the loop).
    """

    def __init__(self, agen: Any, loop: EventLoop, run: RunContext) -> None:
        self._agen = agen
        self._loop = loop
        self._run = run
        self._items: deque[Any] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._waiting = False  # the thread sleeps on an empty buffer
        self._pump_waiting = False  # the pump sleeps on a full buffer
        self._room: asyncio.Event | None = None
        self._ended = False
        self._error: BaseException | None = None
        self._future = loop.submit(self._pump())

    def __iter__(self) -> LoopSource:
        return self

    async def _pump(self) -> None:
        room = self._room = asyncio.Event()
        items = self._items
        agen = self._agen
        low = SOURCE_BUFFER // 2
        try:
            async for item in agen:
                items.append(item)
                if self._waiting:
                    self._notify()
                if len(items) >= SOURCE_BUFFER:
                    room.clear()
                    self._pump_waiting = True
                    if len(items) > low:  # the thread may have drained it meanwhile
                        await room.wait()
                    self._pump_waiting = False
        except asyncio.CancelledError:
            pass  # closed by the thread, or the loop is ending the run
        except BaseException as exc:
            self._error = exc
        finally:
            try:
                await agen.aclose()
            finally:
                self._ended = True
                self._notify()

    def _notify(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def __next__(self) -> Any:
        items = self._items
        if not items:
            with self._cond:
                self._waiting = True
                try:
                    while not items and not self._ended:
                        if self._run.stopping:
                            raise StopIteration
                        self._cond.wait(_POLL)
                finally:
                    self._waiting = False
            if not items:
                error, self._error = self._error, None
                if error is not None:
                    raise error
                raise StopIteration
        item = items.popleft()
        if self._pump_waiting and len(items) <= SOURCE_BUFFER // 2:
            self._pump_waiting = False
            room = self._room
            if room is not None:
                self._loop.call(room.set)
        return item

    def close(self) -> None:
        """Stop the pump and close the generator; wait for that unless the loop is gone."""
        if not self._ended and not self._loop.closed:
            self._future.cancel()  # thread-safe: asyncio relays it to the pump's task
        with self._cond:
            while not self._ended and not self._loop.closed:
                self._cond.wait(_POLL)


def open_source(items: Any, run: RunContext) -> Iterator[Any]:
    """A producer's items as a plain iterator: an async generator is pumped on the
    run's loop (:class:`LoopSource`), anything else is iterated as it is."""
    if hasattr(items, "__anext__"):
        return LoopSource(items, run.event_loop(), run)
    return iter(items)
