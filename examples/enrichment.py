"""Fan-out to three enrichers, fan-in to a merge by key, load into SQLite.

Run it::

    minigun run examples/enrichment.py
    minigun run examples/enrichment.py -p orders=5000 -p db=/tmp/enriched.sqlite

It shows the graph shape of most enrichment jobs: every order goes to three
independent lookups at once (``to=[...]`` on the producer: each downstream stage gets
every item), and one ``merge`` stage takes what all three send back (``from_=[...]``).
The lookups finish in any order, so ``merge`` keys the partial records by order id and
emits an order only once its three parts are in. It runs on one thread (the default)
so its dictionary needs no lock; whatever is still incomplete at the end is reported,
not silently lost. Merged orders are written to SQLite in batches
(``enrichment.sqlite`` in the current directory unless ``db`` names another), upserted
by id, so a second run loads nothing twice.

The three lookups stand in for a geo-IP service, an exchange-rate service and a
fraud score; each sleeps a little to behave like I/O and runs on its own threads.
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import minigun as mg

#: The parts ``merge`` waits for, one per enricher.
PARTS = ("geo", "fx", "risk")
COUNTRY_BY_PREFIX = {"10": "FR", "20": "DE", "30": "JP", "40": "BR", "50": "KE"}
EUR_PER_UNIT = {"EUR": 1.0, "USD": 0.92, "JPY": 0.0062, "BRL": 0.17}

Order = dict[str, Any]
Part = tuple[int, str, dict[str, Any]]


class Enrichment(mg.Pipeline):
    """Generate orders, enrich each three ways in parallel, merge by id, load."""

    def __init__(self, orders: int = 1000, db: str = "enrichment.sqlite", seed: int = 0) -> None:
        self.orders = orders
        self.db_path = db
        self.seed = seed
        #: order id -> the parts received so far (only ``merge`` touches it).
        self.partial: dict[int, dict[str, dict[str, Any]]] = {}

    @mg.before_run
    def connect(self) -> None:
        self.db = sqlite3.connect(self.db_path, check_same_thread=False)
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS orders (id INTEGER PRIMARY KEY, ip TEXT,"
            " country TEXT, amount_eur REAL, risk REAL)"
        )

    @mg.producer(to=list(PARTS))
    def extract(self) -> Iterator[Order]:
        """Orders as they arrive from the shop; every one goes to all three enrichers."""
        rng = random.Random(self.seed)
        for order_id in range(self.orders):
            yield {
                "id": order_id,
                "ip": f"{rng.choice(list(COUNTRY_BY_PREFIX))}.{rng.randint(0, 255)}.0.1",
                "amount": rng.randint(100, 99_999) / 100,
                "currency": rng.choice(list(EUR_PER_UNIT)),
            }

    @mg.processor(threads=4)
    def geo(self, order: Order) -> Part:
        time.sleep(0.001)  # a geo-IP lookup
        return (
            order["id"],
            "geo",
            {"ip": order["ip"], "country": COUNTRY_BY_PREFIX[order["ip"][:2]]},
        )

    @mg.processor(threads=4)
    def fx(self, order: Order) -> Part:
        time.sleep(0.001)  # an exchange-rate service
        eur = round(order["amount"] * EUR_PER_UNIT[order["currency"]], 2)
        return order["id"], "fx", {"amount_eur": eur}

    @mg.processor(threads=4)
    def risk(self, order: Order) -> Part:
        time.sleep(0.001)  # a fraud-scoring model behind an API
        return order["id"], "risk", {"risk": round((order["id"] * 7919 % 1000) / 1000, 3)}

    @mg.processor(from_=list(PARTS))
    def merge(self, part: Part, out: mg.Out) -> None:
        """Hold each order's parts until all three are in, then emit the merged row.

        The ``out`` form: a part that completes nothing emits nothing and still counts
        as processed (a returned None would count it as dropped).
        """
        order_id, name, fields = part
        parts = self.partial.setdefault(order_id, {})
        parts[name] = fields
        if len(parts) < len(PARTS):
            return
        del self.partial[order_id]
        row: dict[str, Any] = {"id": order_id}
        for fields_of_part in parts.values():
            row.update(fields_of_part)
        out.emit((row["id"], row["ip"], row["country"], row["amount_eur"], row["risk"]))

    rows = mg.batch(200, timeout=1.0)

    @mg.consumer
    def load(self, rows: list[tuple[Any, ...]]) -> None:
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO orders VALUES (?, ?, ?, ?, ?)", rows)

    @mg.after_run
    def report(self, result: mg.RunResult) -> None:
        merged = result.stats.stages["merge"].items_out
        (total,) = self.db.execute("SELECT COUNT(*) FROM orders").fetchone()
        self.db.close()
        print(
            f"merged {merged} of {self.orders} orders from {len(PARTS)} enrichers"
            f" ({len(self.partial)} incomplete); {self.db_path} holds {total} orders"
        )
