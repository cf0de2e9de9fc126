"""What runs on a Dask worker for a ``execution="dask"`` stage.

The parent ships the run's dask stages to the workers as one :class:`StageBundle`, the
result of a task (``client.submit(StageBundle, token, payload)``) that every chunk's
task depends on: the bundle carries the pickled stage nodes -- their bound methods, and
so the pipeline instance -- and the run's ``@mg.after_fork`` hooks. Being a task, not
scattered data, it is rebuilt if every worker holding it dies. A task,
:func:`run_chunk`, gets the worker's copy of that bundle and a chunk of pickled items.

What a worker builds from the bundle is kept per worker, by the bundle's token: the
first chunk on a worker unpickles it and runs the hooks, under a lock, on a task thread
rather than on the worker's event loop (loading a model there would stall the worker's
heartbeats); every later chunk of the run reuses it. Dask may drop a worker's copy of
the bundle between chunks (its memory manager keeps few replicas of a key nobody waits
for) and fetch it again later: the stages are not rebuilt for that. The worker forgets
them once the scheduler has forgotten the bundle, which happens when the run's client
closes -- or its process dies and the scheduler drops the connection -- so a killed run
leaves no instance, and nothing its hooks opened, on a shared cluster's workers (a
worker plugin would have stayed registered, keeping every loaded model alive).

The user code runs through ``StageRuntime.apply``, as in a forked child, so a stage has
the same shapes and semantics on every executor. Retries, ``on_error``, dead letters,
routing and stats stay in the parent: a chunk's reply lists each failed item with its
exception (:func:`~._fork_protocol.encode_error`, so a type the parent cannot rebuild
arrives as ``mg.RemoteError``) and the outputs of the others.

This module is also the preload of the ``LocalCluster`` workers that minigun starts
(:func:`dask_setup`).
"""

from __future__ import annotations

import asyncio
import importlib.util
import pickle
import signal
import threading
import time
import traceback
import weakref
from typing import TYPE_CHECKING, Any, NamedTuple

from minigun.core.executors._fork_protocol import (
    ErrorPayload,
    drop_unpicklable,
    encode_error,
    type_name,
)

if TYPE_CHECKING:
    from minigun.core.engine import Run
    from minigun.core.stage import StageRuntime

__all__ = ["StageBundle", "dask_setup", "dumps", "importable", "loads", "run_chunk"]

perf_counter = time.perf_counter

#: Chunks up to this size report one latency per item; larger ones a mean.
PER_ITEM_LATENCY = 8
PROTOCOL = 5
#: Seconds between a worker's checks for runs whose stages it can forget.
FORGET_EVERY = 10.0


class Reply(NamedTuple):
    """Worker -> client: what became of one chunk (the fields of a fork child's reply
    that :func:`~minigun.core.executors._chunks.settle_chunk` reads)."""

    #: outputs of the chunk's items, in item order
    outs: list[Any]
    #: ``(stage name, value)`` pairs emitted with ``out.to(name)``
    routed: list[tuple[str, Any]]
    processed: int
    dropped: int
    #: wall seconds the chunk took on the worker
    busy: float
    #: seconds per item for a chunk of a few items; None for a larger one
    latencies: list[float] | None
    #: ``(index in chunk, error)`` of each item that raised, in item order
    failures: list[tuple[int, ErrorPayload]]


loads = pickle.loads


def dumps(obj: Any, by_value: tuple[bytes, ...] = ()) -> bytes:
    """Pickle ``obj`` for the other side: plain pickle, cloudpickle where it must.

    Plain pickle is several times faster on plain data; cloudpickle is needed for what
    the other side cannot import by name: lambdas and local classes (plain pickle
    refuses them), anything from ``__main__``, and anything from a module shipped by
    value (``by_value``: module names, found in the pickle's references), whose classes
    exist on the workers only as cloudpickle rebuilt them.
    """
    try:
        data = pickle.dumps(obj, PROTOCOL)
    except Exception:
        import cloudpickle

        return bytes(cloudpickle.dumps(obj, PROTOCOL))
    if b"__main__" in data or any(name in data for name in by_value):
        import cloudpickle

        return bytes(cloudpickle.dumps(obj, PROTOCOL))
    return data


def importable(names: list[str]) -> list[bool]:
    """Which of the modules ``names`` this worker can import by name (run on workers
    before shipping, to decide which modules travel by value)."""
    found = []
    for name in names:
        try:
            found.append(importlib.util.find_spec(name) is not None)
        except (ImportError, ValueError):
            found.append(False)
    return found


class _WorkerRun:
    """What a ``StageRuntime`` reads from its run on a worker, where there is no
    ``Run``: whether items are timed. Everything else a run does (retries, routing,
    stats, dead letters) happens in the parent."""

    def __init__(self, timing: bool) -> None:
        self.timing = timing


def _payload(exc: BaseException) -> ErrorPayload:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return encode_error(exc, text)


def bundle_key(token: str) -> str:
    """The dask key of a run's bundle."""
    return f"minigun-bundle-{token}"


class StageBundle:
    """The dask stages of one run as the parent pickled them: a token and the bytes."""

    def __init__(self, token: str, payload: bytes) -> None:
        self.token = token
        self.payload = payload

    def __reduce__(self) -> tuple[Any, ...]:
        return (StageBundle, (self.token, self.payload))


