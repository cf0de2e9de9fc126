"""The CLI and async stages: ``minigun inspect`` shows them with their concurrency and
counts them as coroutines, not threads or cores; ``minigun run --concurrency`` reaches
the run through the isolated runner."""

from __future__ import annotations

import json
from pathlib import Path

from support import run_cli

TARGET = "pipelines.async_stages:AsyncHang"

GATED = """
import asyncio
import minigun as mg

class Gated(mg.Pipeline):
    '''Each call waits until `want` calls are in flight at once (or 60 s pass).'''

    concurrency = 50

    def __init__(self, want: int = 3) -> None:
        self.want = want
        self.inside = 0
        self.peak = 0

    @mg.producer
    def numbers(self):
        yield from range(30)

    @mg.processor
    async def call(self, x):
        if not hasattr(self, "full"):
            self.full = asyncio.Event()
        self.inside += 1
        self.peak = max(self.peak, self.inside)
        if self.inside >= self.want:
            self.full.set()
        await asyncio.wait_for(self.full.wait(), 60)
        self.inside -= 1
        return x

    @mg.consumer
    def save(self, x):
        pass

    @mg.after_run
    def show(self, result):
        print(f"peak={self.peak} status={result.status}", flush=True)
"""


def test_inspect_shows_async_stages_with_their_concurrency() -> None:
    proc = run_cli("inspect", TARGET)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    call = next(line for line in lines if line.strip().startswith("call"))
    assert "processor" in call and "async x8" in call
    assert "plan: 0 processes, 2 threads (+8 coroutines on 1 event loop), " in proc.stdout
    graph = json.loads(run_cli("inspect", TARGET, "--format", "json").stdout)
    stage = next(s for s in graph["stages"] if s["name"] == "call")
    assert stage["executor"] == "async" and stage["workers"] == 8
    assert graph["plan"]["coroutines"] == 8 and graph["plan"]["threads"] == 2
    assert graph["plan"]["warnings"] == []


def test_run_concurrency_override_reaches_the_isolated_run(tmp_path: Path) -> None:
    job = tmp_path / "gated.py"
    job.write_text(GATED)
    proc = run_cli("run", str(job), "--concurrency", "3", "-p", "want=3", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "peak=3 status=succeeded" in proc.stdout


def test_run_rejects_a_bad_concurrency() -> None:
    proc = run_cli("run", TARGET, "--concurrency", "0")
    assert proc.returncode == 2
    assert "--concurrency" in proc.stderr
