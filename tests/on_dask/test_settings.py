"""Where a dask stage finds its cluster (run argument or ``--dask-address`` >
``MINIGUN_DASK_ADDRESS`` > stage option > class attribute), what ``minigun run`` and
``minigun inspect`` say about it, and what importing minigun does not import."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("distributed")

import minigun as mg
from minigun.core.executors.dask import local_cluster_size
from minigun.core.graph import build_graph
from on_dask.conftest import DaskCluster
from support import full_env, run_cli, untraced_env

#: A scheduler address where nothing listens (the discard port).
NOWHERE = "tcp://127.0.0.1:9"


class Addressed(mg.Pipeline):
    dask_address = "tcp://from-the-class:8786"

    @mg.producer
    def numbers(self) -> Any:
        yield 1

    @mg.processor(execution="dask", dask_address="tcp://from-the-stage:8786")
    def own(self, x: int) -> int:
        return x

    @mg.processor(execution="dask")
    def inherited(self, x: int) -> int:
        return x

    @mg.consumer
    def local(self, x: int) -> None:
        pass


def _addresses(**overrides: Any) -> dict[str, Any]:
    graph = build_graph(Addressed(), **overrides)
    return {name: node.address for name, node in graph.nodes.items() if node.kind != "producer"}


def test_the_address_follows_the_precedence_of_every_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert _addresses() == {
        "own": "tcp://from-the-stage:8786",
        "inherited": "tcp://from-the-class:8786",
        "local": None,
    }
    monkeypatch.setenv("MINIGUN_DASK_ADDRESS", "tcp://from-the-env:8786")
    assert _addresses()["own"] == _addresses()["inherited"] == "tcp://from-the-env:8786"
    run = _addresses(dask_address="tcp://from-the-run:8786")
    assert run["own"] == run["inherited"] == "tcp://from-the-run:8786"
    assert run["local"] is None


def test_a_dask_stage_is_described_with_its_address() -> None:
    stages = build_graph(Addressed()).to_dict()["stages"]
    described = {s["name"]: s for s in stages}
    assert described["own"]["executor"] == "dask"
    assert described["own"]["dask_address"] == "tcp://from-the-stage:8786"
    assert "dask_address" not in described["local"]


def test_neither_import_nor_graph_building_imports_distributed() -> None:
    """``distributed`` is found, not imported, when the graph is built: a dask stage
    pays for it when it runs."""
    code = textwrap.dedent(
        """
        import sys
        import minigun as mg
        from minigun.core.graph import build_graph

        class P(mg.Pipeline):
            @mg.producer
            def numbers(self):
                yield 1

            @mg.consumer(execution="dask")
            def save(self, x):
                pass

        build_graph(P())
        print([m for m in ("dask", "distributed", "cloudpickle") if m in sys.modules])
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=untraced_env(full_env()),
    )
    assert out.stdout.strip() == "[]", out.stderr


PIPELINE_FILE = textwrap.dedent(
    """
    import minigun as mg


    class Point:
        def __init__(self, x):
            self.x = x


    class FromFile(mg.Pipeline):
        def __init__(self, n: int = 300):
            self.n = n

        @mg.producer
        def numbers(self):
            yield from range(self.n)

        @mg.processor(execution="dask")
        def wrap(self, x):
            return Point(2 * x)

        @mg.consumer
        def check(self, point):
            if not isinstance(point, Point):  # the class came back as itself
                raise TypeError(f"not a Point: {type(point)!r}")
    """
)


def _pipeline_file(tmp_path: Path) -> Path:
    """A pipeline in a directory the cluster's workers know nothing about."""
    where = tmp_path / "elsewhere"
    where.mkdir()
    path = where / "from_file.py"
    path.write_text(PIPELINE_FILE)
    return path


