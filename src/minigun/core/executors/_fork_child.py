"""What a forked child runs: the stage's user code over chunks of items.

Kept deliberately small and self-contained (see :mod:`._fork_safety` for why): it
reads work from its own pipe, calls ``StageRuntime.apply`` (user code only: no
engine lock, inbox or stats is touched), records progress in shared memory, and
writes one :class:`~._fork_protocol.Reply` per chunk. Every module it uses is
imported here, in the parent, before any fork.
"""

from __future__ import annotations

import io
import time
import traceback
from types import GeneratorType
from typing import TYPE_CHECKING, Any

from minigun.core.executors._fork_protocol import (
    ErrorPayload,
    Progress,
    Reply,
    Work,
    dumps,
    encode_error,
    loads,
    read_frame,
    type_name,
    write_frame,
)
from minigun.core.executors._fork_safety import flush_streams

if TYPE_CHECKING:
    from minigun.core.engine import Run
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


def run_hooks(run: Run) -> ErrorPayload | None:
    """``@mg.after_fork`` hooks; an error is reported against the items of the child."""
    try:
        run.call_hooks("after_fork")
    except BaseException as exc:
        return _payload(exc)
    return None


def process_chunk(
    runtime: StageRuntime,
    seq: int,
    items: list[Any],
    progress: Progress,
    base: int,
    timed: bool,
    setup_error: ErrorPayload | None,
) -> bytes:
    """Run ``items`` through the stage and return the pickled reply."""
    n = len(items)
    if setup_error is not None:
        everything = [(i, setup_error) for i in range(n)]
        return dumps(Reply(seq, [], [], 0, 0, 0.0, None, everything, 0.0))
    view = progress.view
    index_slot = base + Progress.INDEX
    started_slot = base + Progress.STARTED
    view[base + Progress.SEQ] = seq
    outs: list[Any] = []
    routed: list[tuple[str, Any]] = []
    failures: list[tuple[int, ErrorPayload]] = []
    bounds: list[int] = []  # len(outs) after each item
    routed_bounds: list[int] = []  # len(routed) after each item, for stages that route
    can_route = runtime.node.can_route
    latencies: list[float] | None = [] if n <= PER_ITEM_LATENCY else None
    processed = dropped = 0
    c0 = process_time()
    t0 = perf_counter()
    if not timed and latencies is None and not can_route:
        # The hot loop for many small items. It calls the runtime's per-shape function
        # directly (as StageRuntime.run_batch does) and withdraws a failed item's
        # partial output itself, from the bounds it keeps anyway.
        apply = runtime._apply_fn
        mark = bounds.append
        end = 0
        if apply == runtime._apply_value:  # the common shape, without a call in between
            call, append = runtime._call, outs.append
            for i, item in enumerate(items):
                view[index_slot] = i
                try:
                    result = call(item)
                    if result is None:
                        dropped += 1
                    elif type(result) is GeneratorType:
                        outs.extend(result)
                    else:
                        append(result)
                except BaseException as exc:
                    del outs[end:]
                    failures.append((i, _payload(exc)))
                end = len(outs)
                mark(end)
        else:
            for i, item in enumerate(items):
                view[index_slot] = i
                try:
                    if apply(item, outs, routed):
                        dropped += 1
                except BaseException as exc:
                    del outs[end:]
                    failures.append((i, _payload(exc)))
                end = len(outs)
                mark(end)
        processed = n - dropped - len(failures)
    else:
        apply = runtime.apply  # withdraws a failed item's partial output itself
        for i, item in enumerate(items):
            if timed:
                view[started_slot] = monotonic_ns()
            view[index_slot] = i
            ti = perf_counter()
            try:
                if apply(item, outs, routed):
                    dropped += 1
                else:
                    processed += 1
            except BaseException as exc:
                failures.append((i, _payload(exc)))
            if latencies is not None:
                latencies.append(perf_counter() - ti)
            bounds.append(len(outs))
            if can_route:
                routed_bounds.append(len(routed))
    busy = perf_counter() - t0
    cpu = process_time() - c0
    view[index_slot] = n  # past the end: the chunk is done, the reply is being sent
    try:
        return dumps(Reply(seq, outs, routed, processed, dropped, busy, latencies, failures, cpu))
    except Exception:
        pass
    # Some output does not pickle: find the items that made it, fail only those (an
    # item that emitted something was counted as processed, never as dropped).
    failed = {i for i, _ in failures}
    keep_outs: list[Any] = []
    keep_routed: list[tuple[str, Any]] = []
    o0 = r0 = 0
    for i in range(n):
        o1 = bounds[i]
        r1 = routed_bounds[i] if can_route else 0
        if i not in failed:
            mine, mine_routed = outs[o0:o1], routed[r0:r1]
            problem = _unpicklable(mine + [v for _, v in mine_routed])
            if problem is None:
                keep_outs.extend(mine)
                keep_routed.extend(mine_routed)
            else:
                value, err = problem
                error = TypeError(
                    f"stage {runtime.name!r}: a result of type {type_name(value)!r} cannot be "
                    f"sent back from the {runtime.node.execution} child process: {err}; "
                    "emit picklable values"
                )
                failures.append((i, encode_error(error, f"TypeError: {error}\n")))
                processed -= 1
        o0, r0 = o1, r1
    failures.sort(key=lambda f: f[0])
    return dumps(
        Reply(seq, keep_outs, keep_routed, processed, dropped, busy, latencies, failures, cpu)
    )


def _unpicklable(values: list[Any]) -> tuple[Any, BaseException] | None:
    for value in values:
        try:
            dumps(value)
        except Exception as exc:
            return value, exc
    return None


def run_once(
    runtime: StageRuntime, items: list[Any], up: int, progress: Progress, slot: int, timed: bool
) -> None:
    """cow_fork: the child already holds its items (inherited memory); one reply, then exit."""
    setup_error = run_hooks(runtime.run)
    payload = process_chunk(runtime, 0, items, progress, progress.base(slot), timed, setup_error)
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
        work: Work = loads(frame)
        payload = process_chunk(runtime, work.seq, work.items, progress, base, timed, setup_error)
        flush_streams()
        write_frame(up, payload)
