"""A final stage fed by ``mg.batch`` counts items, not batches, in ``total_consumed``.

Issue 13 found the quick start saying "consumed 21" for 4,167 rows loaded in 21
batches. The stage's own counters still count what it received (batches); its
``batched_items`` and the run's ``total_consumed`` count the rows inside them, less
those of batches that failed, on every executor that can run a consumer.
"""

from __future__ import annotations

from typing import Any

import pytest

import minigun as mg
from minigun.core.result import summary_line

EXECUTIONS = ["inline", "thread", "cow_fork", "ipc_fork"]


class Loader(mg.Pipeline):
    """100 rows in batches of 8 (the last one 4); the batch holding row 42 fails."""

    def __init__(self, n: int = 100) -> None:
        self.n = n

    @mg.producer
    def rows(self):  # type: ignore[no-untyped-def]
        yield from range(self.n)

    chunks = mg.batch(8)

    @mg.consumer(on_error="skip")
    def load(self, rows: list[int]) -> None:
        if 42 in rows:
            raise ValueError("row 42 does not load")


class AsyncLoader(Loader):
    @mg.consumer(on_error="skip")
    async def load(self, rows: list[int]) -> None:  # type: ignore[override]
        if 42 in rows:
            raise ValueError("row 42 does not load")


def _check(result: Any) -> None:
    load = result.stats.stages["load"]
    assert load["items_in"] == 13 and load["processed"] == 12 and load["skipped"] == 1
    assert load["batched_items"] == 100 - 8
    assert result.stats.total_consumed == 92
    assert "batched_items" not in result.stats.stages["chunks"]
    assert ", consumed 92, skipped 1," in summary_line(result)


@pytest.mark.parametrize("execution", EXECUTIONS)
def test_a_loader_fed_by_batches_consumed_the_rows_inside_them(execution: str) -> None:
    _check(Loader().run(execution=execution))


def test_an_async_loader_counts_the_rows_too() -> None:
    _check(AsyncLoader().run())


def test_a_final_stage_fed_by_items_still_counts_items() -> None:
    class Plain(mg.Pipeline):
        @mg.producer
        def rows(self):  # type: ignore[no-untyped-def]
            yield from range(10)

        @mg.consumer
        def load(self, row: int) -> None:
            pass

    result = Plain().run()
    assert result.stats.total_consumed == 10
    assert "batched_items" not in result.stats.stages["load"]


def test_the_summary_line_names_throughput_and_bottleneck() -> None:
    result = Loader().run(execution="thread")
    line = summary_line(result)
    assert f"{result.stats.throughput:,.0f} items/s" in line
    assert f"bottleneck {result.stats.bottleneck}" in line
