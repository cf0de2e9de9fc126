"""Forking a multi-threaded parent without ever deadlocking the child.

The fork executors fork from the running pipeline process, where producer threads,
other stages' thread workers, the engine's controller and the user's own threads may
hold locks at the instant of ``fork()``. A child inherits every lock in the state it
had, but none of the threads that would release it. The guarantee here is that a
child **never waits on a lock another thread could have held at fork time**, by
construction rather than by luck:

* The child's main loop (:mod:`._fork_child`) touches none of the parent's
  synchronised objects: no inbox, no ``queue``, no run/stage/stats lock, no
  ``threading`` primitive, no logging call of its own. It talks to the parent only
  through raw ``os.read``/``os.write`` on pipe file descriptors created for it,
  imports nothing after the fork (every module it needs is imported by the parent
  beforehand, so no import lock is taken) and ends with ``os._exit`` (no atexit
  handlers, no finalisers, no flushing of buffers inherited from the parent).
* User code does run in the child, and it may log or print. CPython already resets
  the interpreter's own locks (GIL, import lock, ``threading``'s bookkeeping, the
  ``logging`` module lock and every handler lock) in ``os.fork()``. What it does not
  reset is the lock inside every buffered file object: a thread of the parent that
  was in the middle of ``print()`` leaves ``sys.stdout``'s buffer locked forever in
  the child (``tests/fork/test_stress.py`` hangs without what follows). So before
  any user code runs, :func:`enter_child` swaps ``sys.stdout``/``sys.stderr`` (and
  ``__stdout__``/``__stderr__``) and the stream of every ``logging.StreamHandler``
  / ``FileHandler`` that writes to a file descriptor for a *spare*: a file object on
  the same descriptor that the parent built beforehand and that no thread has ever
  written to, so its lock is certainly free. The old objects stay referenced, so
  they are never finalised in the child (which would flush the parent's half-written
  buffer a second time, or close the descriptor).
* Signals: the parent's Python handlers (a SIGTERM handler that calls
  ``request_stop`` takes the run lock) must not run in a child, so SIGTERM and
  SIGINT are blocked across the fork and ignored in the child before they are
  unblocked; the parent decides what an interrupted run does (its producers stop
  and the items already queued or in flight drain), and the runner's SIGKILL still
  reaches the whole group.
* Pipes: every fork happens under :data:`_FORK_LOCK` together with the creation
  of its pipes and the parent closing the child's ends, and each child closes the
  parent-side ends of all its siblings (:data:`_PARENT_FDS`). So a pipe end is only
  ever held by the two processes it connects, and end-of-file reliably means "that
  process is gone" (a crash is detected, never waited on).

What remains outside the guarantee is the user's own state: a lock the stage code
itself shares with another parent thread, a stream object the user keeps a private
reference to (other than ``sys.std*`` and logging handlers), or a module another
thread was importing at the instant of the fork.

Alternatives that were rejected: a fork server started before any thread exists
cannot give ``cow_fork`` the parent's memory *as it is when the item is processed*
(items would have to be pickled to the server, which is what cow_fork exists to
avoid), and the ``spawn``/``forkserver`` start methods lose the shared
copy-on-write heap altogether.

Lifetime: children are registered here from birth to reaping. On Linux each child
asks the kernel for SIGKILL when its parent thread dies (``PR_SET_PDEATHSIG``), and
an ``atexit`` hook kills and reaps whatever is still registered, so no child
outlives the process even when the run itself is torn down abnormally.
"""

from __future__ import annotations

import _signal
import atexit
import contextlib
import ctypes
import gc
import io
import os
import signal
import sys
import threading
import traceback
import warnings
import weakref
from collections.abc import Callable
from typing import Any

__all__ = [
    "describe_exit",
    "enter_child",
    "freeze_gc",
    "kill_and_reap",
    "once_per_run",
    "reap",
    "reap_with_cpu",
    "release_fds",
    "spawn",
    "unfreeze_gc",
]

#: Python 3.12+ warns on every fork from a multi-threaded process (a DeprecationWarning).
_FORK_WARNING = r".*is multi-threaded, use of fork\(\) may lead to deadlocks"

_FORK_LOCK = threading.Lock()
#: Parent-side pipe ends of live children: every new child closes them.
_PARENT_FDS: set[int] = set()
#: pid -> stage name, from fork to reaping.
_CHILDREN: dict[int, str] = {}

#: Left to the parent: a child ignores them (blocked from fork until it does).
_DEFERRED = {signal.SIGTERM, signal.SIGINT}

#: ``signal.pthread_sigmask`` without its conversion of every number to an enum member:
#: on every fork, in parent and child, where each page touched is a copy-on-write fault.
#: (Only called where fork exists; Windows has neither.)
_sigmask: Any = getattr(_signal, "pthread_sigmask", None)

