"""One child's lifetime: spawn it in its own session, relay its output, end it.

The child is started with ``start_new_session=True``, so it leads a new process group
and everything it forks (cow_fork/ipc_fork workers, subprocesses of stages) belongs to
that group unless it deliberately leaves it. Every way of ending early goes through
one path: signal the *group* (SIGTERM, or SIGINT when the caller was interrupted),
wait ``grace`` seconds, then SIGKILL the group. Whenever the leader has exited, any
member still alive is killed too, so nothing outlives the run.

The child is spoken to through :mod:`minigun.runner.protocol`: its spec goes down its
stdin, which the runner then holds open for as long as it lives (end-of-file there is
how the child knows its runner died, see :mod:`minigun.child.guard`), and its
structured records -- log records, progress, the result -- come back on a pipe of their
own, read in the same loop as its stdout and stderr.

Exit is detected without reaping (``waitid(..., WNOWAIT)``, or a pidfd on Linux):
while the leader is an unreaped zombie its pid, which is also the group id, cannot be
reused, so the final ``killpg`` cannot hit an unrelated group.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from minigun.exit_codes import ExitCode
from minigun.runner import protocol
from minigun.runner.cancel import POLL_INTERVAL, Cancellation
from minigun.runner.logs import LineBuffer, LogLine
from minigun.runner.outcome import exit_code_from_returncode
from minigun.runner.spawn import Spawned, spawn

__all__ = ["ChildExit", "run_child"]

#: After the leader exits, how long to keep reading output that its (now killed)
#: descendants may still have buffered. A process that left the group and kept the
#: pipe open cannot hold the runner longer than this.
DRAIN_TIMEOUT = 1.0

_READ_SIZE = 65536


@dataclass(frozen=True)
class ChildExit:
    """How one attempt's child ended.

    ``exit_code`` is already mapped onto the contract: 124 when the runner timed the
    child out, 143/130 when the caller cancelled, else the child's own status (death by
    signal N as 128+N, SIGKILL as 137). ``returncode`` is the raw ``Popen`` value.
    ``ended_by`` is ``"timeout"``, ``"cancel"`` or ``None``; ``killed`` says whether
    SIGKILL was needed because the group did not end within ``grace``. ``result`` is
    the result JSON the child sent on its record channel, if it sent one.
    """

    exit_code: int
    returncode: int
    ended_by: str | None
    killed: bool
    duration: float
    result: dict[str, Any] | None = None


def run_child(
    argv: Sequence[str],
    *,
    spec: Mapping[str, Any],
    env: Mapping[str, str] | None,
    cwd: str | os.PathLike[str] | None,
    timeout: float | None,
    grace: float,
    on_line: Callable[[LogLine], None],
    cancellation: Cancellation,
    on_progress: Callable[[dict[str, Any]], object] | None = None,
    spawned: Spawned | None = None,
) -> ChildExit:
    """Run ``argv`` to the end under the runner's rules and return how it ended.

    ``spec`` is sent to the child as the first line of its control channel, with the
    number of its record pipe added. ``spawned``, when given, is that child already
    started (with this ``argv``, ``env`` and ``cwd``); the timeout counts from here
    either way. Raises ``OSError`` if the child cannot be started. If anything raises
    while the child runs (``on_line`` included), the whole group is SIGKILLed before
    the exception propagates: an exception must never leave a pipeline running.
    """
    started = time.monotonic()
    if spawned is None:
        spawned = spawn(argv, env=env, cwd=cwd)
    proc = spawned.proc
    first_line = protocol.encode({**spec, protocol.RECORDS_FD_KEY: spawned.records_fd})
    child = _Child(proc, spawned.records_r, on_line, on_progress, first_line)
    try:
        ended_by, killed = child.supervise(started, timeout, grace, cancellation)
    except BaseException:
        child.signal_group(signal.SIGKILL)
        raise
    finally:
        child.close()
    returncode = proc.returncode
    if ended_by == "timeout":
        code: int = ExitCode.TIMEOUT
    elif ended_by == "cancel":
        code = cancellation.exit_code
    else:
        code = exit_code_from_returncode(returncode)
        if not isinstance(code, ExitCode):
            # The child only exits with codes of the contract; anything else means
            # something bypassed it (os._exit in user code, a crashed interpreter).
            how = (
                f"was killed by {signal.Signals(-returncode).name}"
                if returncode < 0 and -returncode in signal.valid_signals()
                else f"exited with status {returncode}, outside minigun's exit-code contract"
            )
            child.say(
                f"minigun: the pipeline process {how}: reported as {int(ExitCode.FAILED)} (failed)",
                level=protocol.LEVELS["ERROR"],
            )
            code = ExitCode.FAILED
    return ChildExit(code, returncode, ended_by, killed, time.monotonic() - started, child.result)


class _Child:
    """The supervised child: its pipes, its exit notification and its group."""

    def __init__(
        self,
        proc: subprocess.Popen[bytes],
        records_fd: int,
        on_line: Callable[[LogLine], None],
        on_progress: Callable[[dict[str, Any]], object] | None,
        first_line: bytes,
    ) -> None:
        self.proc = proc
        self.on_line = on_line
        self.on_progress = on_progress
        self.result: dict[str, Any] | None = None
        self.selector = selectors.DefaultSelector()
        self.pidfd: int | None = None
        self.open_pipes = 0
        for pipe, stream in ((proc.stdout, "stdout"), (proc.stderr, "stderr")):
            assert pipe is not None
            self.selector.register(pipe.fileno(), selectors.EVENT_READ, LineBuffer(stream))
            self.open_pipes += 1
        self.records_fd = records_fd
        self.selector.register(records_fd, selectors.EVENT_READ, _RecordBuffer())
        self.open_pipes += 1
        pidfd_open = getattr(os, "pidfd_open", None)
        if pidfd_open is not None:
            try:
                self.pidfd = pidfd_open(proc.pid)
            except OSError:  # kernel without pidfd: fall back to polling waitid
                self.pidfd = None
            else:
                self.selector.register(self.pidfd, selectors.EVENT_READ, None)
        self.control = _Control(proc, first_line)

    def supervise(
        self, started: float, timeout: float | None, grace: float, cancellation: Cancellation
    ) -> tuple[str | None, bool]:
        deadline = started + timeout if timeout is not None else None
        ended_by: str | None = None
        kill_at: float | None = None
        killed = False
        while not self.has_exited():
            now = time.monotonic()
            if ended_by is None:
                if cancellation.requested:
                    ended_by = "cancel"
                    cancellation.consume()
                    self.say(
                        f"minigun: cancelled: stopping process group {self.proc.pid}",
                        level=protocol.LEVELS["WARNING"],
                    )
                    self.signal_group(cancellation.forward_signal)
                    kill_at = now + grace
                elif deadline is not None and now >= deadline:
                    ended_by = "timeout"
                    self.say(
                        f"minigun: timed out after {timeout:g}s:"
                        f" stopping process group {self.proc.pid}",
                        level=protocol.LEVELS["WARNING"],
                    )
                    self.control.send(protocol.stop_message("timeout"))
                    self.signal_group(signal.SIGTERM)
                    kill_at = now + grace
            if kill_at is not None and (now >= kill_at or cancellation.urgent):
                self.say(
                    f"minigun: process group {self.proc.pid} did not stop within the"
                    f" {grace:g}s grace: killing it (SIGKILL)",
                    level=protocol.LEVELS["WARNING"],
                )
                self.signal_group(signal.SIGKILL)
                killed = True
                kill_at = None
            wait = POLL_INTERVAL
            for moment in (deadline if ended_by is None else None, kill_at):
                if moment is not None:
                    wait = min(wait, max(0.0, moment - now))
            self.pump(wait)
        # The leader is gone (but not reaped); its group must not outlive it.
        self.signal_group(signal.SIGKILL)
        if self.pidfd is not None:
            self.selector.unregister(self.pidfd)  # stays readable: would make select spin
        drain_until = time.monotonic() + DRAIN_TIMEOUT
        while self.open_pipes and time.monotonic() < drain_until:
            self.pump(max(0.0, drain_until - time.monotonic()))
        return ended_by, killed

    def pump(self, wait: float) -> None:
        """Wait up to ``wait`` seconds for output or exit; relay complete lines."""
        for key, _ in self.selector.select(wait):
            buffer = key.data
            if buffer is None:  # the pidfd: has_exited() will confirm
                continue
            data = os.read(key.fd, _READ_SIZE)
            if isinstance(buffer, _RecordBuffer):
                for record in buffer.feed(data) if data else buffer.flush():
                    self.dispatch(record)
            else:
                for line in buffer.feed(data) if data else buffer.flush():
                    self.on_line(line)
            if not data:
                self.selector.unregister(key.fd)
                self.open_pipes -= 1

    def dispatch(self, record: dict[str, Any]) -> None:
        """Act on one record from the child's record channel."""
        kind = record["kind"]
        if kind == "log":
            self.on_line(
                LogLine(
                    str(record.get("msg", "")),
                    "log",
                    level=_int_or_none(record.get("level")),
                    created=_float_or_none(record.get("created")),
                    logger=str(record.get("logger") or "minigun"),
                )
            )
        elif kind == "progress":
            snapshot = record.get("snapshot")
            if self.on_progress is not None and isinstance(snapshot, dict):
                try:
                    self.on_progress(snapshot)
                except Exception:  # a display must never end a run
                    pass
        elif kind == "result" and isinstance(record.get("result"), dict):
            self.result = record["result"]

    def has_exited(self) -> bool:
        """True once the leader has exited; it stays unreaped (see module docstring)."""
        if self.proc.returncode is not None:
            return True
        waitid = getattr(os, "waitid", None)
        if waitid is None:  # e.g. macOS builds without waitid: poll() reaps, accept it
            return self.proc.poll() is not None
        try:
            info = waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return self.proc.poll() is not None
        return info is not None and info.si_pid != 0

    def signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass  # the group is already gone (EPERM: only a zombie leader is left, macOS)

    def say(self, message: str, level: int | None = None) -> None:
        self.on_line(LogLine(message, "runner", level=level))

    def close(self) -> None:
        """Reap the leader and release every fd, whatever happened before."""
        for key in list(self.selector.get_map().values()):
            buffer = key.data
            if isinstance(buffer, LineBuffer):
                for line in buffer.flush():
                    try:
                        self.on_line(line)
                    except Exception:
                        pass  # already closing after an error; the tail is best effort
        self.selector.close()
        os.close(self.records_fd)
        self.control.close()
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        if self.proc.returncode is None:
            self.proc.wait()


