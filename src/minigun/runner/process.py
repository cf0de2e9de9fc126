"""One child's lifetime: spawn it in its own session, relay its output, end it.

The child is started with ``start_new_session=True``, so it leads a new process group
and everything it forks (cow_fork/ipc_fork workers, subprocesses of stages) belongs to
that group unless it deliberately leaves it. Every way of ending early goes through
one path: signal the *group* (SIGTERM, or SIGINT when the caller was interrupted),
wait ``grace`` seconds, then SIGKILL the group. Whenever the leader has exited, any
member still alive is killed too, so nothing outlives the run.

Exit is detected without reaping (``waitid(..., WNOWAIT)``, or a pidfd on Linux):
while the leader is an unreaped zombie its pid, which is also the group id, cannot be
reused, so the final ``killpg`` cannot hit an unrelated group.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from minigun.exit_codes import ExitCode
from minigun.runner.cancel import POLL_INTERVAL, Cancellation
from minigun.runner.logs import LineBuffer, LogLine
from minigun.runner.outcome import exit_code_from_returncode

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
    SIGKILL was needed because the group did not end within ``grace``.
    """

    exit_code: int
    returncode: int
    ended_by: str | None
    killed: bool
    duration: float


def run_child(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None,
    cwd: str | os.PathLike[str] | None,
    timeout: float | None,
    grace: float,
    on_line: Callable[[LogLine], None],
    cancellation: Cancellation,
) -> ChildExit:
    """Run ``argv`` to the end under the runner's rules and return how it ended.

    Raises ``OSError`` if the child cannot be started. If anything raises while the
    child runs (``on_line`` included), the whole group is SIGKILLed before the
    exception propagates: an exception must never leave a pipeline running.
    """
    started = time.monotonic()
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        start_new_session=True,
        close_fds=True,
    )
    child = _Child(proc, on_line)
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
    return ChildExit(code, returncode, ended_by, killed, time.monotonic() - started)


class _Child:
    """The supervised child: its pipes, its exit notification and its group."""

    def __init__(self, proc: subprocess.Popen[bytes], on_line: Callable[[LogLine], None]) -> None:
        self.proc = proc
        self.on_line = on_line
        self.selector = selectors.DefaultSelector()
        self.pidfd: int | None = None
        self.open_pipes = 0
        for pipe, stream in ((proc.stdout, "stdout"), (proc.stderr, "stderr")):
            assert pipe is not None
            self.selector.register(pipe.fileno(), selectors.EVENT_READ, LineBuffer(stream))
            self.open_pipes += 1
        pidfd_open = getattr(os, "pidfd_open", None)
        if pidfd_open is not None:
            try:
                self.pidfd = pidfd_open(proc.pid)
            except OSError:  # kernel without pidfd: fall back to polling waitid
                self.pidfd = None
            else:
                self.selector.register(self.pidfd, selectors.EVENT_READ, None)

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
                    self.say(f"minigun: cancelled: stopping process group {self.proc.pid}")
                    self.signal_group(cancellation.forward_signal)
                    kill_at = now + grace
                elif deadline is not None and now >= deadline:
                    ended_by = "timeout"
                    self.say(
                        f"minigun: timed out after {timeout:g}s:"
                        f" stopping process group {self.proc.pid}"
                    )
                    self.signal_group(signal.SIGTERM)
                    kill_at = now + grace
            if kill_at is not None and (now >= kill_at or cancellation.urgent):
                self.say(f"minigun: killing process group {self.proc.pid} (SIGKILL)")
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
            if data:
                for line in buffer.feed(data):
                    self.on_line(line)
            else:
                self.selector.unregister(key.fd)
                self.open_pipes -= 1
                for line in buffer.flush():
                    self.on_line(line)

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

    def say(self, message: str) -> None:
        self.on_line(LogLine(message, "runner"))

    def close(self) -> None:
        """Reap the leader and release every fd, whatever happened before."""
        for key in list(self.selector.get_map().values()):
            buffer = key.data
            if buffer is not None:
                for line in buffer.flush():
                    try:
                        self.on_line(line)
                    except Exception:
                        pass  # already closing after an error; the tail is best effort
        self.selector.close()
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
        if self.proc.returncode is None:
            self.proc.wait()