_PR_SET_PDEATHSIG = 1
_prctl: Any = None
if sys.platform.startswith("linux"):
    try:
        _prctl = ctypes.CDLL(None, use_errno=True).prctl
        _prctl.argtypes = [
            ctypes.c_int,
            ctypes.c_ulong,
            ctypes.c_ulong,
            ctypes.c_ulong,
            ctypes.c_ulong,
        ]
    except (OSError, AttributeError):  # pragma: no cover - exotic libc
        _prctl = None


# ---------------------------------------------------------------------- forking


def _fork() -> int:
    """``os.fork()``, without Python 3.12+'s warning that forking a multi-threaded
    process may deadlock the child.

    The engine forks from a threaded parent by design and this module is the answer
    to that warning, so it is not repeated once per item. Only that message is
    ignored, and only around this call: a library must not change its host's
    warnings filters at import (rejected: a module-level ``filterwarnings``, which
    also hid the warning from the host's own forks). The filter list is swapped for
    the duration of the call, which :data:`_FORK_LOCK` (held by the caller) keeps
    short.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_FORK_WARNING, category=DeprecationWarning)
        return os.fork()


def spawn(
    stage: str, child_main: Callable[[int, int], None], *, duplex: bool
) -> tuple[int, int, int]:
    """Fork a child running ``child_main(down_r, up_w)`` and return ``(pid, down_w, up_r)``.

    ``up`` carries results to the parent; ``down`` (only with ``duplex``, else -1)
    carries work to the child. ``child_main`` never returns into the caller's stack:
    the child always ends in ``os._exit`` (0 on a normal return, 70 if it raised).
    """
    with _FORK_LOCK:
        up_r, up_w = os.pipe()
        down_r, down_w = os.pipe() if duplex else (-1, -1)
        parent_pid = os.getpid()
        swaps = _prepare_spares()
        # Until the child has set its own dispositions, SIGTERM/SIGINT must wait.
        mask = _sigmask(signal.SIG_BLOCK, _DEFERRED)
        try:
            pid = _fork()
        except BaseException:
            _sigmask(signal.SIG_SETMASK, mask)
            for fd in (up_r, up_w, down_r, down_w):
                if fd >= 0:
                    os.close(fd)
            raise
        if pid == 0:  # the child
            code = 70
            try:
                enter_child(parent_pid, {up_r, down_w}, swaps, mask)
                child_main(down_r, up_w)
                code = 0
            except BaseException:  # a minigun bug, or the parent went away mid-write
                with contextlib.suppress(BaseException):
                    os.write(2, f"minigun {stage!r} child:\n{traceback.format_exc()}".encode())
            finally:
                os._exit(code)
        _sigmask(signal.SIG_SETMASK, mask)
        os.close(up_w)
        if duplex:
            os.close(down_r)
            _PARENT_FDS.add(down_w)
        _PARENT_FDS.add(up_r)
        _CHILDREN[pid] = stage
    return pid, down_w, up_r


def release_fds(*fds: int) -> None:
    """Close parent-side pipe ends (unregistered first, so no later child closes a reused fd)."""
    with _FORK_LOCK:
        for fd in fds:
            if fd >= 0:
                _PARENT_FDS.discard(fd)
                with contextlib.suppress(OSError):
                    os.close(fd)


def reap(pid: int, block: bool = True) -> int | None:
    """Wait for ``pid`` and return its raw wait status (None if still running).

    If something else reaped it first (an ``os.wait()`` elsewhere, SIGCHLD ignored),
    the status is unknown: -1.
    """
    reaped = reap_with_cpu(pid, block)
    return None if reaped is None else reaped[0]


def reap_with_cpu(pid: int, block: bool = True) -> tuple[int, float] | None:
    """:func:`reap`, with the CPU seconds (user + system) the child used in all.

    That includes its share of ``fork()``, its copy-on-write faults and its exit,
    which is how ``cow_fork`` learns what one child costs. 0.0 when unknown.
    """
    try:
        got, status, usage = os.wait4(pid, 0 if block else os.WNOHANG)
    except ChildProcessError:
        _CHILDREN.pop(pid, None)
        return -1, 0.0
    except InterruptedError:  # pragma: no cover - PEP 475 retries this
        return None
    if got == 0:
        return None
    _CHILDREN.pop(pid, None)
    return status, usage.ru_utime + usage.ru_stime


def kill_and_reap(pid: int) -> int | None:
    """SIGKILL ``pid`` and reap it; returns its wait status."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return reap(pid)


def describe_exit(status: int | None) -> str:
    """``killed by signal SIGSEGV (11)`` / ``exited with status 3`` for a wait status."""
    if status is None or status < 0:
        return "ended (exit status unknown: it was reaped elsewhere)"
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return f"was killed by signal {name} ({sig})"
    if os.WIFEXITED(status):
        return f"exited with status {os.WEXITSTATUS(status)}"
    return f"ended with wait status {status}"  # pragma: no cover


@atexit.register
def _kill_leftovers() -> None:
    """Last line of defence: nothing forked here survives the interpreter."""
    for pid in list(_CHILDREN):
        kill_and_reap(pid)


# ---------------------------------------------------------------------- the child side


