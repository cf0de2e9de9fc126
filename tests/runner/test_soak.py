"""200 consecutive ``run_isolated`` calls leave no fds, threads or children behind.

The child is a tiny shell script standing in for the interpreter (``RunSpec.python``),
so the test exercises the runner's own machinery -- spawn, pipes, pidfd, selector,
result file, temp dirs, signal handlers, retries, the timeout kill -- 200 times in a few
seconds instead of paying Python's start-up 200 times.
"""

from __future__ import annotations

import os
import stat
import tempfile
import threading
from pathlib import Path

import psutil
import pytest

from minigun.runner import ExitCode, RunSpec, run_isolated

FAKE_PYTHON = """#!/bin/sh
# Stand-in for `python -m minigun run --in-process ...`: honours --result-file.
mode="$MODE"
while [ $# -gt 0 ]; do
  if [ "$1" = "--result-file" ]; then
    printf '{"schema": "minigun.result/1", "status": "succeeded"}' > "$2"
  fi
  shift
done
echo "out line"
echo "err line" >&2
case "$mode" in
  fail) exit 1 ;;
  hang) exec sleep 30 ;;
esac
exit 0
"""


def _fake_python(tmp_path: Path) -> str:
    path = tmp_path / "fake-python"
    path.write_text(FAKE_PYTHON)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def _footprint() -> tuple[int, int, int]:
    me = psutil.Process()
    return me.num_fds(), threading.active_count(), len(me.children(recursive=True))


@pytest.mark.slow
def test_200_runs_leak_no_fds_threads_or_children(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A temp directory of this test's own: other runs on the machine come and go in /tmp.
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private_tmp))
    python = _fake_python(tmp_path)
    ok = RunSpec("x:Y", python=python, env={"MODE": "ok"})
    failing = RunSpec("x:Y", python=python, env={"MODE": "fail"}, retries=1, retry_delay=0)
    hanging = RunSpec("x:Y", python=python, env={"MODE": "hang"}, timeout=0.05, grace=0)
    lines: list[str] = []
    run_isolated(ok, on_log=lines.append)  # warm up lazy imports and caches
    before = _footprint()
    tmp_before = set(os.listdir(private_tmp))
    codes = []
    for i in range(200):
        spec = hanging if i % 20 == 0 else failing if i % 10 == 5 else ok
        codes.append(run_isolated(spec, on_log=lines.append).exit_code)
    after = _footprint()
    # "No growth", not "equal": a thread or child left by an earlier test may end
    # during the loop. A leak here would be one per call, i.e. hundreds.
    assert all(a <= b for a, b in zip(after, before)), (
        f"fds/threads/children before {before}, after {after}"
    )
    assert codes.count(ExitCode.TIMEOUT) == 10
    assert codes.count(ExitCode.FAILED) == 20
    assert codes.count(ExitCode.OK) == 170
    assert lines.count("out line") >= 200
    leftover = set(os.listdir(private_tmp)) - tmp_before
    assert not [name for name in leftover if name.startswith("minigun-run-")]
