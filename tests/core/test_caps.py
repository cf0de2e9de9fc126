"""``max_threads``/``max_processes`` are caps at every level (issue 10, finding 7).

They lower a stage's own ``threads``/``processes``, never raise them; where several
levels set one, the tightest applies.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

import minigun as mg
from minigun.cli import cli
from minigun.core.graph import build_graph
from support import run_cli


class Shop(mg.Pipeline):
    @mg.producer
    def src(self):
        yield 1

    @mg.processor(threads=20)
    def wide(self, x):
        return x

    @mg.processor(execution="cow_fork", processes=4)
    def fork(self, x):
        return x

    @mg.processor(execution="ipc_fork")
    def fork_default(self, x):
        return x

    @mg.consumer  # one thread: say, a SQLite connection that must not be shared
    def sink(self, x): ...


def workers(pipeline: mg.Pipeline, **overrides: object) -> dict[str, int]:
    graph = build_graph(pipeline, **overrides)
    return {name: node.workers for name, node in graph.nodes.items() if node.kind != "producer"}


@pytest.fixture(autouse=True)
def _no_caps_from_outside(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MINIGUN_MAX_THREADS", "MINIGUN_MAX_PROCESSES", "MINIGUN_MAX_FORKS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("MINIGUN_EXECUTION", raising=False)


CORES = os.cpu_count() or 1


def test_without_caps_each_stage_has_its_own_count() -> None:
    assert workers(Shop()) == {"wide": 20, "fork": 4, "fork_default": CORES, "sink": 1}


def test_a_run_argument_cap_lowers_but_never_raises() -> None:
    assert workers(Shop(), max_threads=4, max_processes=2) == {
        "wide": 4,
        "fork": 2,
        "fork_default": min(CORES, 2),
        "sink": 1,
    }


def test_an_environment_cap_lowers_but_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINIGUN_MAX_THREADS", "4")
    monkeypatch.setenv("MINIGUN_MAX_FORKS", "3")
    assert workers(Shop()) == {"wide": 4, "fork": 3, "fork_default": min(CORES, 3), "sink": 1}


def test_a_class_attribute_cap_lowers_but_never_raises() -> None:
    class Capped(Shop):
        max_threads = 4
        max_processes = 64

    assert workers(Capped()) == {"wide": 4, "fork": 4, "fork_default": CORES, "sink": 1}


def test_the_tightest_cap_of_all_levels_applies(monkeypatch: pytest.MonkeyPatch) -> None:
    class Capped(Shop):
        max_threads = 2
        max_processes = 3

    monkeypatch.setenv("MINIGUN_MAX_THREADS", "8")
    monkeypatch.setenv("MINIGUN_MAX_PROCESSES", "16")
    # A looser run argument or environment does not lift the class attribute's cap...
    assert workers(Capped(), max_threads=10)["wide"] == 2
    assert workers(Capped(), max_processes=10)["fork"] == 3
    # ...and a tighter one at any level lowers further.
    assert workers(Capped(), max_threads=1)["wide"] == 1
    monkeypatch.setenv("MINIGUN_MAX_PROCESSES", "2")
    assert workers(Capped())["fork"] == 2


def test_max_processes_and_its_alias_max_forks_both_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINIGUN_MAX_PROCESSES", "3")
    monkeypatch.setenv("MINIGUN_MAX_FORKS", "2")
    assert workers(Shop())["fork"] == 2


def test_a_nested_pipelines_own_cap_and_the_outer_cap_both_apply() -> None:
    class Inner(mg.Pipeline):
        max_threads = 3

        @mg.processor(threads=10)
        def step(self, x):
            return x

    class Outer(mg.Pipeline):
        @mg.producer
        def src(self):
            yield 1

        inner = mg.nested(Inner)

        @mg.consumer(threads=6)
        def sink(self, x): ...

    assert workers(Outer()) == {"inner.step": 3, "sink": 6}

    class TighterOuter(Outer):
        max_threads = 2

    assert workers(TighterOuter()) == {"inner.step": 2, "sink": 2}


def test_the_effective_cap_is_reported_in_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    class Capped(Shop):
        max_threads = 2

    monkeypatch.setenv("MINIGUN_MAX_THREADS", "8")
    assert build_graph(Capped()).settings["max_threads"] == 2


SHOP_FILE = """
import minigun as mg

class Shop(mg.Pipeline):
    @mg.producer
    def src(self):
        yield from range(20)

    @mg.processor(threads=20)
    def wide(self, x):
        return x

    @mg.consumer
    def sink(self, x):
        pass
"""


@pytest.fixture
def shop_file(tmp_path: Path) -> Path:
    path = tmp_path / "shop_caps.py"
    path.write_text(SHOP_FILE)
    return path


def test_inspect_shows_the_capped_counts(shop_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINIGUN_MAX_THREADS", "4")
    result = CliRunner().invoke(cli, ["inspect", str(shop_file), "--format", "json"])
    assert result.exit_code == 0, result.output
    graph = json.loads(result.output)
    counts = {stage["name"]: stage["workers"] for stage in graph["stages"]}
    assert counts == {"src": 1, "wide": 4, "sink": 1}
    assert graph["plan"]["threads"] == 6


def test_minigun_run_max_threads_keeps_a_one_thread_consumer_on_one(
    shop_file: Path, tmp_path: Path
) -> None:
    result_file = tmp_path / "result.json"
    proc = run_cli("run", str(shop_file), "--max-threads", "4", "--result-file", str(result_file))
    assert proc.returncode == 0, proc.stderr
    stages = json.loads(result_file.read_text())["stats"]["stages"]
    assert stages["sink"]["workers"] == 1
    assert stages["wide"]["workers"] == 4