def test_minigun_run_dask_address_ships_a_pipeline_file_the_workers_cannot_import(
    cluster: DaskCluster, tmp_path: Path
) -> None:
    """Through the runner: the file's module travels by value, its classes come back
    as themselves, and the result JSON names the cluster."""
    path = _pipeline_file(tmp_path)
    result_file = tmp_path / "result.json"
    # A wrong address in the environment: the command line wins.
    env = full_env(MINIGUN_DASK_ADDRESS=NOWHERE)
    out = run_cli(
        "run",
        str(path),
        "--dask-address",
        cluster.address,
        "--result-file",
        str(result_file),
        "--no-progress",
        cwd=str(tmp_path),
        env=env,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(result_file.read_text())
    wrap = result["stats"]["stages"]["wrap"]
    assert wrap["cluster"] == {
        "address": cluster.address,
        "workers": 2,
        "threads": 2,
        "started_by_minigun": False,
    }
    assert wrap["processed"] == 300 and result["stats"]["total_consumed"] == 300


def test_minigun_dask_address_reaches_the_child_from_the_environment(
    cluster: DaskCluster, tmp_path: Path
) -> None:
    path = _pipeline_file(tmp_path)
    result_file = tmp_path / "result.json"
    out = run_cli(
        "run",
        str(path),
        "-p",
        "n=50",
        "--result-file",
        str(result_file),
        "--no-progress",
        cwd=str(tmp_path),
        env=full_env(MINIGUN_DASK_ADDRESS=cluster.address),
        timeout=180,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    cluster_info = json.loads(result_file.read_text())["stats"]["stages"]["wrap"]["cluster"]
    assert cluster_info["address"] == cluster.address


def test_inspect_shows_dask_stages_and_their_cluster(cluster: DaskCluster, tmp_path: Path) -> None:
    path = _pipeline_file(tmp_path)
    local = run_cli("inspect", str(path), cwd=str(tmp_path))
    assert local.returncode == 0, local.stderr
    assert "wrap" in local.stdout and "dask @ local" in local.stdout
    n = local_cluster_size()
    assert f"a LocalCluster started for the run: {n} worker processes" in local.stdout

    remote = run_cli(
        "inspect",
        str(path),
        "--format",
        "json",
        cwd=str(tmp_path),
        env=full_env(MINIGUN_DASK_ADDRESS=cluster.address),
    )
    assert remote.returncode == 0, remote.stderr
    graph = json.loads(remote.stdout)
    (described,) = graph["plan"]["dask"]
    assert described["address"] == cluster.address
    assert described["workers"] == 2 and described["threads"] == 2
    assert described["stages"] == ["wrap"]

    nowhere = run_cli(
        "inspect",
        str(path),
        cwd=str(tmp_path),
        env=full_env(MINIGUN_DASK_ADDRESS=NOWHERE, DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT="2s"),
    )
    assert nowhere.returncode == 0, nowhere.stderr
    assert f"dask: wrap -> {NOWHERE}: unreachable now" in nowhere.stdout


def test_inspect_warns_when_a_local_cluster_and_fork_stages_share_the_cores(
    tmp_path: Path,
) -> None:
    path = tmp_path / "mixed.py"
    path.write_text(
        textwrap.dedent(
            """
            import minigun as mg


            class Mixed(mg.Pipeline):
                @mg.producer
                def numbers(self):
                    yield from range(3)

                @mg.processor(execution="ipc_fork", processes=2)
                def parse(self, x):
                    return x

                @mg.consumer(execution="dask")
                def score(self, x):
                    pass
            """
        )
    )
    out = run_cli("inspect", str(path), cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr
    n = local_cluster_size()
    assert (
        f"warning: the LocalCluster's {n} worker processes and the fork stages' 2 processes"
        in out.stdout
    )
    out = run_cli(
        "inspect",
        str(path),
        cwd=str(tmp_path),
        env=full_env(MINIGUN_DASK_ADDRESS=NOWHERE, DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT="1s"),
    )
    assert "LocalCluster" not in out.stdout
