"""A pipeline never outlives its runner: kill -9 the runner at any moment, the group dies.

The runner here is a real separate process calling ``run_isolated`` (as an Airflow or
Prefect task process would); the tests SIGKILL it -- a signal nobody can forward --
while its child is importing the target, inside ``__init__``, or draining a full
queue with nobody reading its stderr, and check that the child's whole session is gone
within 2 seconds, whatever ``grace`` says: grace is what a living runner gives.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from minigun.runner import ExitCode, RunSpec, run_isolated
from support import child_env, full_env, read_ready, session_members, target, wait_until

#: The issue's bound: a dead runner's group is gone within this many seconds.
GONE_WITHIN = 2.0

_RUNNER = textwrap.dedent(
    """
    import json, sys
    from minigun.runner import RunSpec, run_isolated
    spec = RunSpec(**json.loads(sys.argv[1]))
    run_isolated(spec, on_log=lambda line: None)
    """
)


def _start_runner(tmp_path: Path, **spec: object) -> subprocess.Popen[bytes]:
    """A runner process whose temporary directory is ``tmp_path/tmp`` (empty)."""
    spec.setdefault("env", child_env())
    spec.setdefault("grace", 30)
    (tmp_path / "tmp").mkdir()
    return subprocess.Popen(
        [sys.executable, "-c", _RUNNER, json.dumps(spec)],
        cwd=tmp_path,
        env=full_env(TMPDIR=str(tmp_path / "tmp")),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _kill_runner_and_time_the_group(runner: subprocess.Popen[bytes], sid: int) -> float:
    assert session_members(sid), "the child's session should be alive before the kill"
    killed = time.monotonic()
    runner.send_signal(signal.SIGKILL)
    runner.wait(timeout=10)
    wait_until(lambda: not session_members(sid), GONE_WITHIN, "the orphaned group to die")
    return time.monotonic() - killed


def test_runner_killed_while_the_child_imports_the_target(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    (tmp_path / "slow_import.py").write_text(
        textwrap.dedent(
            f"""
            import json, os, time
            import minigun as mg
            with open({str(ready)!r} + ".tmp", "w") as fh:
                json.dump({{"sid": os.getsid(0)}}, fh)
            os.replace({str(ready)!r} + ".tmp", {str(ready)!r})
            time.sleep(60)

            class P(mg.Pipeline):
                @mg.producer
                def one(self):
                    yield 1
            """
        )
    )
    runner = _start_runner(tmp_path, pipeline="slow_import.py:P")
    _kill_runner_and_time_the_group(runner, read_ready(ready)["sid"])


def test_runner_killed_while_the_child_is_in_init(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    runner = _start_runner(tmp_path, pipeline=target("SlowInit"), params={"ready": str(ready)})
    _kill_runner_and_time_the_group(runner, read_ready(ready)["sid"])
    assert os.listdir(tmp_path / "tmp") == [], "a SIGKILLed runner leaves no temporary files"


def test_runner_killed_during_a_drain_with_a_full_queue_and_unread_stderr(
    tmp_path: Path,
) -> None:
    ready = tmp_path / "ready"
    runner = _start_runner(
        tmp_path, pipeline=target("DrainingChatter"), params={"ready": str(ready)}
    )
    sid = read_ready(ready)["sid"]
    wait_until(lambda: len(session_members(sid)) >= 3, 20, "the leader and two ipc workers")
    # First a SIGTERM, so the child is draining (grace 30 s) when its runner dies.
    runner.send_signal(signal.SIGTERM)
    time.sleep(0.3)  # not a wait for a condition: the drain has begun either way
    _kill_runner_and_time_the_group(runner, sid)


def test_big_and_non_ascii_params_travel_as_data(tmp_path: Path) -> None:
    big = "x" * (10 * 1024 * 1024)
    accented = "é" * 40_000  # 80 KB of UTF-8, beyond Linux's 128 KiB per argv string as \\u escapes
    outcome = run_isolated(
        RunSpec(target("Echo"), params={"big": big, "accented": accented}, env=child_env())
    )
    assert outcome.exit_code == ExitCode.OK, outcome.log_tail[-2000:]
    assert outcome.attempts == 1


def test_a_pipeline_file_named_like_a_standard_module_runs(tmp_path: Path) -> None:
    (tmp_path / "types.py").write_text(
        textwrap.dedent(
            """
            import minigun as mg

            class Shadow(mg.Pipeline):
                @mg.producer
                def one(self):
                    yield 1

                @mg.consumer
                def sink(self, x):
                    pass
            """
        )
    )
    (tmp_path / "json.py").write_text("raise RuntimeError('the stdlib was shadowed')\n")
    outcome = run_isolated(RunSpec("types.py:Shadow", env=child_env(), cwd=str(tmp_path)))
    assert outcome.exit_code == ExitCode.OK, outcome.log_tail


@pytest.mark.parametrize("code", [0, 5])
def test_a_target_that_calls_sys_exit_at_import_fails_and_says_so(
    tmp_path: Path, code: int
) -> None:
    (tmp_path / "quits.py").write_text(f"import sys\nsys.exit({code})\n")
    outcome = run_isolated(RunSpec("quits.py:P", env=child_env(), cwd=str(tmp_path)))
    assert outcome.exit_code == ExitCode.FAILED
    assert f"called sys.exit({code})" in outcome.log_tail


def test_the_child_imports_neither_click_nor_rich() -> None:
    lines: list[str] = []
    outcome = run_isolated(RunSpec(target("ImportAudit"), env=child_env()), on_log=lines.append)
    assert outcome.exit_code == ExitCode.OK, outcome.log_tail
    assert "[]" in lines
