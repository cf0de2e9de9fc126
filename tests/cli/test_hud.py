"""The HUD and the progress bar, rendered for real: into a recorded rich console, and in
a real terminal (tmux) where ``q`` stops the run and nothing is redrawn after the end."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from minigun.cli._progress import _stage_table, graph_line
from support import full_env, wait_until


def _snapshot(edges: dict[str, list[str]]) -> dict[str, object]:
    stages = {
        name: {"items_in": 10, "items_out": 10, "utilisation": 0.5, "downstream": down}
        for name, down in edges.items()
    }
    return {"stages": stages, "total_produced": 10, "total_consumed": 10, "bottleneck": "b"}


def test_the_graph_line_follows_chains_and_splits_at_fan_out_and_join() -> None:
    assert graph_line(_snapshot({"a": ["b"], "b": ["c"], "c": []})) == "a → b → c"
    fan = _snapshot({"a": ["b", "c"], "b": ["d"], "c": ["d"], "d": []})
    assert graph_line(fan) == "a → b → d, a → c → d"
    cycle = _snapshot({"src": ["fetch"], "fetch": ["parse"], "parse": ["fetch"]})
    assert graph_line(cycle) == "src → fetch, fetch → parse → fetch"


def test_the_stage_table_shows_every_stage_the_bottleneck_and_the_graph() -> None:
    console = Console(record=True, width=140)
    console.print(_stage_table("Etl", _snapshot({"a": ["b"], "b": []}), "q: stop"))
    text = console.export_text()
    assert "Etl — produced 10, consumed 10" in text
    assert "b ◀ bottleneck" in text and "a → b · q: stop" in text


ENDLESS = """
import time
import minigun as mg


class Endless(mg.Pipeline):
    @mg.producer
    def numbers(self):
        i = 0
        while True:
            time.sleep(0.02)
            yield i
            i += 1

    @mg.processor
    def double(self, x):
        return x * 2

    @mg.consumer
    def sink(self, x):
        pass


class Short(mg.Pipeline):
    @mg.producer
    def numbers(self):
        for i in range(20):
            time.sleep(0.03)
            yield i

    @mg.consumer
    def sink(self, x):
        pass
"""


class Terminal:
    """A real terminal: a private tmux server running one command."""

    def __init__(self, cwd: Path) -> None:
        self.socket = f"minigun-test-{uuid.uuid4().hex[:8]}"
        self.cwd = cwd

    def tmux(self, *args: str) -> str:
        proc = subprocess.run(
            ["tmux", "-L", self.socket, "-f", "/dev/null", *args],
            capture_output=True,
            text=True,
            env=full_env(),
            timeout=30,
        )
        return proc.stdout

    def start(self, argv: list[str]) -> None:
        command = f"cd {shlex.quote(str(self.cwd))} && {shlex.join(argv)}; echo EXIT=$?; sleep 600"
        self.tmux("new-session", "-d", "-s", "t", "-x", "140", "-y", "40", command)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-t", "t", "-p")

    def wait_for(self, text: str, timeout: float = 60) -> str:
        wait_until(lambda: text in self.screen(), timeout, f"{text!r} on the terminal")
        return self.screen()

    def close(self) -> None:
        self.tmux("kill-server")


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed: the real-terminal tests need it")
    (tmp_path / "endless.py").write_text(textwrap.dedent(ENDLESS))
    term = Terminal(tmp_path)
    try:
        yield term
    finally:
        term.close()


@pytest.mark.parametrize("where", ["isolated", "in-process"])
def test_q_in_the_hud_stops_the_run_as_sigterm_would(terminal: Terminal, where: str) -> None:
    extra = ["--in-process"] if where == "in-process" else []
    terminal.start([sys.executable, "-m", "minigun", "run", "endless.py:Endless", "--hud", *extra])
    terminal.wait_for("q: stop")
    terminal.wait_for("numbers → double → sink")
    terminal.tmux("send-keys", "-t", "t", "q")
    screen = terminal.wait_for("EXIT=")
    assert "EXIT=143" in screen
    assert "Endless stopped in" in screen
    assert "stopping: draining in-flight items" in screen


def test_the_progress_bar_is_gone_once_the_summary_is_printed(terminal: Terminal) -> None:
    terminal.start([sys.executable, "-m", "minigun", "run", "endless.py:Short"])
    screen = terminal.wait_for("EXIT=")
    lines = [line for line in screen.splitlines() if line.strip()]
    exit_at = next(i for i, line in enumerate(lines) if line.startswith("EXIT="))
    assert lines[exit_at] == "EXIT=0"
    summary_at = next(i for i, line in enumerate(lines) if line.startswith("minigun: Short"))
    assert lines[summary_at].startswith("minigun: Short succeeded in")
    assert "produced 20, consumed 20" in lines[summary_at]
    # then the finished run's stage table, and nothing redrawn after it
    table = lines[summary_at + 1 : exit_at]
    assert any(line.startswith("┃ stage") for line in table)
    assert any(line.startswith("│ numbers") for line in table)
    # no bar left behind, stale or not (the table's own borders aside)
    assert not any("━" in line and line[:1] not in "┏┡└" for line in lines)
