"""The wire protocol between a fork executor and its children.

Frames: an 8-byte little-endian length, then a pickle (protocol 5) of a named tuple.

* parent -> ipc worker: a :class:`Work`, ``(seq, items, window)``: a chunk of items and
  the size of its progress windows (see below). A cow_fork child gets a ``Work`` too,
  in memory (it inherits it with its items).
* child -> parent: a :class:`Reply` for one chunk, ``(seq, outs, routed, processed,
  dropped, busy, latencies, failures, cpu)``, where ``failures`` is a list of
  ``(index_in_chunk, ErrorPayload)``, ``busy`` the wall seconds the chunk took and
  ``cpu`` the child's CPU seconds for it. Outputs of all successful items of the chunk
  travel together, in item order (an item that raised has emitted nothing: see
  ``StageRuntime.apply_items``).

Both are :class:`typing.NamedTuple` classes, read by field name on both sides: a
named tuple is still a tuple, and its pickle is a plain tuple's plus one reference
to the class, so naming the fields costs nothing on the wire.

Progress: besides the pipes, each child slot has three 64-bit integers in a shared
anonymous mapping, :class:`Progress`: the sequence number of the chunk being worked
on, the index of the first item of the *window* being worked on, and (only when the
stage has a per-item timeout) when that item started (``CLOCK_MONOTONIC`` in ns,
which is system-wide). A window is ``window`` consecutive items of the chunk
(``[k * window, (k + 1) * window)``): the child publishes its progress once per
window, because on trivial items a shared-memory write per item costs about as much
as the items themselves. A per-item timeout needs the start of every item, so such
a stage has windows of one item, and so do items slow enough for a write per item
not to matter (see ``ForkExecutor.window_for``). When a child dies or overruns, the
parent reads the slot to know where it was: the items before the window are run
again (their results died with the child), the ones after it never started, and the
item of a one-item window is to blame. The items of a larger window are replayed one
item per chunk, so the item to blame is still found exactly (see
``ForkExecutor.settle_death``).

An exception travels as an :data:`ErrorPayload`: ``(pickled exception or None,
qualified type name, message, traceback text)``; the parent rebuilds the original
exception type when it can, and raises ``mg.RemoteError`` otherwise.

The child side uses blocking I/O on its own file objects; the parent side,
:class:`Channel`, is non-blocking so one parent thread can feed a worker and drain
its results at once without the two pipes ever filling up against each other.
"""

from __future__ import annotations

import io
import mmap
import os
import pickle
import struct
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from minigun.core.errors import RemoteError

__all__ = [
    "PROTOCOL",
    "Channel",
    "ErrorPayload",
    "Progress",
    "Reply",
    "Work",
    "decode_error",
    "drop_unpicklable",
    "dumps",
    "encode_error",
    "loads",
    "read_frame",
    "read_reply",
    "write_frame",
]

PROTOCOL = 5
HEADER = struct.Struct("<Q")
_READ_SIZE = 1 << 18

ErrorPayload = tuple[bytes | None, str, str, str]


class Work(NamedTuple):
    """Parent -> ipc worker: one chunk of items."""

    seq: int
    items: list[Any]
    #: items per progress window (1: the child publishes every item)
    window: int


class Reply(NamedTuple):
    """Child -> parent: what became of one chunk."""

    seq: int
    #: outputs of the chunk's items, in item order
    outs: list[Any]
    #: ``(stage name, value)`` pairs emitted with ``out.to(name)``
    routed: list[tuple[str, Any]]
    processed: int
    dropped: int
    #: wall seconds the chunk took in the child
    busy: float
    #: seconds per item for a chunk of a few items; None for a larger one (``busy`` is
    #: spread over its items)
    latencies: list[float] | None
    #: ``(index in chunk, error)`` of each item that raised, in item order
    failures: list[tuple[int, ErrorPayload]]
    #: CPU seconds the child spent on the chunk
    cpu: float


