"""What every e2e scenario shares: servers, waiting, watching a process group, measuring.

The contract under test (DESIGN 4 and 6, issue 9): after a platform's stop action, no
process of the pipeline's process group remains after ``min(grace, kill window) + 5``
seconds. :func:`watch_group_end` measures that, and :data:`MEASUREMENTS` collects the
figures for the table printed at the end of the session.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import psutil

HERE = Path(__file__).parent
PIPELINES = HERE / "pipelines.py"

#: Seconds the contract allows beyond ``min(grace, kill window)`` for the group to go.
SLACK = 5.0
#: After the contract's bound has passed, keep watching this long to measure how late
#: the group really is (then kill it, so one failure does not load the next test).
OVERRUN = 20.0

T = TypeVar("T")


def target(name: str) -> str:
    return f"{PIPELINES}:{name}"


def free_port() -> int:
    """A TCP port on loopback that is free now (bound and released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(probe: Callable[[], T | None], timeout: float, what: str, interval: float = 0.5) -> T:
    """Call ``probe`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = probe()
            if value:
                return value
        except Exception as exc:  # a server not up yet, a file half written...
            last_error = exc
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"timed out after {timeout:.0f}s waiting for {what}"
                + (f" (last error: {last_error!r})" if last_error else "")
            )
        time.sleep(interval)


# --- HTTP ---------------------------------------------------------------------------


def http_json(
    method: str,
    url: str,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Accept", "application/json")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    for key, value in (headers or {}).items():
        request.add_header(key, value)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:500]
        raise AssertionError(f"{method} {url} -> HTTP {exc.code}: {detail}") from exc
    return json.loads(raw) if raw.strip() else None


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return bool(response.status < 500)
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except OSError:
        return False


# --- servers --------------------------------------------------------------------------


def kill_tree(root: int, *, term_wait: float = 5.0) -> None:
    """SIGTERM ``root`` and every descendant, then SIGKILL what is left."""
    try:
        parent = psutil.Process(root)
        procs = [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, alive = psutil.wait_procs(procs, timeout=term_wait)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(alive, timeout=5)


class Server:
    """A platform process on loopback, in a session of its own, logging to a file.

    :meth:`stop` ends its whole process tree (and its session), whatever happened.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: Path,
        log: Path,
    ) -> None:
        self.name = name
        self.log = log
        self._log_file = log.open("ab")
        self.process = subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def check_alive(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(
                f"{self.name} exited with {self.process.returncode}:\n{self.tail()}"
            )
        return True

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        try:
            kill_tree(self.process.pid)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)  # strays of its session
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=10)
        finally:
            self._log_file.close()


class LineLog:
    """A subprocess's output, each line stamped with the time it arrived."""

    def __init__(self, stream: Any, path: Path) -> None:
        self.lines: list[tuple[float, str]] = []
        self._path = path
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        with self._path.open("a") as copy:
            for raw in iter(stream.readline, b""):
                line = raw.decode(errors="replace").rstrip("\n")
                self.lines.append((time.time(), line))
                copy.write(f"{time.time():.3f} {line}\n")
                copy.flush()


# --- the pipeline's process group ------------------------------------------------------


def read_pgid(pgid_file: Path, timeout: float = 180.0) -> int:
    return wait_for(
        lambda: int(pgid_file.read_text()) if pgid_file.exists() else None,
        timeout,
        f"the pipeline to record its process group in {pgid_file}",
    )


def group_members(pgid: int) -> list[psutil.Process]:
    """Live (non-zombie) processes of process group ``pgid``."""
    members = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                members.append(proc)
        except (ProcessLookupError, psutil.Error, OSError):
            continue
    return members


def wait_group_busy(pgid: int, at_least: int = 3, timeout: float = 120.0) -> list[psutil.Process]:
    """Wait until the group has forked: the pipeline process plus fork children."""
    return wait_for(
        lambda: m if len(m := group_members(pgid)) >= at_least else None,
        timeout,
        f"process group {pgid} to have {at_least} processes (pipeline + forks)",
    )


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


