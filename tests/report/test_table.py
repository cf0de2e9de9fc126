"""The one per-stage table (``minigun.report.table``), on results of real runs."""

from __future__ import annotations

import json
import time
from typing import Any

import minigun as mg
from minigun.adapters._common import stage_rows
from minigun.report.table import (
    STAGE_COLUMNS,
    dead_letter_breakdown,
    error_type,
    format_cell,
    format_seconds,
    stage_table,
)

KEYS = [c.key for c in STAGE_COLUMNS]


class Shop(mg.Pipeline):
    """Drops multiples of 5, dead-letters two kinds of error, batches the rest."""

    queue_size = 64

    @mg.producer
    def orders(self):
        yield from range(100)

    @mg.processor(threads=3, on_error="dead_letter")
    def price(self, n):
        if n % 5 == 0:
            return None
        if n % 7 == 0:
            raise ValueError(f"no price for {n}")
        if n % 11 == 0:
            raise KeyError(n)
        time.sleep(0.0002)
        return n * 10

    rows = mg.batch(8)

    @mg.consumer
    def save(self, rows):
        pass


def shop_result() -> dict[str, Any]:
    return json.loads(json.dumps(Shop().run().to_dict()))


def test_one_row_per_stage_with_every_column_in_order() -> None:
    result = shop_result()
    rows = stage_table(result)
    assert [row["stage"] for row in rows] == ["orders", "price", "rows", "save"]
    assert all(list(row) == KEYS for row in rows)
    orders, price, batch, save = rows
    assert [r["kind"] for r in rows] == ["producer", "processor", "batch", "consumer"]
    assert (price["executor"], price["workers"]) == ("thread", 3)
    assert orders["items_out"] == 100 and price["items_in"] == 100
    assert price["dropped"] == 20  # 0, 5, 10, ... 95
    dead = [n for n in range(100) if n % 5 and (n % 7 == 0 or n % 11 == 0)]
    assert price["dead_letters"] == len(dead) == result["dead_letter_count"]
    assert price["processed"] == 100 - 20 - len(dead) == batch["items_in"]
    # a producer has no queue; a stage does, and the fill is computed from it
    assert orders["queued"] is None and orders["queue_fill"] is None
    assert price["queue_capacity"] == 64 and price["queued"] == 0 and price["queue_fill"] == 0
    assert 0 < price["latency_p50"] <= price["latency_p95"] <= price["latency_p99"]
    assert isinstance(save["items_in"], int) and isinstance(price["throughput"], float)


def test_adapters_rows_are_the_same_table() -> None:
    result = shop_result()
    assert stage_rows(result) == stage_table(result)
    assert stage_rows(None) == [] and stage_rows({"status": "failed"}) == []


def test_a_live_snapshot_gives_the_same_columns() -> None:
    handle = Shop().run(background=True)
    handle.wait()
    rows = stage_table(handle.snapshot())  # a snapshot is the stats object itself
    assert [row["stage"] for row in rows] == ["orders", "price", "rows", "save"]
    assert all(list(row) == KEYS for row in rows)


def test_malformed_figures_become_no_figure_not_an_error() -> None:
    rows = stage_table({"stats": {"stages": {"s": {"items_in": "many", "workers": True}, "x": 3}}})
    assert len(rows) == 1 and rows[0]["stage"] == "s"
    assert rows[0]["items_in"] is None and rows[0]["workers"] is None


def test_dead_letters_by_stage_and_error_type() -> None:
    result = shop_result()
    rows = dead_letter_breakdown(result["dead_letters"])
    counts = {(r["stage"], r["error_type"]): r["count"] for r in rows}
    sevens = [n for n in range(100) if n % 5 and n % 7 == 0]
    elevens = [n for n in range(100) if n % 5 and n % 7 and n % 11 == 0]
    assert counts == {("price", "ValueError"): len(sevens), ("price", "KeyError"): len(elevens)}
    assert rows[0]["error_type"] == "ValueError"  # most frequent first
    assert rows[0]["example"].startswith("no price for ")


def test_error_type_of_odd_texts() -> None:
    assert error_type("ValueError: odd 3") == "ValueError"
    assert error_type("minigun.RemoteError: boom") == "minigun.RemoteError"
    assert error_type("something broke") == "(unknown)"
    assert error_type(None) == "(unknown)"


def test_cells_for_people() -> None:
    assert format_cell("items_in", 12345) == "12,345"
    assert format_cell("utilisation", 0.571) == "57%"
    assert format_cell("throughput", 5148.77) == "5,148.8"
    assert format_cell("queued", None) == "-"
    assert format_seconds(6.4e-07) == "640ns"
    assert format_seconds(0.0125) == "12.5ms"
    assert format_seconds(245) == "4m05s"
    assert format_seconds(3725) == "1h02m05s"
