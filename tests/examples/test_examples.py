"""Every example in ``examples/`` runs through the real CLI and does what it says.

Not the orchestrator examples (``airflow_dag.py`` and the others): their adapters'
envs run them inside the orchestrators. Each test here checks what the example claims
in its docstring against what the run left behind: the result JSON, the SQLite rows,
the dead-letter file, and the figures the example prints (which it gets from a server,
the workers or ``/proc``, not from the engine's own counters).
"""

from __future__ import annotations

import importlib.util
import json
import re
import sqlite3
from pathlib import Path
from types import ModuleType

import pytest

from .conftest import EXAMPLES_DIR, RunExample

#: The examples this module runs, one test (or more) each.
TESTED = (
    "etl",
    "crawler",
    "enrichment",
    "dead_letters",
    "inference",
    "shared_model",
    "async_api",
    "dask_scale_out",
)
#: Examples run inside their orchestrator by the adapter envs (tests/adapters).
ORCHESTRATOR_EXAMPLES = ("airflow_dag", "prefect_flow", "dagster_defs", "luigi_tasks")


def load_example(name: str) -> ModuleType:
    """Import ``examples/NAME.py`` here, for its constants and pure functions only."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES_DIR / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    connection = sqlite3.connect(db)
    try:
        return connection.execute(sql).fetchall()
    finally:
        connection.close()


def test_every_example_is_tested_and_says_how_to_run_it() -> None:
    files = {path.stem for path in EXAMPLES_DIR.glob("*.py")}
    assert files - set(ORCHESTRATOR_EXAMPLES) == set(TESTED)
    for name in TESTED:
        doc = load_example(name).__doc__ or ""
        assert f"minigun run examples/{name}.py" in doc, name


def test_etl(run_example: RunExample, tmp_path: Path) -> None:
    ran = run_example("etl", "-p", "rows=2000")
    assert ran.result["status"] == "succeeded"
    transform = ran.stages["transform"]
    assert ran.result["stats"]["total_produced"] == 2000
    assert transform["processed"] + transform["dropped"] == 2000
    assert 0 < transform["dropped"] < 2000  # the dirty rows
    (loaded,) = rows(tmp_path / "etl.sqlite", "SELECT COUNT(*) FROM orders")[0]
    assert loaded == transform["processed"]
    assert ran.line("loaded ") == f"loaded {loaded} orders into etl.sqlite"


@pytest.mark.parametrize(("limit", "expected"), [(25, 25), (100, 40)], ids=["limit", "site"])
def test_crawler_fetches_each_page_once_up_to_the_limit(
    run_example: RunExample, tmp_path: Path, limit: int, expected: int
) -> None:
    assert load_example("crawler").SITE_PAGES == 40
    ran = run_example("crawler", "-p", f"max_pages={limit}")
    assert ran.stages["fetch"]["processed"] == expected
    assert ran.stages["parse"]["failed"] == 0
    urls = [url for (url,) in rows(tmp_path / "crawl.sqlite", "SELECT url FROM pages")]
    assert len(urls) == len(set(urls)) == expected
    assert all(re.fullmatch(r"http://127\.0\.0\.1:\d+/page/\d+", url) for url in urls)
    line = ran.line("crawled ")
    # What the site's server counted, independently of the pipeline's own stats.
    assert f"server answered {expected} requests for {expected} distinct pages" in line
    assert line.endswith("0 fetched twice")


def test_enrichment_merges_three_parts_per_order(run_example: RunExample, tmp_path: Path) -> None:
    ran = run_example("enrichment", "-p", "orders=600")
    merge = ran.stages["merge"]
    assert (merge["items_in"], merge["processed"], merge["items_out"]) == (1800, 1800, 600)
    for enricher in ("geo", "fx", "risk"):
        assert ran.stages[enricher]["processed"] == 600
    loaded = rows(tmp_path / "enrichment.sqlite", "SELECT * FROM orders ORDER BY id")
    assert [row[0] for row in loaded] == list(range(600))
    for order_id, ip, country, amount_eur, risk in loaded:
        assert country == {"10": "FR", "20": "DE", "30": "JP", "40": "BR", "50": "KE"}[ip[:2]]
        assert isinstance(amount_eur, float) and amount_eur > 0
        assert risk == round((order_id * 7919 % 1000) / 1000, 3)
    assert "(0 incomplete)" in ran.line("merged 600 of 600 orders")


def test_dead_letters_then_replay_after_the_fix(run_example: RunExample, tmp_path: Path) -> None:
    db = tmp_path / "payments.sqlite"
    bad_ids = [i for i in range(200) if i % 25 == 7]
    ran = run_example("dead_letters")
    assert ran.result["status"] == "succeeded"
    assert ran.result["dead_letter_count"] == len(bad_ids) == 8
    letters_file = Path(ran.result["dead_letter_file"])
    assert letters_file.parent == tmp_path / "minigun-dead-letters"
    letters = [json.loads(line) for line in letters_file.read_text().splitlines()]
    assert sorted(int(letter["item"]["id"]) for letter in letters) == bad_ids
    for letter in letters:
        assert letter["stage"] == "parse"
        assert "," in letter["item"]["amount"]
        assert letter["error"].startswith("ValueError: amount ")
    assert rows(db, "SELECT COUNT(*) FROM payments") == [(192,)]
    assert f"8 dead-lettered to {letters_file}" in ran.line("loaded 192 payments")

    # Not fixed yet: the same rows fail again, into a new file, and nothing is loaded.
    again = run_example("dead_letters", str(letters_file), command="replay")
    assert again.result["dead_letter_count"] == 8
    assert again.stages["load"]["processed"] == 0
    assert rows(db, "SELECT COUNT(*) FROM payments") == [(192,)]

    fixed = run_example("dead_letters", str(letters_file), "-p", "strict=false", command="replay")
    assert fixed.result["status"] == "succeeded"
    assert fixed.result["dead_letter_count"] == 0
    assert fixed.stages["load"]["processed"] == 8
    assert rows(db, "SELECT COUNT(*) FROM payments") == [(200,)]
    replayed = rows(db, f"SELECT id, cents FROM payments WHERE id IN {tuple(bad_ids)}")
    assert sorted(replayed) == [(i, i * 137 % 100_000) for i in bad_ids]


def test_inference_loads_the_model_once_per_worker(run_example: RunExample) -> None:
    ran = run_example("inference", "-p", "reviews=1500")
    score = ran.stages["score"]
    assert (score["executor"], score["workers"], score["processed"]) == ("ipc_fork", 3, 1500)
    match = re.search(r"model loaded (\d+) times in (\d+) workers", ran.line("scored 1500 "))
    assert match is not None
    loads, workers = int(match[1]), int(match[2])
    assert loads == workers == score["workers"]


def test_shared_model_children_share_the_table(run_example: RunExample) -> None:
    ran = run_example("shared_model", "-p", "table_mb=64", "-p", "queries=6")
    assert ran.stages["query"]["executor"] == "cow_fork"
    assert ran.stages["query"]["processed"] == 6
    line = ran.line("answered 6 queries over a 64 MiB table")
    match = re.search(r"shared >= ([\d.]+) MiB with it and had <= ([\d.]+) MiB of its own", line)
    assert match is not None, line
    shared, private = float(match[1]), float(match[2])
    assert shared >= 64 * 0.9  # the table is resident in the child, through the parent's pages
    assert private < 64 / 2  # and not copied: a copy alone would be 64 MiB


def test_async_api_keeps_concurrency_calls_in_flight(run_example: RunExample) -> None:
    price_of = load_example("async_api").price_of
    ran = run_example("async_api", "-p", "items=300", "--concurrency", "7")
    lookup = ran.stages["lookup"]
    assert (lookup["executor"], lookup["workers"], lookup["processed"]) == ("async", 7, 300)
    line = ran.line("priced 300 items")
    assert f"total {sum(price_of(sku) for sku in range(300)) / 100:.2f};" in line
    match = re.search(r"API answered (\d+) requests, at most (\d+) at once", line)
    assert match is not None, line
    requests, peak = int(match[1]), int(match[2])
    assert requests == 300
    assert 2 <= peak <= 7  # calls overlapped, and never more than concurrency


def test_dask_scale_out_counts_on_a_local_cluster(run_example: RunExample) -> None:
    pytest.importorskip("distributed", reason="the dask extra (tox -e examples installs it)")
    ran = run_example("dask_scale_out", "-p", "limit=100000", "-p", "blocks=12", timeout=300)
    count = ran.stages["count"]
    assert (count["executor"], count["processed"]) == ("dask", 12)
    assert count["cluster"]["started_by_minigun"] is True
    sieve = bytearray([1]) * 100_000
    sieve[:2] = b"\0\0"
    for n in range(2, 317):
        if sieve[n]:
            sieve[n * n :: n] = bytes(len(range(n * n, 100_000, n)))
    line = ran.line(f"{sum(sieve)} primes below 100000, counted in 12 blocks by ")
    assert "a LocalCluster minigun started" in line
