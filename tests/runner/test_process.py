"""``run_child``: one child's lifetime, tested with tiny non-minigun children."""

from __future__ import annotations

import signal
import sys
import time

import pytest

from minigun.runner.cancel import Cancellation
from minigun.runner.logs import LogLine
from minigun.runner.process import run_child
from support import alive, wait_until

PY = sys.executable


def run(
    code: str,
    *,
    timeout: float | None = None,
    grace: float = 1.0,
    cancellation: Cancellation | None = None,
) -> tuple[object, list[LogLine]]:
    lines: list[LogLine] = []
    result = run_child(
        [PY, "-c", code],
        spec={},
        env=None,
        cwd=None,
        timeout=timeout,
        grace=grace,
        on_line=lines.append,
        cancellation=cancellation or Cancellation(),
    )
    return result, lines


@pytest.mark.parametrize("code", [0, 1, 2, 3, 75, 99])
def test_exit_status_of_the_contract_passes_through(code: int) -> None:
    result, _ = run(f"import sys; sys.exit({code})")
    assert result.exit_code == code  # type: ignore[attr-defined]
    assert result.ended_by is None  # type: ignore[attr-defined]


def test_exit_status_outside_the_contract_is_failed_with_a_line_that_says_so() -> None:
    result, lines = run("import sys; sys.exit(42)")
    assert result.exit_code == 1  # type: ignore[attr-defined]
    assert result.returncode == 42  # type: ignore[attr-defined]
    said = [line for line in lines if line.stream == "runner"]
    assert any("exited with status 42" in line and line.level == 40 for line in said)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGKILL, 137), (signal.SIGTERM, 143)])
def test_death_by_signal_maps_to_128_plus_n(sig: int, code: int) -> None:
    result, _ = run(f"import os; os.kill(os.getpid(), {int(sig)})")
    assert result.exit_code == code  # type: ignore[attr-defined]


def test_death_by_another_signal_is_failed_and_named() -> None:
    result, lines = run(f"import os; os.kill(os.getpid(), {int(signal.SIGSEGV)})")
    assert result.exit_code == 1  # type: ignore[attr-defined]
    assert any("killed by SIGSEGV" in line for line in lines if line.stream == "runner")


def test_stdout_and_stderr_lines_are_split_and_labelled() -> None:
    _, lines = run(
        "import sys; print('a'); print('b', file=sys.stderr); sys.stdout.write('no newline')"
    )
    assert [(str(line), line.stream) for line in lines if line.stream == "stdout"] == [
        ("a", "stdout"),
        ("no newline", "stdout"),
    ]
    assert [str(line) for line in lines if line.stream == "stderr"] == ["b"]


def test_undecodable_output_is_replaced_not_fatal() -> None:
    _, lines = run("import sys; sys.stdout.buffer.write(b'caf\\xff\\n')")
    assert lines[0] == "caf\ufffd"


def test_child_ignoring_sigterm_is_killed_after_grace() -> None:
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
        "print('ready', flush=True); time.sleep(60)"
    )
    started = time.monotonic()
    # The timeout leaves a loaded machine ample time to start Python and ignore SIGTERM.
    result, lines = run(code, timeout=2, grace=0.7)
    elapsed = time.monotonic() - started
    assert result.exit_code == 124  # type: ignore[attr-defined]
    assert result.killed  # type: ignore[attr-defined]
    assert result.returncode == -signal.SIGKILL  # type: ignore[attr-defined]
    assert elapsed >= 2 + 0.7 - 0.1  # not before the grace period ran out
    assert any("SIGKILL" in line for line in lines if line.stream == "runner")


def test_child_that_drains_on_sigterm_is_not_sigkilled() -> None:
    code = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
        "time.sleep(60)\n"
    )
    result, _ = run(code, timeout=0.3, grace=120)
    assert result.exit_code == 124  # type: ignore[attr-defined]
    assert not result.killed  # type: ignore[attr-defined]
    assert result.duration < 60  # type: ignore[attr-defined]  # long before the grace ran out


def test_leftover_group_members_are_killed_when_the_leader_exits() -> None:
    # The leader starts a background sleeper (which keeps stdout open) and exits 0.
    code = "import subprocess, sys;p = subprocess.Popen(['sleep', '300']); print(p.pid, flush=True)"
    result, lines = run(code)
    assert result.exit_code == 0  # type: ignore[attr-defined]
    sleeper = int(next(line for line in lines if line.stream == "stdout"))
    wait_until(lambda: not alive(sleeper), what="the orphaned sleeper to die")


def test_second_signal_skips_the_grace_period() -> None:
    cancellation = Cancellation()
    cancellation.signum, cancellation.signals = signal.SIGTERM, 2
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    started = time.monotonic()
    result, _ = run(code, grace=120, cancellation=cancellation)
    assert result.exit_code == 143  # type: ignore[attr-defined]
    assert result.killed  # type: ignore[attr-defined]
    assert time.monotonic() - started < 60  # long before the grace ran out


def test_exception_in_on_line_kills_the_child_and_propagates() -> None:
    def on_line(line: LogLine) -> None:
        raise KeyError("logger broke")

    code = "import os, time; print(os.getpid(), flush=True); time.sleep(60)"
    seen: list[int] = []

    def capture(line: LogLine) -> None:
        seen.append(int(line))
        on_line(line)

    with pytest.raises(KeyError):
        run_child(
            [PY, "-c", code],
            spec={},
            env=None,
            cwd=None,
            timeout=None,
            grace=30,
            on_line=capture,
            cancellation=Cancellation(),
        )
    assert seen and not alive(seen[0])


def test_output_pipe_held_by_an_escaped_process_does_not_hang_or_spin() -> None:
    # The leader starts a process in a *new session* (out of the runner's reach) that
    # inherits stdout, then exits. The runner must give up on the pipe after
    # DRAIN_TIMEOUT without busy-waiting.
    code = (
        "import subprocess;"
        "p = subprocess.Popen(['sleep', '300'], start_new_session=True); print(p.pid, flush=True)"
    )
    import os

    cpu_before = os.times()
    started = time.monotonic()
    result, lines = run(code)
    elapsed = time.monotonic() - started
    cpu = (os.times().user - cpu_before.user) + (os.times().system - cpu_before.system)
    escaped = int(next(line for line in lines if line.stream == "stdout"))
    try:
        assert result.exit_code == 0  # type: ignore[attr-defined]
        assert elapsed < 60  # gave up on the pipe long before the escaped process ended
        # Busy-waiting through DRAIN_TIMEOUT would burn about that much CPU.
        assert cpu < 0.5, f"runner burned {cpu:.2f}s of CPU while draining"
    finally:
        os.kill(escaped, signal.SIGKILL)
