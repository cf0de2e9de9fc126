"""The dask executor: a stage's items run on a Dask ``distributed`` cluster.

Where: the scheduler at the stage's ``dask_address`` (run argument or ``--dask-address``
> ``MINIGUN_DASK_ADDRESS`` > stage option > class attribute), else a ``LocalCluster``
started for the run -- one worker process per core (lowered by ``max_processes``), one
thread each -- and closed when the run ends. All the dask stages of a run that use the
same cluster share one client (and one ``LocalCluster``).

Shipping: the run's dask stages, with the pipeline instance their methods are bound to
and the ``@mg.after_fork`` hooks, are pickled once (cloudpickle) into one bundle, a
dask task every chunk depends on: each worker builds the stages from it and runs the
hooks once, on its first chunk, and keeps them until the run ends (see
:mod:`._dask_worker`); if every worker holding the bundle dies, the scheduler builds it
again. ``@mg.before_fork`` runs in this process first, once per run, so a hook can
close what cannot be pickled. Modules the workers cannot import by name (a
pipeline file run by path against a remote cluster) travel by value.

Items: one driver thread per stage takes items from the inbox and submits them in
chunks, one task per chunk. Chunks carry about :data:`TARGET_CHUNK_SECONDS` of work,
measured as replies come back (one item until the first reply; ``chunk=N`` fixes the
size), never more than one worker thread's share of the items waiting (so chunks halve
towards the end of a stream), and a partial chunk goes out at once when a worker
thread would otherwise idle. At most ``max_in_flight`` chunks are
outstanding (default: :data:`DEPTH` per worker thread); beyond that the stage stops
taking items, its inbox fills and the stages upstream block: backpressure. Replies are
handled as they complete, in any order, by a second thread, which hands outputs on
through ``StageRuntime.complete`` and failed items through ``StageRuntime.settle_failure``
-- the engine's one implementation of retries, ``on_error``, dead letters and stats,
as for the fork executors. Retries go back to the cluster after their backoff.

Failures: an item's exception comes back as that item's failure. A worker that dies
mid-chunk is dask's to handle first: the scheduler runs the chunk again on another
worker (so its items may run twice: at-least-once, as on ``ipc_fork``). A chunk whose
workers keep dying (``KilledWorker``, after ``distributed.scheduler.allowed-failures``)
is split into single items, without using an attempt, and an item that still kills its
worker fails with ``mg.ChildDied`` and goes through ``retries``/``on_error``. A cluster
left with no worker for :data:`NO_WORKER_PATIENCE` seconds while chunks wait fails them
the same way, so nothing waits forever. Per-item ``timeout`` is enforced on the worker
(the overrunning call is abandoned on a helper thread, as on a thread stage).

Shutdown: the stage ends when its inbox is closed and nothing is outstanding; the last
dask stage of the run on a cluster closes the client and, if minigun started the
cluster, the cluster (its worker processes are gone when ``join`` returns). Under the
runner the ``LocalCluster``'s processes are in the run's process group: they ignore the
group's SIGTERM/SIGINT (the run drains and closes them; see
:func:`._dask_worker.dask_setup`), die with the group's SIGKILL, and exit on their own if
this process dies. On a remote cluster only the client is closed; the workers drop
this run's bundle and forget its tasks.

``distributed`` is imported only here, when a dask stage starts (or by
:func:`describe_cluster`, for ``minigun inspect``).
"""

from __future__ import annotations

import math
import os
import queue
import sys
import threading
import time
import uuid
from collections import Counter, deque
from typing import TYPE_CHECKING, Any

from minigun.core.errors import ChildDied
from minigun.core.executors import _dask_worker as worker_side
from minigun.core.executors._chunk_size import ChunkSizer
from minigun.core.executors._chunks import Chunk, fail_chunk, one_per_chunk, settle_chunk
from minigun.core.executors._fork_protocol import type_name
from minigun.core.executors._fork_safety import once_per_run
from minigun.core.executors.base import Executor
from minigun.core.stage import RemoteFailure

if TYPE_CHECKING:
    from minigun.core.engine import Run
    from minigun.core.stage import StageRuntime

__all__ = ["DaskExecutor", "describe_cluster", "local_cluster_size"]

