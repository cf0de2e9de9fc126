"""Chunks of items processed away from this process, and their retirement.

The fork executors send a chunk to a forked child, the dask executor to a cluster
worker; either way the reply (or the failure) is retired through
:meth:`StageRuntime.retire_remote`, the engine's one implementation of retries,
``on_error``, dead letters and stats. What it hands back -- items to send again at
once, and items to retry after their backoff -- becomes new chunks here, the same way
for every remote executor.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Protocol

from minigun.core.executors._fork_protocol import ErrorPayload, decode_error
from minigun.core.stage import RemoteFailure, Resend

if TYPE_CHECKING:
    from minigun.core.stage import StageRuntime


class ChunkReply(Protocol):
    """What came back for a chunk: a fork child's ``Reply`` or a dask worker's."""

    @property
    def outs(self) -> list[Any]: ...
    @property
    def routed(self) -> list[tuple[str, Any]]: ...
    @property
    def processed(self) -> int: ...
    @property
    def dropped(self) -> int: ...
    @property
    def busy(self) -> float: ...
    @property
    def latencies(self) -> list[float] | None: ...
    @property
    def failures(self) -> list[tuple[int, ErrorPayload]]: ...


__all__ = ["Chunk", "fail_chunk", "one_per_chunk", "settle_chunk"]


class Chunk:
    """Items sent together, with the attempts each has used so far.

    ``due`` is when a retried chunk may go (monotonic clock). ``window`` is the number
    of items per progress window a fork child was (or will be) told to use, 0 until the
    executor picks one; ``seq`` numbers the chunks sent to a child. The dask executor
    uses neither.
    """

    __slots__ = ("attempts", "due", "items", "seq", "window")

    def __init__(
        self,
        items: list[Any],
        attempts: list[int] | None = None,
        due: float = 0.0,
        window: int = 0,
    ):
        self.items = items
        self.attempts = attempts if attempts is not None else [0] * len(items)
        self.due = due
        self.seq = 0
        self.window = window


def settle_chunk(runtime: StageRuntime, chunk: Chunk, reply: ChunkReply) -> list[Chunk]:
    """Retire a chunk's finished items; return the chunks that must be sent again.

    Each of the reply's failures gets an attempt: retried (after ``retry_wait``) while
    attempts remain and the run is not ending, else settled by ``on_error``.
    """
    failures: list[RemoteFailure] = [
        (index, *decode_error(payload)) for index, payload in reply.failures
    ]
    return _resend(
        *runtime.retire_remote(
            chunk.items,
            chunk.attempts,
            reply.outs,
            reply.routed,
            reply.processed,
            reply.dropped,
            reply.busy,
            reply.latencies,
            failures,
            [],
        )
    )


def fail_chunk(
    runtime: StageRuntime,
    chunk: Chunk,
    failures: list[RemoteFailure],
    rerun: list[int] | None = None,
) -> list[Chunk]:
    """Retire a chunk that produced nothing: ``failures`` pay an attempt, ``rerun``
    items go again without one."""
    return _resend(
        *runtime.retire_remote(
            chunk.items, chunk.attempts, [], [], 0, 0, 0.0, None, failures, rerun or []
        )
    )


def _resend(again: Resend, retry: Resend, wait: float) -> list[Chunk]:
    """The chunks :meth:`StageRuntime.retire_remote` asks for: ``again`` at once,
    ``retry`` after ``wait`` seconds."""
    todo = []
    if again[0]:
        todo.append(Chunk(*again))
    if retry[0]:
        todo.append(Chunk(*retry, due=time.monotonic() + wait))
    return todo


def one_per_chunk(chunk: Chunk) -> list[Chunk]:
    """The chunk's items one per chunk, attempts kept: to single out a bad item."""
    return [Chunk([item], [n]) for item, n in zip(chunk.items, chunk.attempts)]
