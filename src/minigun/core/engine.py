"""One run of a pipeline: in-flight accounting, termination, flushing, stopping, results.

Termination is counted, not guessed: ``in_flight`` is the number of items handed
to a stage and not yet finished. A stage adds its outputs *before* it removes the
items that produced them, so the count cannot touch zero while work remains. The
run ends when every producer is done (or the run is stopping) and nothing is in
flight; then buffered items (``mg.batch`` remainders, custom ``flush``) are emitted
stage by stage from the producers down, and the check repeats until nothing moves.

Every early end goes through one path: ``stop()``, SIGTERM (via the CLI), a
``raise`` error, ``mg.Skip`` and ``mg.TransientError`` all set ``stopping`` (the
producers stop; queued and in-flight items are still processed) and differ only
in the status they record.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

from minigun.core.dead_letters import DeadLetter, DeadLetterWriteError, DeadLetterWriter
from minigun.core.errors import PipelineDefinitionError, Skip, TransientError
from minigun.core.producer import STALE_SECONDS, ProducerRuntime
from minigun.core.result import RunResult
from minigun.core.stage import StageRuntime
from minigun.core.stats import RunStats, StageReport
from minigun.exit_codes import ExitCode

if TYPE_CHECKING:
    from minigun.core.executors.async_ import EventLoop
    from minigun.core.executors.base import Executor
    from minigun.core.graph import StageGraph
    from minigun.core.pipeline import Pipeline

__all__ = ["Run", "RunHandle"]

#: Items a producer hands over at once when every stage is inline (deterministic).
INLINE_CHUNK = 128


class Run:
    """The state of one run, shared by the controller, the producers and the workers."""

    def __init__(
        self,
        pipeline: Pipeline,
        graph: StageGraph,
        seeds: dict[str, list[Any]] | None = None,
        default_dead_letter_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.graph = graph
        settings = graph.settings
        self.timing = settings.get("stats") is not False
        self.max_dead_letters: int | None = settings.get("max_dead_letters")
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.in_flight = 0
        self.total_produced = 0
        self.discarded = 0  # items sent back up a cycle after the run began stopping
        self.producers_active = 0
        self.stopping = False
        self.stopping_now = False  # no more retries: the run is ending
        self.stop_code: ExitCode | None = None
        self.outcome: str | None = None  # "failed" | "skipped"
        self.error: BaseException | None = None
        self.error_stage: str | None = None
        self.error_traceback: str | None = None
        self.dead_letters: list[DeadLetter] = []
        # The default directory is the lowest level of precedence, below a run argument,
        # MINIGUN_DEAD_LETTER_DIR and the class attribute (all in ``settings``): the CLI,
        # the runner's child and the adapters pass one so that no dead letter is lost.
        directory = settings.get("dead_letter_dir") or default_dead_letter_dir
        self.dead_letter_writer = DeadLetterWriter(directory, graph.pipeline)
        self.seeds = seeds
        self.all_inline = all(n.execution == "inline" for n in graph.nodes.values())
        self.started = time.monotonic()
        self.started_wall = time.time()
        self.finished: float | None = None
        self.executors: list[Executor] = []
        self._event_loop: EventLoop | None = None  # started by the first async stage or hook
        self._event_loop_lock = threading.Lock()
        self._producer_threads: list[threading.Thread] = []
        self.producers: list[ProducerRuntime] = []
        self.stages: dict[str, StageRuntime] = {}
        fixed = INLINE_CHUNK if self.all_inline else None
        for name in graph.order:
            node = graph.nodes[name]
            if node.kind == "producer":
                if seeds is None:
                    self.producers.append(ProducerRuntime(node, self, fixed))
            else:
                self.stages[name] = StageRuntime(node, self)
        for rt in self.stages.values():
            upstream = rt.node.upstream
            if upstream and all(graph.nodes[name].kind == "batch" for name in upstream):
                rt.stats.batched_items = 0  # it counts the items inside its batches too
        sources: list[ProducerRuntime | StageRuntime] = [*self.producers, *self.stages.values()]
        for source in sources:
            for target in source.node.downstream:
                source.targets.append(self.stages[target])
                source.blocking.append(target not in source.node.back_edges)
        self.running_order = [self.stages[n] for n in graph.order if n in self.stages]

    # ------------------------------------------------------------------ hand-over

    def _route(self, source: Any, routed: list[tuple[str, Any]]) -> dict[str, list[Any]]:
        groups: dict[str, list[Any]] = {}
        for target, value in routed:
            groups.setdefault(target, []).append(value)
        resolved: dict[str, list[Any]] = {}
        for target, values in groups.items():
            node = self.graph.resolve(source.node, target)
            resolved.setdefault(node.name, []).extend(values)
        return resolved

    def _put(
        self, source: Any, outs: list[Any], groups: dict[str, list[Any]], block: bool = True
    ) -> None:
        """Put outputs into the target inboxes (the in-flight count already includes them).

        Forward edges block while the target is full (backpressure); edges that go
        back up a cycle never block, so a cycle cannot deadlock. Once the run is
        stopping, items sent back up a cycle are discarded (counted in
        ``discarded``): they are new work, and a crawler would otherwise never stop.
        """
        may_block = block and not self.all_inline
        stopping = self.stopping
        discarded = 0
        if outs:
            for target, forward in zip(source.targets, source.blocking):
                if not forward and stopping:
                    discarded += len(outs)
                    continue
                target.inbox.put_many(outs, forward and may_block)
        for name, values in groups.items():
            target = self.stages[name]
            forward = target.node.rank > source.node.rank
            if not forward and stopping:
                discarded += len(values)
                continue
            target.inbox.put_many(values, forward and may_block)
        if discarded:
            with self.cond:
                self.discarded += discarded
                self.in_flight -= discarded
                if self.in_flight <= 0:
                    self.cond.notify_all()

    def deliver(
        self, source: StageRuntime, outs: list[Any], routed: list[tuple[str, Any]], consumed: int
    ) -> None:
        """Hand a finished batch's outputs on, then retire the ``consumed`` input items."""
        groups: dict[str, list[Any]] = {}
        if routed:
            try:
                groups = self._route(source, routed)
            except PipelineDefinitionError as exc:
                self.fail(exc, source.name, str(exc))
        routed_n = sum(len(v) for v in groups.values())
        n = len(outs) * len(source.targets) + routed_n
        if n:
            with self.lock:
                self.in_flight += n
                source.stats.items_out += len(outs) + routed_n
            self._put(source, outs, groups)
        elif outs:  # a processor at the end of the graph: its outputs are counted, not sent
            with source._lock:
                source.stats.items_out += len(outs)
        if consumed:
            with self.lock:
                self.in_flight -= consumed
                if self.in_flight <= 0:
                    self.cond.notify_all()

    def deliver_produced(
        self,
        producer: ProducerRuntime,
        outs: list[Any],
        routed: list[tuple[str, Any]],
        block: bool = True,
    ) -> bool:
        """Hand a producer's chunk on; False once the run is stopping (the producer ends)."""
        groups: dict[str, list[Any]] = {}
        if routed:
            try:
                groups = self._route(producer, routed)
            except PipelineDefinitionError as exc:
                self.fail(exc, producer.name, str(exc))
                return False
        produced = len(outs) + sum(len(v) for v in groups.values())
        with self.lock:
            if self.stopping:
                return False
            self.in_flight += len(outs) * len(producer.targets) + produced - len(outs)
            self.total_produced += produced
            producer.stats.items_out += produced
        self._put(producer, outs, groups, block)
        if self.all_inline:
            self.pump()
        return True

    def _deliver_seeds(self) -> None:
        assert self.seeds is not None
        for name, items in self.seeds.items():
            if name not in self.stages:
                raise PipelineDefinitionError(
                    f"replay: stage {name!r} is not a processor or consumer of "
                    f"{type(self.pipeline).__name__}; stages are {', '.join(self.stages)}"
                )
            with self.lock:
                self.in_flight += len(items)
                self.total_produced += len(items)
            self.stages[name].inbox.put_many(items, block=False)
        if self.all_inline:
            self.pump()

    # ------------------------------------------------------------------ ending early

    def request_stop(self, exit_code: ExitCode = ExitCode.TERMINATED) -> None:
        """Stop producing; items queued or in flight still finish. Status ``stopped``."""
        with self.cond:
            if self.stop_code is None:
                self.stop_code = ExitCode(exit_code)
            self.stopping = True
            self.cond.notify_all()

    def fail(self, exc: BaseException, stage: str | None, tb: str | None = None) -> None:
        with self.cond:
            if self.outcome is None:
                self.outcome = "failed"
                self.error, self.error_stage = exc, stage
                import traceback

                self.error_traceback = tb or "".join(
                    traceback.format_exception(type(exc), exc, exc.__traceback__)
                )
            self.stopping = True
            self.stopping_now = True
            self.cond.notify_all()

    def skip(self, exc: Skip, stage: str | None) -> None:
        with self.cond:
            if self.outcome is None:
                self.outcome = "skipped"
                self.error, self.error_stage = exc, stage
            self.stopping = True
            self.cond.notify_all()

    def dead_letter(
        self, stage: str, item: Any, exc: BaseException, tb: str, attempts: int
    ) -> None:
        letter = DeadLetter(stage, item, f"{type(exc).__name__}: {exc}", tb, attempts, time.time())
        with self.lock:
            self.dead_letters.append(letter)
        writer = self.dead_letter_writer
        if writer.directory is not None and not writer.write(letter) and writer.error is not None:
            self._dead_letters_unwritable(stage)

    def _dead_letters_unwritable(self, stage: str) -> None:
        """Fail the run, once, because its dead letters cannot be written.

        The error is built, not raised: it has no engine traceback to print, and
        its message (where, and what the OS said) is the whole story. Items stay
        in ``dead_letters``; the run drains like any failed run.
        """
        writer = self.dead_letter_writer
        cause = writer.error
        if self.outcome is not None or cause is None:
            return
        where = writer.path if writer.path is not None else writer.directory
        reason = cause.strerror or str(cause)
        message = (
            f"dead letters could not be written to {where}: {reason}; "
            f"{writer.written} were written, the rest are only in result.dead_letters"
        )
        error = DeadLetterWriteError(message)  # no errno: str() stays this message
        self.fail(error, stage, f"DeadLetterWriteError: {message}\n")

    def producer_error(self, producer: ProducerRuntime, exc: BaseException) -> None:
        if isinstance(exc, Skip):
            self.skip(exc, producer.name)
        else:
            self.fail(exc, producer.name)

    def producer_done(self, producer: ProducerRuntime) -> None:
        with self.cond:
            self.producers_active -= 1
            self.cond.notify_all()

    # ------------------------------------------------------------------ hooks

    def call_hooks(self, name: str, *args: Any) -> None:
        for hook in self.graph.hooks.get(name, []):
            result = hook(*args)
            if hasattr(result, "__await__"):  # an async def hook: awaited on the run's loop
                self.event_loop().run(result)

    # ------------------------------------------------------------------ event loop

    def event_loop(self) -> EventLoop:
        """The run's event loop, on a thread of its own: started on first use (an async
        stage, producer or hook), shared by all of them, closed when the run ends."""
        with self._event_loop_lock:
            if self._event_loop is None:
                from minigun.core.executors.async_ import EventLoop

                self._event_loop = EventLoop()
            return self._event_loop

    def cancel_in_flight(self, wait: float = 1.0) -> int:
        """Cancel the coroutines in flight on the run's loop, waiting up to ``wait``
        seconds for them to unwind; returns how many. For a drain that is being cut
        short: see :meth:`RunHandle.cancel_in_flight`."""
        loop = self._event_loop
        return 0 if loop is None else loop.cancel_in_flight(wait)

    # ------------------------------------------------------------------ controller

    def _idle(self) -> bool:
        return self.in_flight <= 0 and (self.producers_active <= 0 or self.stopping)

    def _next_wakeup(self) -> float:
        if self.producers_active > 0 and not self.all_inline:
            return STALE_SECONDS
        deadlines = [d for rt in self.running_order if (d := rt.batch_deadline()) is not None]
        if not deadlines:
            return 0.25
        return max(0.001, min(deadlines) - time.monotonic())

    def _flush_due_batches(self) -> None:
        if not self.all_inline:
            for producer in self.producers:
                if not producer.done:
                    producer.hand_over_stale()
        now = time.monotonic()
        for rt in self.running_order:
            deadline = rt.batch_deadline()
            if deadline is not None and deadline <= now:
                rt.flush()

    def _wait_idle(self) -> None:
        while True:
            try:
                with self.cond:
                    if self._idle():
                        return
                    self.cond.wait(self._next_wakeup())
            except KeyboardInterrupt:
                self.request_stop(ExitCode.INTERRUPTED)
            self._flush_due_batches()

    def pump(self) -> None:
        """All-inline mode: run every stage's queued items on this thread until none is left."""
        order = self.running_order
        while True:
            moved = False
            for rt in order:
                if len(rt.inbox):
                    batch = rt.inbox.get_batch(1 << 30)
                    if batch:
                        rt.run_batch(batch)
                        moved = True
            if not moved:
                if not self.stopping:
                    self._flush_due_batches()  # mg.batch(timeout=...) between chunks
                if not any(len(rt.inbox) for rt in order):
                    return

    def _flush_all(self, settle: Callable[[], None]) -> None:
        while True:
            moved = False
            for rt in self.running_order:
                if rt.flush():
                    moved = True
                    settle()
            if not moved:
                return

    def _run_inline(self) -> None:
        if self.seeds is not None:
            self._deliver_seeds()
        chunks: dict[ProducerRuntime, Generator[list[Any], None, None]] = {
            p: p.chunks() for p in self.producers if p.node.shape == "iter"
        }
        self.producers_active = len(self.producers)
        while chunks and not self.stopping:
            for producer, source in list(chunks.items()):
                try:
                    chunk = next(source, None)
                except Exception as exc:
                    chunk = None
                    self.producer_error(producer, exc)
                if chunk is None or not self.deliver_produced(producer, chunk, []):
                    if chunk is not None:
                        source.close()
                    del chunks[producer]
                    self.producer_done(producer)
        for source in chunks.values():
            source.close()
        for producer in self.producers:
            if producer.node.shape == "out" and not self.stopping:
                producer.produce()
        self.pump()
        self._flush_all(self.pump)

    def _run_threaded(self) -> None:
        from minigun.core.executors import make_executor

        for rt in self.stages.values():
            executor = make_executor(rt, self)
            self.executors.append(executor)
        for executor in self.executors:
            executor.start()
        if self.seeds is not None:
            self._deliver_seeds()
        with self.lock:
            self.producers_active = len(self.producers)
        for producer in self.producers:
            thread = threading.Thread(
                target=producer.produce, name=f"minigun-producer-{producer.name}", daemon=True
            )
            self._producer_threads.append(thread)
            thread.start()
        self._wait_idle()
        self._flush_all(self._wait_idle)

    def _shutdown(self) -> None:
        for rt in self.stages.values():
            rt.inbox.close()
        for executor in self.executors:
            executor.join()
        for thread in self._producer_threads:
            thread.join(0.5 if self.stopping else None)

    def execute(self) -> RunResult:
        """Run hooks and stages to the end and return the result (the calling thread)."""
        try:
            self.call_hooks("before_run")
            if self.outcome is None and not self.stopping:
                if self.all_inline:
                    self._run_inline()
                else:
                    self._run_threaded()
        except Skip as exc:
            self.skip(exc, None)
        except Exception as exc:
            self.fail(exc, None)
        except KeyboardInterrupt:
            self.request_stop(ExitCode.INTERRUPTED)
        finally:
            self.stopping_now = True
            try:
                self._shutdown()
            finally:
                self.dead_letter_writer.close()
                self.finished = time.monotonic()
        result = self.result()
        try:
            self.call_hooks("after_run", result)
        except Skip as exc:
            self.skip(exc, None)
            result = self.result()
        except Exception as exc:
            self.outcome = None
            self.fail(exc, None)
            result = self.result()
        finally:
            if self._event_loop is not None:
                self._event_loop.close()  # after after_run: async hooks close clients on it
        return result

    # ------------------------------------------------------------------ reporting

    def snapshot(self) -> dict[str, Any]:
        """Live stats in the shape of the result JSON's ``stats`` (plus ``queued``)."""
        return self.stats().to_dict()

    def stats(self) -> RunStats:
        end = self.finished if self.finished is not None else time.monotonic()
        duration = end - self.started
        stages: dict[str, StageReport] = {}
        for producer in self.producers:
            stages[producer.name] = producer.stats.to_dict(duration, kind=producer.node.kind)
            stages[producer.name]["downstream"] = list(producer.node.downstream)
            if producer.expected is not None:
                stages[producer.name]["expected"] = producer.expected
        consumed = 0
        for name in self.graph.order:
            rt = self.stages.get(name)
            if rt is None:
                continue
            stages[name] = rt.stats.to_dict(
                duration, queued=len(rt.inbox), kind=rt.node.kind, capacity=rt.inbox.capacity
            )
            stages[name]["downstream"] = list(rt.node.downstream)  # the graph, for displays
            if not rt.node.downstream:
                batched = rt.stats.batched_items
                consumed += rt.stats.processed if batched is None else batched
        return RunStats(stages, self.total_produced, consumed, duration, self.discarded)

    def status(self) -> tuple[str, ExitCode]:
        if self.outcome == "failed":
            code = ExitCode.TEMPFAIL if isinstance(self.error, TransientError) else ExitCode.FAILED
            return "failed", code
        if self.outcome == "skipped":
            return "skipped", ExitCode.SKIPPED
        if self.stop_code is not None:
            return ("timeout" if self.stop_code == ExitCode.TIMEOUT else "stopped"), self.stop_code
        if self.max_dead_letters is not None and len(self.dead_letters) > self.max_dead_letters:
            return "partial", ExitCode.PARTIAL
        return "succeeded", ExitCode.OK

    def result(self) -> RunResult:
        status, code = self.status()
        stats = self.stats()
        path = self.dead_letter_writer.path
        return RunResult(
            pipeline=self.graph.pipeline,
            status=status,
            exit_code=code,
            duration=stats.duration,
            started_at=self.started_wall,
            error=self.error if status in ("failed", "skipped") else None,
            error_stage=self.error_stage,
            error_traceback=self.error_traceback,
            dead_letters=list(self.dead_letters),
            dead_letter_file=None if path is None else str(path),
            dead_letters_written=self.dead_letter_writer.written,
            stats=stats,
        )