#: Seconds of worker time one chunk should carry. A task costs the scheduler and the
#: client several milliseconds of this process's CPU, on a core the workers of a
#: LocalCluster also want; the dask docs advise tasks of 100 ms and more. 0.2 s matched
#: hand-chunked ``client.map`` here (benchmarks/dask.py); 50 ms was 10% slower.
TARGET_CHUNK_SECONDS = 0.2
MAX_CHUNK = 8192
#: The share cap never makes a chunk carry less work than this: below it, a task costs
#: more than the idle worker it would spare at the end of a stream.
MIN_CHUNK_SECONDS = 0.005
#: Chunks outstanding per worker thread, by default: one running, one ready on the
#: worker (dask's scheduler sends a worker thread two), and one at the scheduler, which
#: it sends as soon as a chunk finishes -- without waiting for this process to settle
#: that chunk and submit the next, which a loaded machine can delay by a whole chunk.
DEPTH = 3
#: At the end of a stream a chunk takes at most the items waiting divided by this many
#: per worker thread: halving chunks towards the end lets the workers finish together
#: with few tasks. Dividing by ``DEPTH`` instead made a tail of one-item tasks, each
#: costing this process and the scheduler CPU that the workers of a LocalCluster want.
TAIL_PARTS = 1
#: While the cluster is busy and the next chunk is not full, look for new items this often.
TOP_UP_POLL = 0.005
#: How often a waiting thread looks again (retries due, results, a quiet cluster).
POLL = 0.05
#: Seconds chunks may wait on a cluster with no worker before they fail.
NO_WORKER_PATIENCE = 300.0
#: How often the cluster's size is read again (a cluster that scales gets more in flight).
RESIZE_EVERY = 5.0
#: How long ``minigun inspect`` waits for a scheduler.
INSPECT_TIMEOUT = 5.0

monotonic = time.monotonic
_STOP = object()

#: (index in chunk, exception, traceback text or None)
Failure = RemoteFailure