def enter_child(
    parent_pid: int,
    own_fds: set[int],
    swaps: list[tuple[Any, str, Any]],
    mask: set[Any],
) -> None:
    """Make a freshly forked child independent of every lock the parent's threads held.

    Runs first thing after ``fork()`` in the child, before any user code (see the
    module docstring for why each step is needed). ``swaps`` come from
    :func:`_prepare_spares`, run by the parent just before the fork.
    """
    global _FORK_LOCK, _PARENT_FDS, _CHILDREN
    for fd in _PARENT_FDS | own_fds:
        with contextlib.suppress(OSError):
            os.close(fd)
    # This process's own children (a stage that forks) start a fresh registry.
    _FORK_LOCK = threading.Lock()
    _PARENT_FDS = set()
    _CHILDREN = {}
    for sig in _DEFERRED:
        with contextlib.suppress(OSError, ValueError):
            _signal.signal(sig, _signal.SIG_IGN)
    _sigmask(signal.SIG_SETMASK, mask)  # a pending one is now discarded
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before the request took effect
            os._exit(70)
    # Plain attribute assignment: handler.setStream() would take the handler lock and
    # flush the old, possibly locked, stream. The old objects stay referenced from
    # _SPARES, so they are never finalised (flushed twice, or their fd closed) here.
    for owner, attr, spare in swaps:
        with contextlib.suppress(Exception):
            setattr(owner, attr, spare)


def _fresh_stream(stream: Any) -> Any:
    """A new, never used file object on ``stream``'s descriptor (None: in-memory stream)."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None  # StringIO, pytest's sys capture: no OS-level lock inside
    buffered = io.BufferedWriter(io.FileIO(fd, "w", closefd=False))
    if not hasattr(stream, "encoding"):
        return buffered
    return io.TextIOWrapper(
        buffered,
        encoding=stream.encoding,
        errors=getattr(stream, "errors", None),
        line_buffering=getattr(stream, "line_buffering", False),
        write_through=getattr(stream, "write_through", False),
    )


#: id(stream) -> (stream, its spare). Spares are built in the parent, where no thread
#: ever writes to them, so their locks are free at every fork and a child only swaps
#: them in. Keeping ``stream`` referenced keeps its id from being reused.
_SPARES: dict[int, tuple[Any, Any]] = {}


def _streams() -> list[tuple[Any, str, Any]]:
    """(owner, attribute, stream) of every stream a child must not inherit as it is:
    the stdio objects and the streams of ``logging`` handlers."""
    found: list[tuple[Any, str, Any]] = []
    for name in ("stdout", "stderr", "__stdout__", "__stderr__"):
        stream = getattr(sys, name, None)
        if stream is not None:
            found.append((sys, name, stream))
    logging = sys.modules.get("logging")
    if logging is not None:
        for ref in list(getattr(logging, "_handlerList", ())):
            handler = ref()
            if not isinstance(handler, logging.StreamHandler):
                continue
            if isinstance(getattr(type(handler), "stream", None), property):
                continue  # logging.lastResort: follows sys.stderr, swapped above
            stream = getattr(handler, "stream", None)
            if stream is not None:
                found.append((handler, "stream", stream))
    return found


def _prepare_spares() -> list[tuple[Any, str, Any]]:
    """In the parent, under the fork lock: a spare for every current stream (each built
    once); streams no longer in use are forgotten."""
    global _SPARES
    swaps = []
    current: dict[int, tuple[Any, Any]] = {}
    for owner, attr, stream in _streams():
        entry = _SPARES.get(id(stream))
        if entry is None or entry[0] is not stream:
            entry = (stream, _fresh_stream(stream))
        current[id(stream)] = entry
        if entry[1] is not None:
            swaps.append((owner, attr, entry[1]))
    _SPARES = current
    return swaps


def flush_streams() -> None:
    """Flush the child's (renewed) stdio before reporting; output is never lost."""
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.flush()


# ---------------------------------------------------------------------- per run


_gc_frozen = 0
_gc_lock = threading.Lock()


def freeze_gc() -> None:
    """``gc.freeze()`` for the duration of a fork stage (counted across stages and runs).

    Everything alive when a fork stage starts (the data ``before_run`` loaded) moves to
    the permanent generation, so neither the parent's nor a child's collector writes
    to those objects' headers and their pages stay shared. Objects created later are
    not frozen on every fork, because frozen cyclic garbage is only collected again
    after :func:`unfreeze_gc`.
    """
    global _gc_frozen
    with _gc_lock:
        _gc_frozen += 1
        gc.freeze()


def unfreeze_gc() -> None:
    global _gc_frozen
    with _gc_lock:
        _gc_frozen -= 1
        if _gc_frozen == 0:
            gc.unfreeze()


_seen: dict[str, weakref.WeakSet[Any]] = {}


def once_per_run(run: Any, what: str) -> bool:
    """True the first time ``what`` is asked about ``run`` (before_fork hook, fallback warning)."""
    with _gc_lock:
        runs = _seen.setdefault(what, weakref.WeakSet())
        if run in runs:
            return False
        runs.add(run)
        return True
