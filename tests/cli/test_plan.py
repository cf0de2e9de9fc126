"""``minigun inspect --plan``: cores, memory (measured by ``--sample`` or estimated, and
labelled so) and the recommendation the deployment templates use.

The sample runs really fork; the figures are checked for plausibility (something was
measured, the children were counted), never against tight bounds."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from support import run_cli, target

FORKS = textwrap.dedent(
    """
    import time

    import minigun as mg


    class Forks(mg.Pipeline):
        def __init__(self, n: int = 40) -> None:
            self.n = n

        @mg.producer
        def numbers(self):
            yield from range(self.n)

        @mg.processor(execution="ipc_fork", processes=2)
        def parse(self, x):
            self.buffer = bytearray(4 * 1024 * 1024)  # private pages of each worker
            time.sleep(0.02)
            return x

        @mg.processor(execution="cow_fork", processes=2, chunk=1)
        def score(self, x):
            time.sleep(0.1)  # each child lives across several readings
            return x

        @mg.consumer
        def sink(self, x):
            pass
    """
)


@pytest.fixture
def forks(tmp_path: Path) -> Path:
    path = tmp_path / "forks.py"
    path.write_text(FORKS)
    return path


def plan_json(*args: str, cwd: str | None = None) -> dict[str, Any]:
    proc = run_cli("inspect", "--plan", "--format", "json", *args, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    document = json.loads(proc.stdout)
    plan: dict[str, Any] = document["plan"]
    return plan


def test_cores_are_the_fork_processes_plus_the_parent(forks: Path) -> None:
    plan = plan_json(str(forks))
    assert plan["processes"] == 4
    assert plan["cores"] == 5
    assert plan["recommendation"]["cpu_request"] == "5"
    assert plan["recommendation"]["ecs_cpu_units"] == 5 * 1024


def test_threads_need_only_the_parent_core() -> None:
    plan = plan_json(target("Succeed"))
    assert plan["processes"] == 0 and plan["threads"] == 3
    assert plan["cores"] == 1


def test_without_a_sample_memory_is_estimated_and_says_so(forks: Path) -> None:
    memory = plan_json(str(forks))["memory"]
    assert memory["source"] == "estimated"
    assert memory["base_bytes"] > 0 and memory["runner_bytes"] > 0
    expected = memory["runner_bytes"] + memory["base_bytes"] + 4 * memory["child_bytes"]
    assert memory["total_bytes"] == expected
    text = run_cli("inspect", "--plan", str(forks))
    assert text.returncode == 0, text.stderr
    assert "memory (estimated:" in text.stdout


def test_the_recommendation_adds_headroom_to_the_memory(forks: Path) -> None:
    plan = plan_json(str(forks))
    advice, total = plan["recommendation"], plan["memory"]["total_bytes"]
    assert advice["memory_limit"] == f"{advice['memory_limit_mib']}Mi"
    assert advice["memory_limit_mib"] * 1024 * 1024 >= total * advice["headroom"]
    assert advice["memory_limit_mib"] % 64 == 0


def test_a_sample_run_measures_the_parent_and_counts_its_forks(forks: Path) -> None:
    plan = plan_json(str(forks), "--sample", "5", cwd=str(forks.parent))
    memory = plan["memory"]
    assert memory["source"] == "measured"
    assert memory["readings"] > 0
    assert memory["base_bytes"] > 0
    assert memory["child_bytes"] > 0  # a fork's private pages
    assert memory["children_seen"] >= 3  # two ipc_fork workers, and cow_fork children
    assert memory["children_at_once"] >= 2
    assert memory["peak_bytes"] >= memory["base_bytes"]
    assert memory["total_bytes"] >= memory["runner_bytes"] + memory["base_bytes"]


def test_the_sample_run_is_stopped_after_its_seconds(forks: Path) -> None:
    proc = run_cli("inspect", str(forks), "--sample", "1", "-p", "n=100000", cwd=str(forks.parent))
    assert proc.returncode == 0, proc.stderr
    assert "memory (measured over a 1 s sample run" in proc.stdout
    assert "cancelled" in proc.stderr  # the runner's stop, logged on stderr


def test_a_sample_with_bad_params_is_a_usage_error(forks: Path) -> None:
    proc = run_cli("inspect", str(forks), "--sample", "1", "-p", "n=lots")
    assert proc.returncode == 2
    assert "'lots' is not an int" in proc.stderr


def test_a_plan_has_no_mermaid_form(forks: Path) -> None:
    proc = run_cli("inspect", str(forks), "--plan", "--format", "mermaid")
    assert proc.returncode == 2
    assert proc.stderr.startswith("minigun: error: --plan and --sample print a plan")