def local_cluster_size(max_processes: int | None = None) -> int:
    """Worker processes of a ``LocalCluster`` minigun starts: one per usable core,
    lowered by a ``max_processes`` cap."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, max_processes) if max_processes else cores)


def describe_cluster(address: str | None, max_processes: int | None = None) -> dict[str, Any]:
    """What ``minigun inspect`` says about a cluster: a ``LocalCluster``'s planned size,
    or what the scheduler at ``address`` reports (within :data:`INSPECT_TIMEOUT`)."""
    if address is None:
        n = local_cluster_size(max_processes)
        return {"address": None, "local": True, "workers": n, "threads": n}
    try:
        from distributed import Client

        with Client(address, timeout=INSPECT_TIMEOUT, set_as_default=False) as client:
            nthreads = client.nthreads()
    except Exception as exc:
        return {"address": address, "local": False, "error": f"{type(exc).__name__}: {exc}"}
    return {
        "address": address,
        "local": False,
        "workers": len(nthreads),
        "threads": sum(nthreads.values()),
    }


# --------------------------------------------------------------------------- sessions


class _Session:
    """One run's connection to one cluster, shared by the run's dask stages on it."""

    def __init__(self, run: Run, address: str | None) -> None:
        self.run = run
        self.address = address
        self.users = 0
        self.lock = threading.Lock()
        self.opened = False
        self.error: BaseException | None = None
        self.client: Any = None
        self.cluster: Any = None
        self.bundle: Any = None  # the future of the StageBundle on the workers
        self.token = uuid.uuid4().hex[:12]
        self.by_value: tuple[bytes, ...] = ()
        self._by_value_modules: list[Any] = []
        self.scheduler = ""
        self.workers = 0
        self.threads = 0
        self._quiet: _Quiet | None = None

    def open(self) -> None:
        from distributed import Client

        graph = self.run.graph
        if self.address is None:
            # A cluster for one run: its scheduler's INFO chatter (workers registering,
            # clients connecting) is not the run's news; warnings and errors still are.
            self._quiet = _Quiet("distributed")
            n = local_cluster_size(graph.settings.get("max_processes"))
            self.cluster = self._local_cluster(n)
            self.client = Client(self.cluster, set_as_default=False)
        else:
            try:
                self.client = Client(self.address, set_as_default=False)
            except Exception as exc:
                raise ConnectionError(
                    f"cannot connect to the dask scheduler at {self.address}: "
                    f"{type(exc).__name__}: {exc}"
                ) from None
        self.scheduler = str(self.client.scheduler.address)
        try:
            self.client.wait_for_workers(1, timeout=NO_WORKER_PATIENCE)
        except Exception:
            raise ChildDied(
                f"the dask cluster at {self.scheduler} had no worker for {NO_WORKER_PATIENCE:g}s"
            ) from None
        self.resize()
        nodes = [
            node
            for node in graph.nodes.values()
            if node.execution == "dask" and node.address == self.address
        ]
        self._ship(nodes, graph.hooks.get("after_fork", []), bool(self.run.timing))

    def _local_cluster(self, n: int) -> Any:
        """A LocalCluster of ``n`` single-threaded worker processes.

        Its workers ignore SIGTERM/SIGINT once their preload has run; a stop signal sent
        to the run's group before that (a timeout or cancel while the cluster starts,
        which takes seconds) kills them, and the cluster fails to start -- possibly
        before this process has acted on the same signal, so the run may not know yet
        that it is stopping. The signal is gone by then: the cluster is started once
        more, and the run drains what it holds, as a stopped run does.
        """
        from distributed import LocalCluster

        for attempt in (1, 2):
            try:
                return LocalCluster(
                    n_workers=n,
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    # No dashboard, and its HTTP server on a free port: 8787 may be taken.
                    scheduler_kwargs={"dashboard": False, "dashboard_address": "127.0.0.1:0"},
                    preload=[worker_side.__name__],
                )
            except Exception:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def resize(self) -> int:
        """Read the cluster's size again; its total worker threads."""
        nthreads = self.client.nthreads()
        self.workers, self.threads = len(nthreads), sum(nthreads.values())
        return self.threads

    def _ship(self, nodes: list[Any], hooks: list[Any], timing: bool) -> None:
        """Pickle the stages once and put a copy on every worker."""
        import cloudpickle

        self._by_value(nodes, hooks)
        try:
            payload = cloudpickle.dumps((nodes, hooks, timing), worker_side.PROTOCOL)
        except Exception as exc:
            names = ", ".join(repr(node.name) for node in nodes)
            raise TypeError(
                f"dask stage(s) {names}: the pipeline instance cannot be shipped to the dask"
                f" workers, it must pickle with cloudpickle: {type(exc).__name__}: {exc}; open"
                " what cannot be pickled (connections, locks, open files) in an"
                " @mg.after_fork hook, which runs on every worker, or close it in"
                " @mg.before_fork"
            ) from None
        # A task, not scattered data: if every worker holding it dies, the scheduler
        # builds it again from its arguments instead of losing it for good.
        self.bundle = self.client.submit(
            worker_side.StageBundle,
            self.token,
            payload,
            key=worker_side.bundle_key(self.token),
            pure=False,
        )

    def _by_value(self, nodes: list[Any], hooks: list[Any]) -> None:
        """Ship by value the pipeline modules some worker cannot import by name.

        A LocalCluster's workers import what this process imports (they inherit its
        ``sys.path``); a remote cluster's workers know only what is installed there.
        ``__main__`` always travels by value (cloudpickle does that itself).
        """
        import cloudpickle

        owners = [node.owner for node in nodes] + [getattr(h, "__self__", None) for h in hooks]
        names = sorted(
            {
                type(owner).__module__
                for owner in owners
                if owner is not None and type(owner).__module__ not in ("__main__", "builtins")
            }
        )
        if not names:
            return
        answers = self.client.run(worker_side.importable, names)
        missing = [
            name
            for i, name in enumerate(names)
            if not all(found[i] for found in answers.values()) and name in sys.modules
        ]
        with _by_value_lock:
            for name in missing:
                module = sys.modules[name]
                if _by_value_users[name] == 0:
                    cloudpickle.register_pickle_by_value(module)
                _by_value_users[name] += 1
                self._by_value_modules.append(module)
        self.by_value = tuple(name.encode() for name in missing)

    def describe(self) -> dict[str, Any]:
        return {
            "address": self.scheduler,
            "workers": self.workers,
            "threads": self.threads,
            "started_by_minigun": self.cluster is not None,
        }

    def close(self) -> None:
        """Close the client and, if minigun started it, the cluster; forget by-value modules."""
        import cloudpickle

        try:
            if self.client is not None:
                self.client.close()
        finally:
            if self.cluster is not None:
                self.cluster.close()
            if self._quiet is not None:
                self._quiet.restore()
            with _by_value_lock:
                for module in self._by_value_modules:
                    _by_value_users[module.__name__] -= 1
                    if _by_value_users[module.__name__] == 0:
                        cloudpickle.unregister_pickle_by_value(module)


