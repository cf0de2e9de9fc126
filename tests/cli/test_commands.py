"""``minigun inspect``, ``replay`` and ``worker``."""

from __future__ import annotations

import json
import re
import signal
import subprocess
from pathlib import Path

from support import full_env, minigun_cli, run_cli, target, wait_until


def test_inspect_json_is_the_graph(tmp_path: Path) -> None:
    proc = run_cli("inspect", target("Succeed"), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    graph = json.loads(proc.stdout)
    assert [s["name"] for s in graph["stages"]] == ["numbers", "square", "show"]
    assert graph["edges"] == [["numbers", "square"], ["square", "show"]]
    assert {"processes", "threads", "cores", "warnings"} <= set(graph["plan"])


def test_inspect_text_lists_stages_executors_and_plan() -> None:
    proc = run_cli("inspect", target("Succeed"))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "pipeline pipelines.contract:Succeed"
    square = next(line for line in lines if line.strip().startswith("square"))
    assert "processor" in square and "thread x1" in square and "-> show" in square
    assert any(line.startswith("plan: 0 processes, 3 threads") for line in lines)


def test_inspect_marks_the_stages_that_may_route_with_out_to(tmp_path: Path) -> None:
    job = tmp_path / "router.py"
    job.write_text(
        "import minigun as mg\n"
        "class Router(mg.Pipeline):\n"
        "    @mg.producer\n    def p(self):\n        yield 1\n"
        "    @mg.processor\n    def split(self, x, out):\n        out.to('odd').emit(x)\n"
        "    @mg.consumer\n    def even(self, x):\n        pass\n"
        "    @mg.consumer\n    def odd(self, x):\n        pass\n"
    )
    proc = run_cli("inspect", str(job))
    assert proc.returncode == 0, proc.stderr
    lines = {line.split()[0]: line for line in proc.stdout.splitlines()[2:] if line.strip()}
    assert lines["split"].endswith("-> even (+ out.to)")
    assert not lines["p"].endswith("(+ out.to)")
    graph = json.loads(run_cli("inspect", str(job), "--format", "json").stdout)
    assert {s["name"]: s["routes"] for s in graph["stages"]} == {
        "p": False,
        "split": True,
        "even": False,
        "odd": False,
    }


def test_inspect_mermaid_is_a_flowchart() -> None:
    proc = run_cli("inspect", target("Succeed"), "--format", "mermaid")
    assert proc.returncode == 0
    assert proc.stdout.splitlines()[0] == "flowchart LR"
    assert "    numbers --> square" in proc.stdout


def test_inspect_warns_when_fork_stages_want_more_processes_than_cores(tmp_path: Path) -> None:
    job = tmp_path / "greedy.py"
    job.write_text(
        "import minigun as mg\n"
        "class Greedy(mg.Pipeline):\n"
        "    @mg.producer\n    def p(self):\n        yield 1\n"
        "    @mg.processor(execution='ipc_fork', processes=4096)\n"
        "    def work(self, x):\n        return x\n"
        "    @mg.consumer\n    def c(self, x):\n        pass\n"
    )
    proc = run_cli("inspect", str(job))
    assert proc.returncode == 0, proc.stderr
    assert "plan: 4096 processes" in proc.stdout
    assert any(line.startswith("warning: ") for line in proc.stdout.splitlines())


def test_inspect_needs_no_constructor_params() -> None:
    proc = run_cli("inspect", target("FlakyOnce"))
    assert proc.returncode == 0, proc.stderr


def test_replay_feeds_dead_letters_back(tmp_path: Path) -> None:
    letters = tmp_path / "letters"
    first = run_cli("run", target("Picky"), "--dead-letter-dir", str(letters))
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == ["accepted 0", "accepted 2", "accepted 4"]
    (letter_file,) = letters.iterdir()
    result_file = tmp_path / "replay.json"
    proc = run_cli(
        "replay",
        str(letter_file),
        target("Picky"),
        "-p",
        "strict=false",
        "--result-file",
        str(result_file),
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(proc.stdout.splitlines()) == ["accepted 1", "accepted 3", "accepted 5"]
    assert "replaying 3 dead letter(s)" in proc.stderr
    assert json.loads(result_file.read_text())["status"] == "succeeded"


def test_replay_that_fails_again_keeps_the_contract(tmp_path: Path) -> None:
    letters = tmp_path / "letters"
    run_cli("run", target("Picky"), "--dead-letter-dir", str(letters))
    (letter_file,) = letters.iterdir()
    result_file = tmp_path / "replay.json"
    proc = run_cli(
        "replay",
        str(letter_file),
        target("Picky"),
        "--result-file",
        str(result_file),
        cwd=str(tmp_path),  # what fails again goes to ./minigun-dead-letters
    )
    result = json.loads(result_file.read_text())
    assert proc.returncode == result["exit_code"]
    assert result["dead_letter_count"] == 3


def _start_worker(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        minigun_cli("worker", *args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env(),
    )


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_worker_runs_again_and_again_until_sigterm(tmp_path: Path) -> None:
    log = tmp_path / "runs.log"
    worker = _start_worker(target("Counter"), "-p", f"log={log}", "--interval", "0.05")
    try:
        wait_until(lambda: _lines(log) >= 3, 30, "three runs")
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=20)
    finally:
        worker.kill()
    assert worker.returncode == 0, err
    assert "worker: stopped after" in err
    pids = log.read_text().split()
    assert len(set(pids)) == len(pids)  # every run in a fresh child process


def test_worker_backs_off_after_failures_and_recovers(tmp_path: Path) -> None:
    log, fail = tmp_path / "runs.log", tmp_path / "fail"
    fail.touch()
    worker = _start_worker(
        target("Counter"),
        "-p",
        f"log={log}",
        "-p",
        f"fail={fail}",
        "--restart-delay",
        "0.2",
        "--interval",
        "0.05",
    )
    try:
        wait_until(lambda: _lines(log) >= 3, 30, "three failed runs")
        fail.unlink()
        count = _lines(log)
        wait_until(lambda: _lines(log) >= count + 2, 30, "runs after recovery")
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=20)
    finally:
        worker.kill()
    assert worker.returncode == 0
    # Backoff with jitter (the runner's): half fixed, half random, doubling.
    first = re.search(r"1 failure\(s\) in a row, restarting in ([0-9.]+)s", err)
    second = re.search(r"2 failure\(s\) in a row, restarting in ([0-9.]+)s", err)
    assert first and 0.1 <= float(first.group(1)) <= 0.2, err
    assert second and 0.2 <= float(second.group(1)) <= 0.4, err
    assert "succeeded" in err


def test_worker_sigterm_during_a_run_stops_it_gracefully(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    worker = _start_worker(target("Endless"), "-p", f"ready={ready}")
    try:
        wait_until(ready.exists, 30, "the run to start")
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=60)  # Endless never ends by itself
    finally:
        worker.kill()
    assert worker.returncode == 0, err
    assert "stopped after 1 run(s)" in err


def test_worker_timeout_stops_a_run_that_does_not_end_and_restarts(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    worker = _start_worker(
        target("Endless"), "-p", f"ready={ready}", "--timeout", "1", "--restart-delay", "0.05"
    )
    try:
        wait_until(ready.exists, 30, "the first run to start")
        ready.unlink()
        wait_until(ready.exists, 60, "a second run, after the first timed out")
        worker.send_signal(signal.SIGTERM)
        _, err = worker.communicate(timeout=60)
    finally:
        worker.kill()
    assert worker.returncode == 0, err
    assert "worker: run 1 ended timeout (exit 124); 1 failure(s) in a row" in err
    assert "stopped after 2 run(s)" in err


def test_inspect_json_keeps_stdout_parseable_and_warns_on_stderr(tmp_path: Path) -> None:
    job = tmp_path / "greedy.py"
    job.write_text(
        "import minigun as mg\n"
        "class Greedy(mg.Pipeline):\n"
        "    @mg.producer\n    def p(self):\n        yield 1\n"
        "    @mg.processor(execution='cow_fork', processes=4096)\n"
        "    def work(self, x):\n        return x\n"
        "    @mg.consumer\n    def c(self, x):\n        pass\n"
    )
    proc = run_cli("inspect", str(job), "--format", "json")
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["plan"]["warnings"]
    assert proc.stderr.startswith("minigun: warning: ")
