"""What a forked child runs: the stage's user code over chunks of items.

Kept deliberately small and self-contained (see :mod:`._fork_safety` for why): it
reads work from its own pipe, runs it with ``StageRuntime.apply_items`` (user code
only: no engine lock, inbox or stats is touched), records progress in shared memory
once per window of items, and writes one :class:`~._fork_protocol.Reply` per chunk.
Every module it uses is imported here, in the parent, before any fork.
"""

from __future__ import annotations

import io
import time
import traceback
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from minigun.core.executors._fork_protocol import (
    ErrorPayload,
    Progress,
    Reply,
    Work,
    drop_unpicklable,
    dumps,
    encode_error,
    loads,
    read_frame,
    type_name,
    write_frame,
)
from minigun.core.executors._fork_safety import flush_streams

if TYPE_CHECKING:
    from minigun.core.run_context import RunContext
    from minigun.core.stage import StageRuntime

__all__ = ["process_chunk", "run_hooks", "run_once", "serve"]

perf_counter = time.perf_counter
process_time = time.process_time
monotonic_ns = time.monotonic_ns

#: Chunks up to this size report one latency per item; larger ones a mean.
PER_ITEM_LATENCY = 8


def _payload(exc: BaseException) -> ErrorPayload:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return encode_error(exc, text)


def run_hooks(run: RunContext) -> ErrorPayload | None:
    """``@mg.after_fork`` hooks; an error is reported against the items of the child."""
    try:
        run.call_hooks("after_fork")
    except BaseException as exc:
        return _payload(exc)
    return None


def process_chunk(
    runtime: StageRuntime,
    work: Work,
    progress: Progress,
    base: int,
    timed: bool,
    setup_error: ErrorPayload | None,
) -> bytes:
    """Run a chunk of items through the stage and return the pickled reply.

    Progress goes to the shared slot once per ``work.window`` items (every item with
    a per-item timeout, whose clock starts with the item). Any exception in user
    code, ``SystemExit`` included, is that item's failure: the child itself must
    survive to reply for the others.
    """
    seq, items = work.seq, work.items
    n = len(items)
    if setup_error is not None:
        everything = [(i, setup_error) for i in range(n)]
        return dumps(Reply(seq, [], [], 0, 0, 0.0, None, everything, 0.0))
    view = progress.view
    index_slot = base + Progress.INDEX
    view[index_slot] = -1  # not started: the previous chunk's "done" must not count here
    view[base + Progress.SEQ] = seq
    window = work.window
    mark: Callable[[int], object]
    if timed:
        # The parent times each item from its start: every item is a window (the
        # parent asks for that too; the child does not rely on it).
        started_slot = base + Progress.STARTED
        window = 1

        def mark(i: int) -> None:
            view[started_slot] = monotonic_ns()
            view[index_slot] = i

    else:
        mark = partial(view.__setitem__, index_slot)
    outs: list[Any] = []
    routed: list[tuple[str, Any]] = []
    failures: list[tuple[int, ErrorPayload]] = []

    def failed(index: int, item: Any, exc: BaseException) -> None:
        failures.append((index, _payload(exc)))

    latencies: list[float] | None = [] if n <= PER_ITEM_LATENCY else None
    c0 = process_time()
    t0 = perf_counter()
    applied = runtime.apply_items(
        items,
        outs,
        routed,
        failed,
        catch=BaseException,
        latencies=latencies,
        window=window,
        mark=mark,
        bounds=True,
    )
    busy = perf_counter() - t0
    cpu = process_time() - c0
    view[index_slot] = n  # past the end: the chunk is done, the reply is being sent
    processed, dropped = applied.processed, applied.dropped
    try:
        return dumps(Reply(seq, outs, routed, processed, dropped, busy, latencies, failures, cpu))
    except Exception:
        pass
    # Some output does not pickle: fail only the items that emitted one.
    ends, routed_ends = applied.bounds()
    execution = runtime.node.execution
    outs, routed, failures, lost = drop_unpicklable(
        outs,
        routed,
        list(zip(ends, routed_ends)),
        failures,
        lambda value, err: (
            f"stage {runtime.name!r}: a result of type {type_name(value)!r} cannot be "
            f"sent back from the {execution} child process: {err}; emit picklable values"
        ),
    )
    reply = Reply(seq, outs, routed, processed - lost, dropped, busy, latencies, failures, cpu)
    return dumps(reply)


def run_once(
    runtime: StageRuntime, work: Work, up: int, progress: Progress, slot: int, timed: bool
) -> None:
    """cow_fork: the child already holds its items (inherited memory); one reply, then exit."""
    setup_error = run_hooks(runtime.run)
    payload = process_chunk(runtime, work, progress, progress.base(slot), timed, setup_error)
    flush_streams()
    write_frame(up, payload)


def serve(
    runtime: StageRuntime, down: int, up: int, progress: Progress, slot: int, timed: bool
) -> None:
    """ipc_fork: a persistent worker; chunks in, replies out, until the parent closes the pipe."""
    setup_error = run_hooks(runtime.run)
    base = progress.base(slot)
    reader = io.FileIO(down, "rb", closefd=False)
    while True:
        frame = read_frame(reader)
        if frame is None:
            return
        payload = process_chunk(runtime, loads(frame), progress, base, timed, setup_error)
        flush_streams()
        write_frame(up, payload)