#: Modules shipped by value, with how many open sessions ship them (cloudpickle's
#: registry is global to the process; runs may overlap).
_by_value_users: Counter[str] = Counter()
_by_value_lock = threading.Lock()


class _Quiet:
    """A logger raised to WARNING until :meth:`restore` (if it was more verbose)."""

    def __init__(self, name: str) -> None:
        import logging

        self.logger = logging.getLogger(name)
        self.level = self.logger.level
        if self.logger.getEffectiveLevel() < logging.WARNING:
            self.logger.setLevel(logging.WARNING)

    def restore(self) -> None:
        self.logger.setLevel(self.level)


_sessions: dict[tuple[int, str | None], _Session] = {}
_sessions_lock = threading.Lock()


def _acquire(run: Run, address: str | None) -> _Session:
    """The run's session with the cluster at ``address``, opened by its first user."""
    key = (id(run), address)
    with _sessions_lock:
        session = _sessions.get(key)
        if session is None:
            session = _sessions[key] = _Session(run, address)
        session.users += 1
    with session.lock:
        if not session.opened:
            session.opened = True
            try:
                session.open()
            except BaseException as exc:
                session.error = exc
    if session.error is not None:
        _release(session)
        raise session.error
    return session


def _release(session: _Session) -> None:
    with _sessions_lock:
        session.users -= 1
        last = session.users == 0
        if last:
            _sessions.pop((id(session.run), session.address), None)
    if last:
        session.close()


# --------------------------------------------------------------------------- the executor


