"""Dead letters: rows that fail are set aside in a file, fixed, and replayed.

Run it, look at what failed, then replay the file once the cause is fixed::

    minigun run examples/dead_letters.py
    cat minigun-dead-letters/*.jsonl          # one JSON record per failed row
    minigun replay minigun-dead-letters/<file>.jsonl examples/dead_letters.py -p strict=false

It shows ``on_error="dead_letter"``: a row that ``parse`` cannot read does not stop
the run; it is recorded (stage, item, error, traceback, attempts, time) in a JSON Lines
file under ``./minigun-dead-letters`` (``--dead-letter-dir`` or
``MINIGUN_DEAD_LETTER_DIR`` choose another place), the run succeeds (exit 0) and the
summary names the file. ``max_dead_letters`` is a budget: more failures than that make
the run partial (exit 3), because then the problem is the job, not a few rows.

The "bug": the payment export writes some amounts with a decimal comma (``"12,50"``),
which ``parse`` refuses while ``strict`` is true. The fix is the param
``strict=false``. ``minigun replay`` feeds the recorded rows back into the stage that
failed them (``parse``), then on to ``load``; the producer does not run again.
Items are stored as tagged JSON, never pickled, and replay runs no code from the file
(see SECURITY.md): the code that runs is the pipeline's, with the params you give.
Rows go to ``payments.sqlite`` (``db``), keyed by id, so replaying adds exactly the
rows that were missing.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation

import minigun as mg


class Payments(mg.Pipeline):
    """Load a payment export; rows whose amount does not parse become dead letters."""

    #: More dead letters than this and the run is partial (exit 3): a broken export.
    max_dead_letters = 50

    def __init__(self, rows: int = 200, strict: bool = True, db: str = "payments.sqlite") -> None:
        self.rows = rows
        self.strict = strict
        self.db_path = db

    @mg.before_run
    def connect(self) -> None:
        """Runs for ``minigun replay`` too: replay is a run with seeded items."""
        self.db = sqlite3.connect(self.db_path, check_same_thread=False)
        self.db.execute("CREATE TABLE IF NOT EXISTS payments (id INTEGER PRIMARY KEY, cents INT)")

    @mg.producer
    def export(self) -> Iterator[dict[str, str]]:
        """The export: every 25th row has its amount written with a decimal comma."""
        for payment_id in range(self.rows):
            euros, cents = divmod(payment_id * 137 % 100_000, 100)
            sep = "," if payment_id % 25 == 7 else "."
            yield {"id": str(payment_id), "amount": f"{euros}{sep}{cents:02d}"}

    @mg.processor(on_error="dead_letter")
    def parse(self, row: dict[str, str]) -> tuple[int, int]:
        """``(id, cents)``; a comma amount raises while ``strict``, and is dead-lettered."""
        text = row["amount"] if self.strict else row["amount"].replace(",", ".")
        try:
            amount = Decimal(text)
        except InvalidOperation:
            raise ValueError(f"amount {row['amount']!r} of payment {row['id']} is not a number")
        return int(row["id"]), int(amount * 100)

    @mg.consumer
    def load(self, row: tuple[int, int]) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO payments VALUES (?, ?)", row)

    @mg.after_run
    def report(self, result: mg.RunResult) -> None:
        (total,) = self.db.execute("SELECT COUNT(*) FROM payments").fetchone()
        self.db.close()
        loaded = result.stats.stages["load"].processed
        line = f"loaded {loaded} payments ({self.db_path} holds {total})"
        if result.dead_letters:
            line += f"; {len(result.dead_letters)} dead-lettered to {result.dead_letter_file}"
            here = os.path.relpath(__file__)  # this file, as short as it can be said
            here = __file__ if here.startswith("..") else here
            line += f"; once fixed: minigun replay {result.dead_letter_file} {here} -p strict=false"
        print(line)