class _Control:
    """The runner's end of the child's control channel (the child's stdin).

    The spec is written by a helper thread, so that a spec of many megabytes cannot
    block the supervision loop while the child is still starting. The write end then
    stays open until the child has exited: the child treats end-of-file as "my runner
    is gone". Control messages are written only once the spec is through (they are
    a few bytes, and the child's guard thread drains the pipe, so they never block).
    """

    def __init__(self, proc: subprocess.Popen[bytes], first_line: bytes) -> None:
        assert proc.stdin is not None
        self.fd = proc.stdin.fileno()
        self.stdin = proc.stdin
        self.sent = threading.Event()
        self.failed = False
        self.thread = threading.Thread(
            target=self._write, args=(first_line,), name="minigun-spec-writer", daemon=True
        )
        self.thread.start()

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.fd, view) :]
        except OSError:  # the child is gone before reading it all: its exit says why
            self.failed = True
        finally:
            self.sent.set()

    def send(self, message: dict[str, Any]) -> None:
        if not self.sent.is_set() or self.failed:
            return
        try:
            os.write(self.fd, protocol.encode(message))
        except OSError:
            pass

    def close(self) -> None:
        # Only called once the leader has exited and its group was killed, so a
        # writer still blocked on a full pipe gets EPIPE promptly.
        self.thread.join(timeout=DRAIN_TIMEOUT)
        try:
            self.stdin.close()
        except OSError:
            pass


class _RecordBuffer:
    """Accumulates the record channel's bytes and hands back complete records.

    Records have no size limit (a result JSON can be large); a line that is not a
    well-formed record is dropped rather than guessed at.
    """

    def __init__(self) -> None:
        self._pending = bytearray()

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        self._pending += data
        records: list[dict[str, Any]] = []
        start = 0
        while True:
            newline = self._pending.find(b"\n", start)
            if newline < 0:
                break
            record = protocol.decode_record(bytes(self._pending[start:newline]))
            if record is not None:
                records.append(record)
            start = newline + 1
        del self._pending[:start]
        return records

    def flush(self) -> list[dict[str, Any]]:
        rest, self._pending = bytes(self._pending), bytearray()
        record = protocol.decode_record(rest) if rest.strip() else None
        return [record] if record is not None else []


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float_or_none(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
