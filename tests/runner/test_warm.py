"""A child started ahead of its spec (``minigun run``'s warm start) is used or ended.

The warm child overlaps the two interpreters an isolated run needs. What must hold:
the first attempt runs in it when it fits the spec and in a fresh child when it does
not; an unused one never outlives its caller -- not after a usage error, not when the
caller is SIGKILLed before it has parsed its command line.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import psutil
import pytest

from minigun.cli import _runs_a_child
from minigun.runner import ExitCode, RunSpec, run_isolated
from minigun.runner.warm import start_warm_child
from support import alive, child_env, full_env, run_cli, target, untraced_env, wait_until


@pytest.fixture
def importable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make this process's own environment the one a child needs to import ``pipelines``,
    so that a default warm child fits a default spec."""
    for key, value in child_env().items():
        monkeypatch.setenv(key, value)


def test_the_first_attempt_runs_in_a_warm_child_that_fits(tmp_path: Path, importable: None) -> None:
    warm = start_warm_child()
    assert warm is not None and warm.pid is not None
    warm_pid = warm.pid
    log = tmp_path / "pids"
    outcome = run_isolated(RunSpec(target("Counter"), params={"log": str(log)}), warm=warm)
    assert outcome.exit_code == ExitCode.OK, outcome.log_tail
    assert log.read_text().split() == [str(warm_pid)]
    assert warm.pid is None  # used up


def test_a_warm_child_that_does_not_fit_is_ended_and_a_fresh_one_runs(
    tmp_path: Path, importable: None
) -> None:
    warm = start_warm_child()
    assert warm is not None and warm.pid is not None
    warm_pid = warm.pid
    log = tmp_path / "pids"
    spec = RunSpec(target("Counter"), params={"log": str(log)}, env={"EXTRA": "1"})
    outcome = run_isolated(spec, warm=warm)
    assert outcome.exit_code == ExitCode.OK, outcome.log_tail
    assert log.read_text().split() != [str(warm_pid)]
    assert not alive(warm_pid)


def test_retries_after_a_warm_first_attempt_start_fresh_children(
    tmp_path: Path, importable: None
) -> None:
    warm = start_warm_child()
    assert warm is not None
    log, fail = tmp_path / "pids", tmp_path / "fail"
    fail.touch()
    spec = RunSpec(
        target("Counter"), params={"log": str(log), "fail": str(fail)}, retries=1, retry_delay=0
    )
    outcome = run_isolated(spec, warm=warm)
    assert outcome.attempts == 2 and outcome.exit_code == ExitCode.FAILED
    first, second = log.read_text().split()
    assert first != second


def test_discarding_an_unclaimed_warm_child_ends_it() -> None:
    warm = start_warm_child()
    assert warm is not None and warm.pid is not None
    pid = warm.pid
    warm.discard()
    warm.discard()  # idempotent
    assert not alive(pid)


def test_a_warm_child_dies_with_a_caller_killed_before_it_sent_a_spec(tmp_path: Path) -> None:
    caller = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import sys, time
                from minigun.runner.warm import start_warm_child
                warm = start_warm_child()
                print(warm.pid, flush=True)
                time.sleep(120)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=full_env(),
    )
    assert caller.stdout is not None
    warm_pid = int(caller.stdout.readline())
    assert alive(warm_pid)
    caller.send_signal(signal.SIGKILL)
    caller.wait(timeout=10)
    wait_until(lambda: not alive(warm_pid), 2.0, "the orphaned warm child to end")


def _processes_with(marker: str) -> list[int]:
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.environ().get("MINIGUN_TEST_MARKER") == marker:
                found.append(proc.pid)
        except (psutil.Error, OSError):
            continue
    return found


def test_a_usage_error_leaves_no_warm_child_behind() -> None:
    marker = uuid.uuid4().hex
    proc = run_cli(
        "run", target("Noop"), "--no-such-option", env=full_env(MINIGUN_TEST_MARKER=marker)
    )
    assert proc.returncode == ExitCode.USAGE
    assert proc.stderr.count("\n") == 1, proc.stderr
    wait_until(lambda: not _processes_with(marker), 10.0, "no process of that run to remain")


def test_a_bad_target_through_a_warm_child_is_still_a_usage_error(tmp_path: Path) -> None:
    proc = run_cli("run", "missing_module_xyz:Nope", cwd=str(tmp_path))
    assert proc.returncode == ExitCode.USAGE, proc.stderr
    assert "missing_module_xyz" in proc.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["run", "a.py:P"], True),
        (["run", "a.py:P", "--in-process"], False),
        (["run", "--dry-run", "a.py:P"], False),
        (["run", "--help"], False),
        (["run", "-h"], False),
        (["inspect", "a.py:P"], False),
        (["--debug", "run", "a.py:P"], False),
        ([], False),
    ],
)
def test_only_a_run_through_the_runner_starts_a_child_early(
    args: list[str], expected: bool
) -> None:
    assert _runs_a_child(args) is expected


def test_the_way_to_the_warm_spawn_stays_lean() -> None:
    """What ``minigun run`` imports before it starts its child delays the whole run:
    click, typing and dataclasses (and the engine) must come after the spawn."""
    probe = textwrap.dedent(
        """
        import json, sys
        import minigun.cli, minigun.runner.warm
        heavy = ("click", "typing", "dataclasses", "minigun.core", "minigun.runner.process")
        print(json.dumps(sorted(name for name in heavy if name in sys.modules)))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        env=untraced_env(full_env()),  # a coverage tracer would import typing itself
        check=True,
    )
    assert proc.stdout.strip() == "[]", proc.stdout