class RunHandle:
    """A run in the background: ``stop()``, ``wait()``, ``running``, ``snapshot()``."""

    def __init__(self, run: Run) -> None:
        self._run = run
        self._result: RunResult | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._target, name="minigun-run", daemon=False)
        self._thread.start()

    def _target(self) -> None:
        try:
            self._result = self._run.execute()
        except BaseException as exc:  # pragma: no cover - execute() catches everything
            self._error = exc

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, exit_code: ExitCode = ExitCode.TERMINATED) -> None:
        """Stop cleanly: producers stop, in-flight items finish; status ``stopped``."""
        self._run.request_stop(exit_code)

    def wait(self, timeout: float | None = None) -> RunResult | None:
        """The result once the run has ended; None if ``timeout`` expires first."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            return None
        if self._error is not None:
            raise self._error
        return self._result

    def snapshot(self) -> dict[str, Any]:
        return self._run.snapshot()

    def cancel_in_flight(self, wait: float = 1.0) -> int:
        """Cut a drain short: cancel the coroutines of ``async def`` stages in flight.

        ``stop()`` lets in-flight and queued items finish; when they may not (the
        runner's grace is over), this cancels the coroutines in flight on the run's
        event loop and waits up to ``wait`` seconds for them to unwind, so their
        ``finally`` blocks and ``async with`` exits close what they opened. They count
        as failed (no ``on_error``: they did not fail, the run gave up on them), and
        items async stages take afterwards fail without running. Thread and fork
        stages are not touched: a thread cannot be interrupted. Returns how many
        tasks were cancelled.
        """
        return self._run.cancel_in_flight(wait)