@dataclass
class Measurement:
    scenario: str
    grace: float
    window: float | None
    bound: float
    gone_after: float | None
    """Seconds from the platform's stop action to the group gone; None: still alive."""
    watched: float
    state: str = "?"

    @property
    def ok(self) -> bool:
        return self.gone_after is not None and self.gone_after <= self.bound


MEASUREMENTS: list[Measurement] = []


def contract_bound(grace: float, window: float | None) -> float:
    return (grace if window is None else min(grace, window)) + SLACK


def watch_group_end(
    scenario: str,
    pgid: int,
    action_time: float,
    *,
    grace: float,
    window: float | None,
) -> Measurement:
    """Poll the group from the platform's stop action (``time.time()`` value) on.

    Returns (and records) how long after the action the last member was gone, or
    ``gone_after=None`` if members were still alive ``OVERRUN`` seconds past the
    contract's bound; those are then SIGKILLed so the session goes on cleanly.
    """
    bound = contract_bound(grace, window)
    give_up = action_time + bound + OVERRUN
    gone_after: float | None = None
    while True:
        now = time.time()
        if not group_members(pgid):
            gone_after = now - action_time  # negative: gone before the action
            break
        if now >= give_up:
            kill_group(pgid)
            break
        time.sleep(0.1)
    measurement = Measurement(
        scenario, grace, window, bound, gone_after, watched=time.time() - action_time
    )
    MEASUREMENTS.append(measurement)
    return measurement


def assert_group_gone_in_time(m: Measurement) -> None:
    if m.gone_after is None:
        raise AssertionError(
            f"{m.scenario}: the pipeline's process group was still alive {m.watched:.0f}s "
            f"after the platform's stop action (contract: gone within {m.bound:.0f}s)"
        )
    assert m.gone_after <= m.bound, (
        f"{m.scenario}: the pipeline's process group was gone only {m.gone_after:.1f}s after "
        f"the platform's stop action (contract: within {m.bound:.0f}s)"
    )


@contextlib.contextmanager
def group_cleanup(pgid_file: Path) -> Iterator[None]:
    """Whatever the test's outcome, leave no process of the pipeline's group behind."""
    try:
        yield
    finally:
        if pgid_file.exists():
            with contextlib.suppress(ValueError):
                kill_group(int(pgid_file.read_text()))


def lines_between(
    stamped: Sequence[tuple[float, str]], start: float, end: float, needle: str = "e2e:"
) -> list[tuple[float, str]]:
    """Pipeline lines (containing ``needle``) stamped within [start, end]."""
    return [(t, line) for t, line in stamped if needle in line and start <= t <= end]


def assert_drain_lines_streamed(
    stamped: Sequence[tuple[float, str]], start: float, end: float, where: str
) -> None:
    """Lines the pipeline printed while it drained reached the platform's log as they
    came, with their own times: the drain's lines (a tick a second from each busy fork
    child) are stamped inside it and spread over it, not delivered in one burst."""
    during = lines_between(stamped, start, end)
    span = (max(t for t, _ in during) - min(t for t, _ in during)) if during else 0.0
    needed = min(1.0, 0.3 * (end - start))
    assert len(during) >= 2 and span >= needed, (
        f"{where}: expected the pipeline's lines of the {end - start:.1f}s drain in the "
        f"platform's log as they came (spread over >= {needed:.1f}s); got {len(during)} "
        f"line(s) spread over {span:.1f}s: {during[:4]!r}"
    )


def format_table(measurements: Sequence[Measurement]) -> list[str]:
    rows = [
        "scenario | grace | kill window | bound | platform action -> group gone | state",
        "---|---|---|---|---|---",
    ]
    for m in measurements:
        window = "none" if m.window is None else f"{m.window:g}s"
        if m.gone_after is None:
            gone = f"still alive at {m.watched:.0f}s"
        else:
            gone = f"{m.gone_after:.1f}s"
        verdict = "" if m.ok else "  (over the bound)"
        rows.append(
            f"{m.scenario} | {m.grace:g}s | {window} | {m.bound:g}s | {gone}{verdict} | {m.state}"
        )
    return rows