class _Loaded:
    """A run's stages as one worker built them from its bundle (once)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done = False
        self.runtimes: dict[str, StageRuntime] = {}
        self.setup_error: ErrorPayload | None = None

    def load(self, payload: bytes) -> None:
        from minigun.core.stage import StageRuntime

        try:
            nodes, hooks, timing = loads(payload)
        except BaseException as exc:
            error = RuntimeError(
                f"the pipeline could not be loaded on this dask worker: "
                f"{type(exc).__name__}: {exc}; the modules it uses must be importable on "
                "the workers (install them there)"
            )
            self.setup_error = encode_error(error, _payload(exc)[3])
            return
        run: Run = _WorkerRun(timing)  # type: ignore[assignment]
        self.runtimes = {node.name: StageRuntime(node, run) for node in nodes}
        try:
            for hook in hooks:  # @mg.after_fork: once per worker
                hook()
        except BaseException as exc:
            self.setup_error = _payload(exc)


class _WorkerState:
    """The runs one worker holds stages for, by bundle token."""

    def __init__(self) -> None:
        self.loaded: dict[str, _Loaded] = {}
        self.watching = False


_workers: weakref.WeakKeyDictionary[Any, _WorkerState] = weakref.WeakKeyDictionary()
_workers_lock = threading.Lock()


def stages_of(bundle: StageBundle) -> _Loaded:
    """This worker's stages of ``bundle``'s run, built on first use."""
    from distributed import get_worker

    worker = get_worker()
    with _workers_lock:
        state = _workers.get(worker)
        if state is None:
            state = _workers[worker] = _WorkerState()
        loaded = state.loaded.get(bundle.token)
        if loaded is None:
            loaded = state.loaded[bundle.token] = _Loaded()
            if not state.watching:
                state.watching = True
                worker.loop.add_callback(_forget_finished_runs, worker, state)
    if not loaded.done:
        with loaded.lock:
            if not loaded.done:
                loaded.load(bundle.payload)
                loaded.done = True
    return loaded


async def _forget_finished_runs(worker: Any, state: _WorkerState) -> None:
    """On the worker's event loop: drop the stages of runs whose bundle the scheduler
    no longer knows (the run ended, or its process died), until none is left."""
    while True:
        await asyncio.sleep(FORGET_EVERY)
        with _workers_lock:
            tokens = list(state.loaded)
        status: dict[str, Any] = {}
        if tokens:
            try:
                status = await worker.scheduler.get_task_status(
                    keys=[bundle_key(token) for token in tokens]
                )
            except Exception:  # the scheduler is away: ask again later
                continue
        with _workers_lock:
            for token in tokens:
                if status.get(bundle_key(token)) is None:
                    state.loaded.pop(token, None)
            if not state.loaded:
                state.watching = False
                return


def run_chunk(bundle: StageBundle, stage: str, payload: bytes) -> bytes:
    """The dask task: run a chunk of items through ``stage``; the pickled :data:`Reply`.

    Never raises for what user code does: an item's exception is that item's failure,
    and the others' outputs still come back.
    """
    items: list[Any] = loads(payload)
    n = len(items)
    loaded = stages_of(bundle)
    if loaded.setup_error is not None:  # every item fails with it, as in an ipc_fork child
        failed = [(i, loaded.setup_error) for i in range(n)]
        return dumps(Reply([], [], 0, 0, 0.0, None, failed))
    runtime = loaded.runtimes[stage]
    timeout = runtime.node.timeout
    apply = runtime.apply  # withdraws a failed item's partial output itself
    outs: list[Any] = []
    routed: list[tuple[str, Any]] = []
    failures: list[tuple[int, ErrorPayload]] = []
    bounds: list[tuple[int, int]] = []  # (len(outs), len(routed)) after each item
    latencies: list[float] | None = [] if n <= PER_ITEM_LATENCY else None
    processed = dropped = 0
    t0 = perf_counter()
    for i, item in enumerate(items):
        ti = perf_counter()
        try:
            if timeout is None:
                gone = apply(item, outs, routed)
            else:
                gone = runtime.apply_with_timeout(item, outs, routed, timeout)
            if gone:
                dropped += 1
            else:
                processed += 1
        except BaseException as exc:
            failures.append((i, _payload(exc)))
        if latencies is not None:
            latencies.append(perf_counter() - ti)
        bounds.append((len(outs), len(routed)))
    busy = perf_counter() - t0
    reply = Reply(outs, routed, processed, dropped, busy, latencies, failures)
    try:
        return dumps(reply)
    except Exception:
        pass
    return dumps(_without_unpicklable(runtime, reply, bounds))


def _without_unpicklable(
    runtime: StageRuntime, reply: Reply, bounds: list[tuple[int, int]]
) -> Reply:
    """Some output does not pickle: fail only the items that emitted one."""
    outs, routed, failures, lost = drop_unpicklable(
        reply.outs,
        reply.routed,
        bounds,
        reply.failures,
        lambda value, err: (
            f"stage {runtime.name!r}: a result of type {type_name(value)!r} cannot be "
            f"sent back from the dask worker: {err}; emit picklable values"
        ),
        dumps,
    )
    return reply._replace(
        outs=outs, routed=routed, processed=reply.processed - lost, failures=failures
    )


def dask_setup(worker: Any) -> None:
    """Preload of the ``LocalCluster`` workers minigun starts: SIGINT and SIGTERM are
    for the minigun process to handle.

    Its workers share its process group, so a Ctrl-C on the terminal, or the runner's
    SIGTERM on a timeout or cancel, reaches them too; left to their default they would
    die mid-item while the run drains. The run closes the cluster when it ends, and a
    SIGKILL of the group (grace over, the runner dead) still ends them, as does the
    death of the minigun process (their nanny's pipe closes). Like a forked child,
    which also leaves these signals to its parent.
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
