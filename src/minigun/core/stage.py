"""What happens to items inside one stage: calling user code, errors, routing, stats.

:class:`StageRuntime` is shared by every executor. Local executors (inline,
thread) call :meth:`StageRuntime.run_batch`. Fork executors run user code in a
child with :meth:`StageRuntime.apply_items` and hand the outcome back to the parent
with :meth:`StageRuntime.complete` / :meth:`StageRuntime.settle_failure`, so retries,
``on_error``, dead letters, routing and stats have exactly one implementation, and
so does the per-item loop: ``run_batch`` uses ``apply_items`` too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import partial
from operator import length_hint
from types import GeneratorType
from typing import TYPE_CHECKING, Any

from minigun.core.errors import ItemTimeout, Skip, TransientError
from minigun.core.executors.registry import kind_of
from minigun.core.inbox import Inbox
from minigun.core.stats import PER_ITEM_THRESHOLD, StageStats

if TYPE_CHECKING:
    from minigun.core.graph import StageNode
    from minigun.core.run_context import RunContext

__all__ = ["Applied", "Out", "RemoteFailure", "Resend", "StageRuntime"]

#: An item that failed away from this process: its index, the exception, its traceback.
RemoteFailure = tuple[int, BaseException, "str | None"]
#: Items to send again and the attempts each has used.
Resend = tuple[list[Any], list[int]]

perf_counter = time.perf_counter

#: Seconds of work one micro-batch should take; batch sizes adapt to it.
TARGET_BATCH_SECONDS = 0.002
MAX_BATCH = 512


class _Routed:
    __slots__ = ("_routed", "_target")

    def __init__(self, routed: list[tuple[str, Any]], target: str) -> None:
        self._routed = routed
        self._target = target

    def emit(self, value: Any) -> None:
        self._routed.append((self._target, value))


class Out:
    """What a stage emits through: ``out.emit(x)`` or ``out.to("stage").emit(x)``.

    ``emit`` sends to every static downstream stage; ``to(name)`` sends to one named
    stage, anywhere in the graph (a cycle back upstream included).
    """

    __slots__ = ("outs", "routed")

    def __init__(self, outs: list[Any], routed: list[tuple[str, Any]]) -> None:
        self.outs = outs
        self.routed = routed

    def emit(self, value: Any) -> None:
        self.outs.append(value)

    def to(self, name: str) -> _Routed:
        return _Routed(self.routed, name)


class Applied:
    """What :meth:`StageRuntime.apply_items` did with a sequence of items.

    ``dropped`` counts items whose user code returned None, ``failed`` items that
    raised (each reported through ``on_error``, its partial output withdrawn), and
    ``processed`` the others, whose emissions are in ``outs``/``routed`` in item order.

    :meth:`bounds` says which emissions came from which item, for a caller that has to
    take one item's output back afterwards (the fork child does when an output does
    not pickle). The fast loops do not record a bound per item: they note only the
    items that did not emit the usual number of values (one for a return-value
    processor, none for a consumer), and the bounds are rebuilt from those on demand,
    so keeping them costs nothing on the hot path.
    """

    __slots__ = ("_bounds", "dropped", "failed", "processed")

    def __init__(
        self,
        processed: int,
        dropped: int,
        failed: int,
        bounds: Callable[[], tuple[list[int], list[int]]] | None = None,
    ) -> None:
        self.processed = processed
        self.dropped = dropped
        self.failed = failed
        self._bounds = bounds

    def bounds(self) -> tuple[list[int], list[int]]:
        """``len(outs)`` and ``len(routed)`` after each item (``bounds=True`` keeps them)."""
        if self._bounds is None:
            raise RuntimeError("apply_items(..., bounds=True) keeps the bounds; this call did not")
        return self._bounds()


def _sparse_bounds(
    n: int, start: int, routed_start: int, regular: int, counts: dict[int, int]
) -> tuple[list[int], list[int]]:
    """Bounds of a fast loop: ``regular`` outputs per item, but ``counts[i]`` for item i."""
    ends: list[int] = []
    end = start
    for i in range(n):
        end += counts.get(i, regular)
        ends.append(end)
    return ends, [routed_start] * n  # the fast loops never route


def _explicit_bounds(ends: list[int], routed_ends: list[int]) -> tuple[list[int], list[int]]:
    """Bounds of the general loop, recorded per item."""
    return ends, routed_ends


class StageRuntime:
    """One stage during one run (producers excepted: see :mod:`minigun.core.producer`)."""

    def __init__(self, node: StageNode, run: RunContext) -> None:
        self.node = node
        self.run = run
        self.name = node.name
        self.stats = StageStats(node.name, node.workers, node.execution)
        single = node.workers == 1 and kind_of(node.execution).local
        self.inbox = Inbox(node.queue_size, single_getter=single)
        self.targets: list[StageRuntime] = []  # static downstream, set by the engine
        self.blocking: list[bool] = []  # per target: False for back edges
        self.timing = run.timing
        self.max_batch = 1  # grows once the first batch shows how fast the stage is
        self._warned_return = False
        self._lock = threading.Lock()  # batch buffer and stats of multi-worker stages
        self._buffer: list[Any] = []
        self._buffer_since = 0.0
        self._slow = False
        self._unflushed = True  # custom flush() runs once, then again only after new items
        func = node.func
        self._call: Callable[..., Any] = func.process if node.kind == "custom" else func
        self._apply_fn: Callable[[Any, list[Any], list[tuple[str, Any]]], bool] = {
            "value": self._apply_value,
            "gen": self._apply_gen,
            "out": self._apply_out,
            "custom": self._apply_out,
            "batch": self._apply_batch,
        }[node.shape]
        if node.kind == "consumer":
            self._apply_fn = self._apply_consumer
        #: which fast loop of apply_items suits the stage: "value", "consumer" or None
        self._fast: str | None = None
        if self._apply_fn == self._apply_value:
            self._fast = "value"
        elif self._apply_fn == self._apply_consumer:
            self._fast = "consumer"
        self._simple = node.retries == 0 and node.timeout is None

    # ------------------------------------------------------------------ user calls

    def _apply_value(self, item: Any, outs: list[Any], routed: list[tuple[str, Any]]) -> bool:
        result = self._call(item)
        if result is None:
            return True
        if type(result) is GeneratorType:
            outs.extend(result)
        else:
            outs.append(result)
        return False

    def _apply_gen(self, item: Any, outs: list[Any], routed: list[tuple[str, Any]]) -> bool:
        outs.extend(self._call(item))
        return False

    def _apply_out(self, item: Any, outs: list[Any], routed: list[tuple[str, Any]]) -> bool:
        result = self._call(item, Out(outs, routed))
        if result is not None and not self._warned_return:
            import warnings

            self._warned_return = True
            warnings.warn(
                f"stage {self.name!r} takes an out parameter, so its return value is ignored; "
                "emit with out.emit(x) instead",
                RuntimeWarning,
                stacklevel=2,
            )
        return False

    def _apply_consumer(self, item: Any, outs: list[Any], routed: list[tuple[str, Any]]) -> bool:
        self._call(item)
        return False

    def _apply_batch(self, item: Any, outs: list[Any], routed: list[tuple[str, Any]]) -> bool:
        decl = self.node.func
        with self._lock:
            buffer = self._buffer
            if not buffer:
                self._buffer_since = time.monotonic()
            buffer.append(item)
            if len(buffer) >= decl.size:
                outs.append(buffer[: decl.size])
                del buffer[: decl.size]
                self._buffer_since = time.monotonic()
        return False

    def apply(self, item: Any, outs: list[Any], routed: list[tuple[str, Any]]) -> bool:
        """Run the user code on one item, appending emissions; True when it was dropped.

        On an exception, emissions already made for this item are withdrawn, so a
        failed (or retried) item never leaks partial output.
        """
        n_outs, n_routed = len(outs), len(routed)
        try:
            return self._apply_fn(item, outs, routed)
        except BaseException:
            del outs[n_outs:]
            del routed[n_routed:]
            raise

    def apply_with_timeout(
        self, item: Any, outs: list[Any], routed: list[tuple[str, Any]], timeout: float
    ) -> bool:
        """:meth:`apply` with a per-item ``timeout``, on a thread stage or a dask worker.

        Threads cannot be killed: the call runs on a watchdog-free helper thread that
        is abandoned (daemon) if it overruns, and the item fails with ``ItemTimeout``."""
        box: dict[str, Any] = {}
        local_outs: list[Any] = []
        local_routed: list[tuple[str, Any]] = []

        def call() -> None:
            try:
                box["dropped"] = self.apply(item, local_outs, local_routed)
            except BaseException as exc:
                box["error"] = exc

        worker = threading.Thread(target=call, name=f"minigun-timeout-{self.name}", daemon=True)
        worker.start()
        worker.join(timeout)
        if worker.is_alive():
            raise ItemTimeout(
                f"stage {self.name!r} took longer than its timeout of {timeout}s on one item;"
                " the thread running it was abandoned"
            )
        if "error" in box:
            raise box["error"]
        outs.extend(local_outs)
        routed.extend(local_routed)
        return bool(box["dropped"])

    # ------------------------------------------------------------------ many items

    def apply_items(
        self,
        items: list[Any],
        outs: list[Any],
        routed: list[tuple[str, Any]],
        on_error: Callable[[int, Any, BaseException], object],
        *,
        catch: type[BaseException] = Exception,
        latencies: list[float] | None = None,
        window: int = 0,
        mark: Callable[[int], object] | None = None,
        bounds: bool = False,
    ) -> Applied:
        """Run the user code once on each of ``items``, in order: the per-item loop.

        Emissions are appended to ``outs``/``routed``. An item that raises ``catch``
        has its partial output withdrawn and is reported as ``on_error(index, item,
        exc)`` (right away, before the next item runs); the loop carries on with the
        next item. Exceptions outside ``catch`` propagate. No retry, no timeout and no
        stats: callers own those (``run_batch`` in this process, the parent of a fork
        child). With ``latencies``, the seconds each item took are appended to it.

        ``mark(i)`` is called before item ``i`` runs when ``i`` starts a *window*
        (every ``window`` items; ``window=0``: one window, the whole sequence), so a
        fork child can publish how far it got at a cost per window instead of per
        item. ``bounds=True`` keeps what :meth:`Applied.bounds` needs.

        A return-value processor or a consumer without ``latencies`` runs the fast
        loop: user code called straight from a ``for`` loop, the ``try`` outside it
        (the index of an item that raised is read off the iterator), nothing done
        per item beyond storing the result. Every other shape runs the general loop,
        one :meth:`apply`-like call per item.
        """
        n = len(items)
        if not window or window > n:
            window = n
        fast = self._fast
        if fast is None or latencies is not None:
            return self._apply_each(
                items, outs, routed, on_error, catch, latencies, window, mark, bounds
            )
        value = fast == "value"
        start = len(outs)
        counts: dict[int, int] | None = {} if bounds else None
        call = self._call
        append = outs.append
        dropped = failed = 0
        lo = 0
        while lo < n:
            hi = lo + window if lo + window < n else n
            if mark is not None:
                mark(lo)
            # A slice per window, not an islice over one iterator: islice would add a
            # call per item. ``hi - length_hint(it) - 1`` is the index of the item the
            # loop took last.
            it = iter(items if hi - lo == n else items[lo:hi])
            while True:
                try:
                    if value:
                        for item in it:
                            result = call(item)
                            if result is None:
                                dropped += 1
                                if counts is not None:
                                    counts[hi - length_hint(it) - 1] = 0
                            elif type(result) is GeneratorType:
                                before = len(outs)
                                try:
                                    outs.extend(result)
                                except BaseException:
                                    del outs[before:]
                                    raise
                                if counts is not None:
                                    counts[hi - length_hint(it) - 1] = len(outs) - before
                            else:
                                append(result)
                    else:
                        for item in it:
                            call(item)
                    break
                except catch as exc:
                    index = hi - length_hint(it) - 1
                    failed += 1
                    if counts is not None:
                        counts[index] = 0
                    on_error(index, item, exc)  # then on with the rest of the window
            lo = hi
        kept = None
        if counts is not None:
            kept = partial(_sparse_bounds, n, start, len(routed), int(value), counts)
        return Applied(n - dropped - failed, dropped, failed, kept)

    def _apply_each(
        self,
        items: list[Any],
        outs: list[Any],
        routed: list[tuple[str, Any]],
        on_error: Callable[[int, Any, BaseException], object],
        catch: type[BaseException],
        latencies: list[float] | None,
        window: int,
        mark: Callable[[int], object] | None,
        bounds: bool,
    ) -> Applied:
        """The general loop of :meth:`apply_items`: any shape, per-item latency."""
        ends: list[int] | None = [] if bounds else None
        routed_ends: list[int] = []
        apply = self._apply_fn
        dropped = failed = 0
        for i, item in enumerate(items):
            if mark is not None and i % window == 0:
                mark(i)
            ti = perf_counter() if latencies is not None else 0.0
            n_outs, n_routed = len(outs), len(routed)
            try:
                if apply(item, outs, routed):
                    dropped += 1
            except catch as exc:
                del outs[n_outs:]
                del routed[n_routed:]
                failed += 1
                on_error(i, item, exc)
            if latencies is not None:
                latencies.append(perf_counter() - ti)
            if ends is not None:
                ends.append(len(outs))
                routed_ends.append(len(routed))
        kept = None if ends is None else partial(_explicit_bounds, ends, routed_ends)
        return Applied(len(items) - dropped - failed, dropped, failed, kept)

    # ------------------------------------------------------------------ local batches

    def run_batch(self, batch: list[Any]) -> None:
        """Process a batch in this process and hand the outputs downstream.

        Batches are always timed (two clock reads per batch) because the batch size
        adapts to the stage's speed; ``stats=False`` only stops recording the figures.
        """
        outs: list[Any] = []
        routed: list[tuple[str, Any]] = []
        latencies: list[float] | None = None
        t0 = perf_counter()
        if self._simple:
            if self._slow and self.timing:
                latencies = []
            applied = self.apply_items(batch, outs, routed, self._failed, latencies=latencies)
            processed, dropped = applied.processed, applied.dropped
        else:
            latencies = [] if self.timing else None
            processed, dropped = self._run_items(batch, outs, routed, latencies)
        self.complete(
            len(batch),
            processed,
            dropped,
            outs,
            routed,
            perf_counter() - t0,
            latencies,
            self.units_of(batch),
        )

    def _failed(self, index: int, item: Any, exc: BaseException) -> None:
        """``on_error`` of run_batch: the item used its only attempt."""
        self.settle_failure(item, exc, 1)

    def _run_items(
        self,
        batch: list[Any],
        outs: list[Any],
        routed: list[tuple[str, Any]],
        latencies: list[float] | None,
    ) -> tuple[int, int]:
        """Items of a stage with retries or a timeout, one :meth:`_process_one` each."""
        processed = dropped = 0
        for item in batch:
            ti = perf_counter() if latencies is not None else 0.0
            result = self._process_one(item, outs, routed)
            if result is True:
                dropped += 1
            elif result is False:
                processed += 1
            if latencies is not None:
                latencies.append(perf_counter() - ti)
        return processed, dropped

    def _process_one(
        self, item: Any, outs: list[Any], routed: list[tuple[str, Any]]
    ) -> bool | None:
        """Retries with backoff and the per-item timeout; None when the item failed."""
        node = self.node
        attempts = 0
        while True:
            attempts += 1
            try:
                if node.timeout is not None:
                    return self.apply_with_timeout(item, outs, routed, node.timeout)
                return self.apply(item, outs, routed)
            except Skip as exc:
                self.settle_failure(item, exc, attempts, outs, routed)
                return None
            except Exception as exc:
                if attempts <= node.retries and not self.run.stopping_now:
                    with self._lock:
                        self.stats.retries += 1
                    time.sleep(self.retry_wait(attempts))
                    continue
                self.settle_failure(item, exc, attempts, outs, routed)
                return None

    def retire_remote(
        self,
        items: list[Any],
        attempts: list[int],
        outs: list[Any],
        routed: list[tuple[str, Any]],
        processed: int,
        dropped: int,
        busy: float,
        latencies: list[float] | None,
        failures: list[RemoteFailure],
        rerun: list[int],
    ) -> tuple[Resend, Resend, float]:
        """Retire items that were processed away from this process (a fork child, a
        Dask worker): ``(again, retry, wait)``, what must be sent once more.

        ``failures`` (index, exception, traceback text) get an attempt each: retried
        after ``retry_wait`` while attempts remain and the run is not ending, else
        settled by ``on_error``. ``rerun`` items go again without using an attempt.
        ``attempts`` are the attempts each item had used before this one.
        """
        again: Resend = ([items[i] for i in rerun], [attempts[i] for i in rerun])
        retry: Resend = ([], [])
        wait = 0.0
        retired = len(items) - len(rerun)
        units = self.units_of(items) - self.units_of(again[0])
        for index, exc, traceback_text in failures:
            item = items[index]
            used = attempts[index] + 1
            if (
                not isinstance(exc, Skip)
                and used <= self.node.retries
                and not self.run.stopping_now
            ):
                with self._lock:
                    self.stats.retries += 1
                retry[0].append(item)
                retry[1].append(used)
                wait = max(wait, self.retry_wait(used))
                retired -= 1
                units -= self.units_of([item])
            else:
                self.settle_failure(item, exc, used, traceback_text=traceback_text)
        if retired or outs or routed:
            self.complete(retired, processed, dropped, outs, routed, busy, latencies, units)
        return again, retry, wait

    def units_of(self, items: list[Any]) -> int:
        """How many items ``items`` hold, batches counted by their length, for a stage
        fed by ``mg.batch`` (0 for any other stage: it pays nothing per batch)."""
        if self.stats.batched_items is None:
            return 0
        return sum(map(_units, items))

    def retry_wait(self, attempts: int) -> float:
        """Backoff before attempt ``attempts + 1``: retry_delay, then twice that, ..."""
        return float(self.node.retry_delay * (2 ** (attempts - 1)))

    # ------------------------------------------------------------------ outcomes

    def settle_failure(
        self,
        item: Any,
        exc: BaseException,
        attempts: int,
        outs: list[Any] | None = None,
        routed: list[tuple[str, Any]] | None = None,
        traceback_text: str | None = None,
    ) -> None:
        """Apply the final policy to an item whose attempts are used up.

        ``mg.Skip`` ends the run as skipped; ``TransientError`` and the ``raise``
        policy fail the run (producers stop, queued items drain); ``skip`` and
        ``dead_letter`` count the item and carry on. Counters are updated here;
        the caller does not count the item as processed.
        """
        stats = self.stats
        policy = self.node.on_error
        if stats.batched_items is not None and item is not None:
            with self._lock:
                stats.batched_items -= _units(item)
        if traceback_text is None:
            import traceback

            traceback_text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        if isinstance(exc, Skip):
            with self._lock:
                stats.skipped += 1
            self.run.skip(exc, self.name)
            return
        if isinstance(exc, TransientError) or policy == "raise":
            with self._lock:
                stats.errors += 1
                stats.failed += 1
            self.run.fail(exc, self.name, traceback_text)
            return
        with self._lock:
            stats.errors += 1
            if policy == "skip":
                stats.skipped += 1
            else:
                stats.dead_letters += 1
        if policy == "dead_letter":
            self.run.dead_letter(self.name, item, exc, traceback_text, attempts)

    def complete(
        self,
        n_in: int,
        processed: int,
        dropped: int,
        outs: list[Any],
        routed: list[tuple[str, Any]],
        busy: float = 0.0,
        latencies: list[float] | None = None,
        units: int = 0,
    ) -> None:
        """Record a finished batch and deliver its outputs (any thread).

        ``units`` is :meth:`units_of` the ``n_in`` items retired (0 unless the stage
        counts ``batched_items``); :meth:`settle_failure` takes failed ones back out.
        """
        stats = self.stats
        with self._lock:
            if units:
                stats.batched_items = (stats.batched_items or 0) + units
            if n_in:
                self._unflushed = True
                per_item = busy / n_in
                self._slow = per_item > PER_ITEM_THRESHOLD
                size = int(TARGET_BATCH_SECONDS / per_item) if per_item > 0 else MAX_BATCH
                self.max_batch = max(1, min(MAX_BATCH, size))
                if self.timing:
                    stats.busy_seconds += busy
                    if latencies:
                        for latency in latencies:
                            stats.latency.add(latency)
                    else:
                        stats.latency.add(per_item, n_in)
            stats.items_in += n_in
            stats.processed += processed
            stats.dropped += dropped
        self.run.deliver(self, outs, routed, n_in)

    # ------------------------------------------------------------------ end of stream

    def flush(self) -> bool:
        """Emit what the stage buffers (a batch remainder, a custom stage's flush).

        Returns True if anything was emitted, so the engine knows to wait for it.
        """
        outs: list[Any] = []
        routed: list[tuple[str, Any]] = []
        if self.node.kind == "batch":
            with self._lock:
                if self._buffer:
                    outs.append(self._buffer)
                    self._buffer = []
        elif self.node.kind == "custom" and self._unflushed:
            self._unflushed = False
            try:
                self.node.func.flush(Out(outs, routed))
            except Exception as exc:
                self.settle_failure(None, exc, 1)
        if not outs and not routed:
            return False
        self.run.deliver(self, outs, routed, 0)
        return True

    def batch_deadline(self) -> float | None:
        """When (monotonic) the partial batch is due, for ``mg.batch(timeout=...)``."""
        timeout = getattr(self.node.func, "timeout", None) if self.node.kind == "batch" else None
        if timeout is None or not self._buffer:
            return None
        return self._buffer_since + float(timeout)


def _units(item: Any) -> int:
    """An ``mg.batch`` list counts as its items; anything else (routed in) as one."""
    return len(item) if type(item) is list else 1