loads = pickle.loads


def dumps(obj: Any) -> bytes:
    return pickle.dumps(obj, PROTOCOL)


# ---------------------------------------------------------------------- errors


def type_name(obj: Any) -> str:
    cls = obj if isinstance(obj, type) else type(obj)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def encode_error(exc: BaseException, traceback_text: str) -> ErrorPayload:
    """Pack an exception for the parent; the pickle is dropped if it does not round-trip."""
    blob: bytes | None
    try:
        blob = dumps(exc)
        loads(blob)  # an exception that pickles but cannot be rebuilt (odd __init__)
    except Exception:
        blob = None
    try:
        message = str(exc)
    except Exception:
        message = f"<unprintable {type(exc).__name__}>"
    return (blob, type_name(exc), message, traceback_text)


def decode_error(payload: ErrorPayload) -> tuple[BaseException, str]:
    """The original exception (or ``mg.RemoteError``) and the child's traceback text."""
    blob, name, message, traceback_text = payload
    if blob is not None:
        try:
            exc = loads(blob)
        except Exception:
            exc = None
        if isinstance(exc, BaseException):
            return exc, traceback_text
    return RemoteError(name, message, traceback_text), traceback_text


# ---------------------------------------------------------------------- progress slots


class Progress:
    """Per-child ``[seq, window start, started_ns]`` in memory shared with the children."""

    SEQ, INDEX, STARTED = 0, 1, 2
    WIDTH = 3

    def __init__(self, slots: int) -> None:
        self._map = mmap.mmap(-1, max(1, slots) * self.WIDTH * 8)  # MAP_SHARED | MAP_ANON
        self.view = memoryview(self._map).cast("q")

    def base(self, slot: int) -> int:
        return slot * self.WIDTH

    def reset(self, slot: int) -> None:
        b = self.base(slot)
        self.view[b + self.SEQ] = -1
        self.view[b + self.INDEX] = -1
        self.view[b + self.STARTED] = 0

    def read(self, slot: int) -> tuple[int, int, int]:
        b = self.base(slot)
        view = self.view
        index = view[b + self.INDEX]
        seq = view[b + self.SEQ]
        started = view[b + self.STARTED]
        return seq, index, started

    def close(self) -> None:
        self.view.release()
        self._map.close()


# ---------------------------------------------------------------------- child side (blocking)


def read_exact(reader: io.FileIO, n: int) -> bytearray | None:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = reader.readinto(view[got:])
        if not k:
            return None
        got += k
    return buf


def read_frame(reader: io.FileIO) -> bytearray | None:
    """The next frame's payload; None at end of file (the parent closed the pipe)."""
    header = read_exact(reader, HEADER.size)
    if header is None:
        return None
    return read_exact(reader, HEADER.unpack(header)[0])


def write_frame(fd: int, payload: bytes) -> None:
    data = memoryview(HEADER.pack(len(payload)) + payload)
    while data:
        written = os.write(fd, data)
        data = data[written:]


def read_reply(fd: int) -> bytes | None:
    """Parent side, blocking: one frame from a child that sends one and exits (cow_fork);
    None if the child's end closed first (it died)."""
    data = bytearray()
    need = HEADER.size
    while len(data) < need:
        block = os.read(fd, max(need - len(data), _READ_SIZE))
        if not block:
            return None
        data += block
        if need == HEADER.size and len(data) >= HEADER.size:
            need = HEADER.size + HEADER.unpack_from(data)[0]
    return bytes(memoryview(data)[HEADER.size : need])


# ---------------------------------------------------------------------- parent side (non-blocking)


