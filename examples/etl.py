"""A small ETL job: extract rows, clean and enrich them on threads, load them in batches.

Run it as an isolated task (what an orchestrator does)::

    minigun run examples/etl.py
    minigun run examples/etl.py -p rows=20000 -p db=/tmp/orders.sqlite --result-file result.json

or look at its graph with ``minigun inspect examples/etl.py``. Everything it needs is
in the standard library: the "source" is generated, the "warehouse" is a SQLite file
(``etl.sqlite`` in the current directory unless ``db`` names another; ``:memory:``
keeps it in memory). Rows are upserted by id, so running it twice loads nothing twice.
"""

from __future__ import annotations

import random
import sqlite3
import time

import minigun as mg

COUNTRIES = {"fr": "France", "de": "Germany", "jp": "Japan", "br": "Brazil", "ke": "Kenya"}


class NightlyEtl(mg.Pipeline):
    def __init__(self, rows: int = 5000, db: str = "etl.sqlite", seed: int = 0) -> None:
        self.rows = rows
        self.db_path = db
        self.seed = seed

    @mg.before_run
    def connect(self) -> None:
        self.db = sqlite3.connect(self.db_path, check_same_thread=False)
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS orders"
            " (id INTEGER PRIMARY KEY, country TEXT, amount_eur REAL, loaded_at REAL)"
        )

    @mg.producer
    def extract(self):
        rng = random.Random(self.seed)
        for order_id in range(self.rows):
            code = rng.choice([*COUNTRIES, "??"])  # some rows are dirty
            yield {"id": order_id, "country": code, "amount_cents": rng.randint(100, 99_999)}

    @mg.processor(threads=8)
    def transform(self, row):
        if row["country"] not in COUNTRIES:
            return None  # dropped: counted in the stats, not loaded
        time.sleep(0.0005)  # stands in for an I/O-bound lookup (an API, a cache)
        return (row["id"], COUNTRIES[row["country"]], row["amount_cents"] / 100, time.time())

    batch = mg.batch(200, timeout=1.0)

    @mg.consumer
    def load(self, rows):
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO orders VALUES (?, ?, ?, ?)", rows)

    @mg.after_run
    def report(self, result) -> None:
        (loaded,) = self.db.execute("SELECT COUNT(*) FROM orders").fetchone()
        print(f"loaded {loaded} orders into {self.db_path}")
        self.db.close()
