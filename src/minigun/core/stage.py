"""What happens to items inside one stage: calling user code, errors, routing, stats.

:class:`StageRuntime` is shared by every executor. Local executors (inline,
thread) call :meth:`StageRuntime.run_batch`. Fork executors run user code in a
child with :meth:`StageRuntime.apply` and hand the outcome back to the parent with
:meth:`StageRuntime.complete` / :meth:`StageRuntime.settle_failure`, so retries,
``on_error``, dead letters, routing and stats have exactly one implementation.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import GeneratorType
from typing import TYPE_CHECKING, Any

from minigun.core.errors import ItemTimeout, Skip, TransientError
from minigun.core.executors.registry import kind_of
from minigun.core.inbox import Inbox
from minigun.core.stats import PER_ITEM_THRESHOLD, StageStats

if TYPE_CHECKING:
    from minigun.core.engine import Run
    from minigun.core.graph import StageNode

__all__ = ["Out", "StageRuntime"]

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


class StageRuntime:
    """One stage during one run (producers excepted: see :mod:`minigun.core.producer`)."""

    def __init__(self, node: StageNode, run: Run) -> None:
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

    def _apply_with_timeout(
        self, item: Any, outs: list[Any], routed: list[tuple[str, Any]], timeout: float
    ) -> bool:
        """Threads cannot be killed: the call runs on a watchdog-free helper thread that
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
            raise ItemTimeout(f"stage {self.name!r} took longer than {timeout}s on one item")
        if "error" in box:
            raise box["error"]
        outs.extend(local_outs)
        routed.extend(local_routed)
        return bool(box["dropped"])

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
        if not self._simple or (self._slow and self.timing):
            latencies = [] if self.timing else None
            processed, dropped = self._run_items(batch, outs, routed, latencies)
        elif self._apply_fn == self._apply_value:
            processed, dropped = self._run_values(batch, outs)
        elif self._apply_fn == self._apply_consumer:
            processed, dropped = self._run_consumer(batch)
        else:
            processed, dropped = self._run_items(batch, outs, routed, None)
        self.complete(len(batch), processed, dropped, outs, routed, perf_counter() - t0, latencies)

    def _run_values(self, batch: list[Any], outs: list[Any]) -> tuple[int, int]:
        """The hot loop of a return-value processor without retries or timeout."""
        call = self._call
        append = outs.append
        dropped = failed = 0
        for item in batch:
            try:
                result = call(item)
                if result is None:
                    dropped += 1
                elif type(result) is GeneratorType:
                    n = len(outs)
                    try:
                        outs.extend(result)
                    except BaseException:
                        del outs[n:]
                        raise
                else:
                    append(result)
            except Exception as exc:
                failed += 1
                self.settle_failure(item, exc, 1)
        return len(batch) - dropped - failed, dropped

    def _run_consumer(self, batch: list[Any]) -> tuple[int, int]:
        """The hot loop of a consumer without retries or timeout."""
        call = self._call
        failed = 0
        for item in batch:
            try:
                call(item)
            except Exception as exc:
                failed += 1
                self.settle_failure(item, exc, 1)
        return len(batch) - failed, 0

    def _run_items(
        self,
        batch: list[Any],
        outs: list[Any],
        routed: list[tuple[str, Any]],
        latencies: list[float] | None,
    ) -> tuple[int, int]:
        """The general loop: any shape, retries, timeouts, per-item latency."""
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
                    return self._apply_with_timeout(item, outs, routed, node.timeout)
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
    ) -> None:
        """Record a finished batch and deliver its outputs (any thread)."""
        stats = self.stats
        with self._lock:
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