class Channel:
    """The parent's end of one child's pipes: queued frames out, whole frames in.

    ``down`` (parent -> child) may be -1 for a one-way (cow_fork) child.
    """

    def __init__(self, up: int, down: int = -1) -> None:
        self.up = up
        self.down = down
        os.set_blocking(up, False)
        if down >= 0:
            os.set_blocking(down, False)
        self._reader = io.FileIO(up, "rb", closefd=False)
        self._out: deque[memoryview] = deque()
        self._header = bytearray(HEADER.size)
        self._body: bytearray | None = None
        self._got = 0
        self.eof = False
        self.broken = False  # the child closed its read end (it died)

    @property
    def want_write(self) -> bool:
        return bool(self._out)

    def send(self, payload: bytes) -> None:
        self._out.append(memoryview(HEADER.pack(len(payload))))
        self._out.append(memoryview(payload))
        self.flush()

    def flush(self) -> None:
        """Write as much of the queued output as the pipe takes now."""
        out = self._out
        while out:
            try:
                written = os.writev(self.down, list(out)[:64])
            except BlockingIOError:
                return
            except (BrokenPipeError, OSError):
                self.broken = True
                out.clear()
                return
            while written:
                head = out[0]
                if written >= len(head):
                    written -= len(head)
                    out.popleft()
                else:
                    out[0] = head[written:]
                    written = 0

    def receive(self) -> list[bytearray]:
        """Every complete frame readable now; sets ``eof`` when the child's end is closed."""
        frames: list[bytearray] = []
        reader = self._reader
        while True:
            if self._body is None:
                view = memoryview(self._header)[self._got :]
            else:
                view = memoryview(self._body)[self._got :]
            try:
                n = reader.readinto(view)
            except BlockingIOError:  # pragma: no cover - FileIO returns None instead
                n = None
            if n is None:
                return frames
            if n == 0:
                self.eof = True
                return frames
            self._got += n
            if self._body is None:
                if self._got == HEADER.size:
                    self._body = bytearray(HEADER.unpack(self._header)[0])
                    self._got = 0
                    if not self._body:  # pragma: no cover - frames are never empty
                        frames.append(self._body)
                        self._body = None
            elif self._got == len(self._body):
                frames.append(self._body)
                self._body = None
                self._got = 0

    def close(self) -> None:
        self._reader.close()


def drop_unpicklable(
    outs: list[Any],
    routed: list[tuple[str, Any]],
    ends: Sequence[tuple[int, int]],
    failures: list[tuple[int, ErrorPayload]],
    message: Callable[[Any, BaseException], str],
    pickle_one: Callable[[Any], bytes] = dumps,
) -> tuple[list[Any], list[tuple[str, Any]], list[tuple[int, ErrorPayload]], int]:
    """Some output of a chunk does not pickle: fail only the items that emitted one.

    ``ends[i]`` is where item ``i``'s outputs end in ``outs`` and ``routed``. Returns
    the outputs kept, the failures (new ones added, in item order) and how many items
    newly failed (an item that emitted something was counted as processed). Shared by
    the fork child and the dask worker, which pickle with different picklers.
    """
    failed = {i for i, _ in failures}
    failures = list(failures)
    keep_outs: list[Any] = []
    keep_routed: list[tuple[str, Any]] = []
    lost = 0
    o0 = r0 = 0
    for i, (o1, r1) in enumerate(ends):
        if i not in failed:
            mine, mine_routed = outs[o0:o1], routed[r0:r1]
            problem = _first_unpicklable(mine + [v for _, v in mine_routed], pickle_one)
            if problem is None:
                keep_outs.extend(mine)
                keep_routed.extend(mine_routed)
            else:
                error = TypeError(message(*problem))
                failures.append((i, encode_error(error, f"TypeError: {error}\n")))
                lost += 1
        o0, r0 = o1, r1
    failures.sort(key=lambda f: f[0])
    return keep_outs, keep_routed, failures, lost


def _first_unpicklable(
    values: list[Any], pickle_one: Callable[[Any], bytes]
) -> tuple[Any, BaseException] | None:
    for value in values:
        try:
            pickle_one(value)
        except Exception as exc:
            return value, exc
    return None
