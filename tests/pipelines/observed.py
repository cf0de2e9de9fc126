"""Pipelines for the report and metrics tests: several stages, queues, dead letters.

``Shop`` has every kind of stage and two kinds of dead letter, so a report has
something in every section. ``Gated`` keeps running until a file appears, so a test
can look at the metrics written *during* a run, then let it finish.
"""

from __future__ import annotations

import os
import time

import minigun as mg


class Shop(mg.Pipeline):
    """``n`` orders: multiples of 5 dropped, of 7 (ValueError) and of 11 (KeyError)
    dead-lettered, the rest priced on 3 threads, batched by 8, saved.

    ``fail`` makes the consumer raise (exit 1), for runs that must not succeed.
    """

    queue_size = 64

    def __init__(self, n: int = 300, fail: bool = False) -> None:
        self.n = n
        self.fail = fail

    @mg.producer
    def orders(self):
        yield from range(self.n)

    @mg.processor(threads=3, on_error="dead_letter")
    def price(self, n):
        if n % 5 == 0:
            return None
        if n % 7 == 0:
            raise ValueError(f"no price for {n}")
        if n % 11 == 0:
            raise KeyError(n)
        time.sleep(0.0005)
        return n * 10

    rows = mg.batch(8)

    @mg.consumer
    def save(self, rows):
        if self.fail:
            raise RuntimeError("warehouse is read-only")
        time.sleep(0.001)

    @staticmethod
    def expected(n: int = 300) -> dict[str, int]:
        """What ``price`` does with ``n`` orders."""
        dropped = [i for i in range(n) if i % 5 == 0]
        value_errors = [i for i in range(n) if i % 5 and i % 7 == 0]
        key_errors = [i for i in range(n) if i % 5 and i % 7 and i % 11 == 0]
        return {
            "dropped": len(dropped),
            "ValueError": len(value_errors),
            "KeyError": len(key_errors),
            "processed": n - len(dropped) - len(value_errors) - len(key_errors),
        }


class Gated(mg.Pipeline):
    """Emits a few items, then waits for ``gate`` to exist before emitting the rest."""

    def __init__(self, gate: str, n: int = 50) -> None:
        self.gate = gate
        self.n = n

    @mg.producer
    def numbers(self):
        yield from range(self.n // 2)
        deadline = time.monotonic() + 120
        while not os.path.exists(self.gate):
            if time.monotonic() > deadline:
                raise RuntimeError("the test never opened the gate")
            time.sleep(0.01)
        yield from range(self.n // 2, self.n)

    @mg.processor(threads=2)
    def double(self, x):
        return 2 * x

    @mg.consumer
    def sink(self, x):
        pass