class DaskExecutor(Executor):
    """One stage on a Dask cluster: a feeding thread and a settling thread."""

    name = "dask"

    def __init__(self, runtime: StageRuntime, run: Run) -> None:
        super().__init__(runtime, run)
        #: The whole run, not only its RunContext: a session is shared per run and
        #: reads the run's graph (every dask stage of it) when it opens.
        self.whole_run = run
        self.node = runtime.node
        options = self.node.options
        chunk = options.get("chunk")
        self.sizer = ChunkSizer(int(chunk) if chunk else None, TARGET_CHUNK_SECONDS, MAX_CHUNK)
        fixed = options.get("max_in_flight")
        self.fixed_in_flight: int | None = int(fixed) if fixed else None
        self.max_in_flight = 1
        self.threads = 1
        self.session: _Session | None = None
        self._cond = threading.Condition()
        self._in_flight: dict[str, tuple[Chunk, Any]] = {}
        self._todo: deque[Chunk] = deque()
        self._done: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._pending: list[Any] = []
        self._fatal: BaseException | None = None
        self._seq = 0
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if once_per_run(self.run, "before_fork"):
            self.run.call_hooks("before_fork")  # before the instance is pickled
        self._thread = threading.Thread(
            target=self._guarded, name=f"minigun-dask-{self.runtime.name}", daemon=True
        )
        self._thread.start()

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()

    def _guarded(self) -> None:
        settler: threading.Thread | None = None
        try:
            self.session = _acquire(self.whole_run, self.node.address)
            self._resize()
            stats = self.runtime.stats
            stats.cluster = self.session.describe()
            stats.workers = max(1, self.session.threads)
            settler = threading.Thread(
                target=self._settle_loop,
                name=f"minigun-dask-{self.runtime.name}-results",
                daemon=True,
            )
            settler.start()
            self._feed()
        except BaseException as exc:  # no cluster, an unpicklable instance, a bug
            error = self._named(exc)
            self.run.fail(error, self.runtime.name)
            self._abandon(error, settler)
        finally:
            if settler is not None:
                self._done.put(_STOP)
                settler.join()
            if self.session is not None:
                _release(self.session)

    def _named(self, exc: BaseException) -> BaseException:
        """The error, its message naming the stage (it reaches the user as one line)."""
        if isinstance(exc, (ConnectionError, ChildDied, TypeError)) and not str(exc).startswith(
            ("stage ", "dask stage")
        ):
            return type(exc)(f"stage {self.runtime.name!r}: {exc}")
        return exc

    def _abandon(self, exc: BaseException, settler: threading.Thread | None) -> None:
        """Fail every item this stage holds or will still receive; the run is failing."""
        if settler is not None:
            self._done.put(_STOP)
            settler.join()
            settler = None
        with self._cond:
            held = [chunk for chunk, _ in self._in_flight.values()] + list(self._todo)
            futures = [future for _, future in self._in_flight.values()]
            self._in_flight.clear()
            self._todo.clear()
        if futures and self.session is not None and self.session.client is not None:
            try:
                self.session.client.cancel(futures)
            except Exception:
                pass
        held.append(Chunk(self._pending))
        self._pending = []
        for chunk in held:
            self._fail_all(chunk, exc)
        inbox = self.runtime.inbox
        while (batch := inbox.get_batch(MAX_CHUNK)) is not None:
            self._fail_all(Chunk(batch), exc)

    def _fail_all(self, chunk: Chunk, exc: BaseException) -> None:
        for item, attempts in zip(chunk.items, chunk.attempts):
            self.runtime.settle_failure(item, exc, attempts + 1)
        if chunk.items:
            self.runtime.complete(len(chunk.items), 0, 0, [], [])

    def _resize(self) -> None:
        assert self.session is not None
        self.threads = max(1, self.session.resize())
        self.max_in_flight = self.fixed_in_flight or max(2, DEPTH * self.threads)

    # ------------------------------------------------------------------ feeding

    def _limit(self, waiting: int) -> int:
        """Items for the next chunk: the sizer's, unless fixed, capped by one worker
        thread's share of the items waiting (:data:`TAIL_PARTS`), so that at the end of
        a stream the last chunks are smaller and the workers finish together instead of
        one waiting for another's full chunk. The cap stops at
        :data:`MIN_CHUNK_SECONDS` of work."""
        sizer = self.sizer
        limit = sizer.limit()
        if sizer.fixed is None and sizer.per_item is not None:
            floor = math.ceil(MIN_CHUNK_SECONDS / max(sizer.per_item, 1e-9))
            parts = min(self.max_in_flight, self.threads * TAIL_PARTS)
            limit = min(limit, max(floor, math.ceil(waiting / parts)))
        return limit

    def _feed(self) -> None:
        """Take items and retries and submit them, within ``max_in_flight``, until the
        inbox is closed and every chunk is settled."""
        inbox = self.runtime.inbox
        todo = self._todo
        closed = False
        resized = monotonic()
        while True:
            if monotonic() - resized > RESIZE_EVERY:
                self._resize()
                resized = monotonic()
            limit = self._limit(len(inbox) + len(self._pending))
            # Two chunks of the largest size in the inbox: filling a chunk of thousands
            # of trivial items through a 1,000-item inbox costs many producer wake-ups.
            inbox.capacity = max(self.node.queue_size, 2 * self.sizer.limit())
            with self._cond:
                while len(self._in_flight) >= self.max_in_flight and self._fatal is None:
                    self._cond.wait(POLL)
                if self._fatal is not None:
                    raise self._fatal
                now = monotonic()
                ready = next((c for c in todo if c.due <= now), None)
                if ready is not None:
                    todo.remove(ready)
                flying = len(self._in_flight)
                next_due = min((c.due for c in todo), default=None)
            if ready is not None:
                self._send(ready)
                continue
            pending = self._pending
            if not closed and len(pending) < limit:
                if not flying and not pending and next_due is None:
                    wait: float | None = None  # nothing to wait for but new items
                elif pending:
                    wait = TOP_UP_POLL
                else:
                    wait = POLL if next_due is None else max(0.0, min(POLL, next_due - now))
                batch = inbox.get_batch(limit - len(pending), wait)
                if batch is None:
                    closed = True
                elif batch:
                    pending.extend(batch)
            if pending and (len(pending) >= limit or flying < self.threads or closed):
                chunk, self._pending = Chunk(pending), []
                self._send(chunk)
                continue
            if closed and not pending:
                with self._cond:
                    if not self._in_flight and not self._todo:
                        return
                    if self._fatal is None:
                        due = min((c.due for c in self._todo), default=None)
                        self._cond.wait(POLL if due is None else min(POLL, due - monotonic()))

    def _send(self, chunk: Chunk) -> None:
        """Submit ``chunk``; if that fails, keep it where ``_abandon`` finds it."""
        try:
            self._submit(chunk)
        except BaseException:
            with self._cond:
                if all(held is not chunk for held, _ in self._in_flight.values()):
                    self._todo.appendleft(chunk)
            raise

    def _submit(self, chunk: Chunk) -> None:
        session = self.session
        assert session is not None
        if self._client_gone():
            raise self._dropped("cancelled")
        payload = self._encode(chunk, session.by_value)
        if payload is None:
            return
        self._seq += 1
        key = f"minigun-{self.runtime.name}-{session.token}-{self._seq}"
        future = session.client.submit(
            worker_side.run_chunk,
            session.bundle,
            self.runtime.name,
            payload,
            key=key,
            pure=False,
        )
        with self._cond:
            self._in_flight[key] = (chunk, future)
        future.add_done_callback(self._done.put)

    def _encode(self, chunk: Chunk, by_value: tuple[bytes, ...]) -> bytes | None:
        """The chunk's items pickled; an item that does not pickle fails here."""
        try:
            return worker_side.dumps(chunk.items, by_value)
        except Exception:
            pass
        keep: list[int] = []
        for i, item in enumerate(chunk.items):
            try:
                worker_side.dumps(item, by_value)
            except Exception as exc:
                error = TypeError(
                    f"stage {self.runtime.name!r}: an item of type {type_name(item)!r} cannot"
                    f" be sent to the dask workers (items are pickled): {exc}; make it"
                    " picklable"
                )
                self.runtime.settle_failure(item, error, chunk.attempts[i] + 1)
                self.runtime.complete(1, 0, 0, [], [], units=self.runtime.units_of([item]))
            else:
                keep.append(i)
        chunk.items = [chunk.items[i] for i in keep]
        chunk.attempts = [chunk.attempts[i] for i in keep]
        return worker_side.dumps(chunk.items, by_value) if chunk.items else None

    # ------------------------------------------------------------------ settling

    def _settle_loop(self) -> None:
        """Handle chunks as they complete, in any order; watch for a cluster with no worker.

        The results of the chunks done by the time this thread looks are fetched in
        one ``gather`` (one round of requests, not one per chunk)."""
        quiet_since: float | None = None
        stop = False
        try:
            while not stop:
                try:
                    done = [self._done.get(timeout=1.0)]
                except queue.Empty:
                    quiet_since = self._watch(quiet_since)
                    continue
                while True:
                    try:
                        done.append(self._done.get_nowait())
                    except queue.Empty:
                        break
                stop = _STOP in done
                quiet_since = None
                with self._cond:
                    entries = [
                        (future, self._in_flight[future.key][0])
                        for future in done
                        if future is not _STOP and future.key in self._in_flight
                    ]  # (a chunk no longer in flight was abandoned)
                results = self._gather([f for f, _ in entries if f.status == "finished"])
                for future, chunk in entries:
                    again = self._settle_future(chunk, future, results.get(future.key))
                    with self._cond:
                        self._in_flight.pop(future.key, None)
                        self._todo.extend(again)
                        self._cond.notify_all()
        except BaseException as exc:  # an executor bug must fail the run, not hang it
            with self._cond:
                self._fatal = exc
                self._cond.notify_all()

    def _gather(self, futures: list[Any]) -> dict[str, bytes]:
        """The results of ``futures`` by key; {} if any cannot be had (each is then
        fetched, or its failure handled, on its own)."""
        if len(futures) < 2:
            return {}
        assert self.session is not None
        try:
            values = self.session.client.gather(futures)
        except Exception:
            return {}
        return {future.key: value for future, value in zip(futures, values)}

    def _watch(self, quiet_since: float | None) -> float | None:
        """Nothing completed for a while: fail what waits on a client that gave up on its
        scheduler (its futures are not always told), or on a cluster with no worker."""
        with self._cond:
            waiting = list(self._in_flight.items())
        if not waiting:
            return None
        assert self.session is not None
        error: ChildDied | None = None
        if self._client_gone():
            error = self._dropped("cancelled")
        else:
            try:
                workers = self.session.resize() and self.session.workers
            except Exception:
                workers = 0  # the scheduler is unreachable: no worker either
            if workers:
                return None
            now = monotonic()
            if quiet_since is None:
                return now
            if now - quiet_since < NO_WORKER_PATIENCE:
                return quiet_since
            error = ChildDied(
                f"stage {self.runtime.name!r}: the dask cluster at {self.session.scheduler} has "
                f"had no worker for {NO_WORKER_PATIENCE:g}s while items waited"
            )
        try:
            self.session.client.cancel([future for _, (_, future) in waiting])
        except Exception:
            pass
        for key, (chunk, _) in waiting:
            failures: list[Failure] = [(i, error, None) for i in range(len(chunk.items))]
            again = fail_chunk(self.runtime, chunk, failures)
            with self._cond:
                self._in_flight.pop(key, None)
                self._todo.extend(again)
                self._cond.notify_all()
        return None

    def _settle_future(self, chunk: Chunk, future: Any, data: bytes | None) -> list[Chunk]:
        """Retire a completed chunk (``data``: its result, if already fetched); return
        what must be sent again."""
        n = len(chunk.items)
        if data is not None or future.status == "finished":
            if data is None:
                try:
                    data = future.result(timeout=NO_WORKER_PATIENCE)
                except Exception as exc:  # its result was lost with a worker, beyond repair
                    return self._settle_error(chunk, exc)
            try:
                reply = worker_side.loads(data)
            except Exception as exc:
                if n > 1:  # which item's output is it? run them one by one to find out
                    return one_per_chunk(chunk)
                error = TypeError(
                    f"stage {self.runtime.name!r}: a result sent back from a dask worker "
                    f"cannot be unpickled here: {type(exc).__name__}: {exc}"
                )
                return fail_chunk(self.runtime, chunk, [(0, error, None)])
            self.sizer.learn(n, reply.busy)
            return settle_chunk(self.runtime, chunk, reply)
        problem: BaseException
        if future.status == "error":
            try:
                problem = future.exception(timeout=NO_WORKER_PATIENCE)
            except Exception as other:
                problem = other
        else:
            problem = self._dropped(future.status)
        return self._settle_error(chunk, problem)

    def _client_gone(self) -> bool:
        """The client closed: it gave up reconnecting to its scheduler."""
        assert self.session is not None
        return str(getattr(self.session.client, "status", "")) in ("closing", "closed")

    def _dropped(self, status: str) -> ChildDied:
        """Why a chunk was cancelled: the scheduler gone (the client gave up on it), or
        the scheduler's own decision."""
        assert self.session is not None
        client_status = str(getattr(self.session.client, "status", "unknown"))
        if client_status != "running":
            return ChildDied(
                f"stage {self.runtime.name!r}: lost the dask scheduler at "
                f"{self.session.scheduler} (client {client_status}); its chunks were dropped"
            )
        return ChildDied(
            f"stage {self.runtime.name!r}: the dask scheduler dropped a chunk of items ({status})"
        )

    def _settle_error(self, chunk: Chunk, exc: BaseException) -> list[Chunk]:
        """The task itself failed (user errors never do that): a worker kept dying under
        it, or the cluster failed it."""
        n = len(chunk.items)
        if type(exc).__name__ == "KilledWorker":
            if n > 1:  # find the item that kills its worker: one per task, no attempt used
                return one_per_chunk(chunk)
            exc = ChildDied(
                f"stage {self.runtime.name!r}: the dask workers running this item died"
                f" (dask gave up: {exc})"
            )
        failures: list[Failure] = [(i, exc, None) for i in range(n)]
        return fail_chunk(self.runtime, chunk, failures)
