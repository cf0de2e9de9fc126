"""Model inference on ``ipc_fork`` workers that load the model once each.

Run it::

    minigun run examples/inference.py
    minigun run examples/inference.py -p reviews=10000 --result-file result.json

It shows the executor for CPU work with an expensive setup: ``execution="ipc_fork"``
starts ``processes`` persistent forked workers, and ``@mg.after_fork`` runs in each of
them before its first item, so each worker loads the model once and keeps it for every
item it scores (a respawned worker, after a crash, loads it again). Loading it per item
would cost the load thousands of times; loading it in the parent would work too
(children see the parent's memory), but a real model often holds threads, a GPU
context or file handles that must not cross a fork.

The "model" is a tiny pure-Python sentiment scorer: word weights built from a
vocabulary, costly enough to be worth loading once. Every scored review carries the
process id of the worker and how many times that worker loaded the model, so the
result line counts the loads from the outputs themselves.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from typing import Any

import minigun as mg

POSITIVE = ("great", "love", "excellent", "fast", "perfect", "happy", "recommend")
NEGATIVE = ("broken", "slow", "refund", "awful", "late", "disappointed", "never")
NEUTRAL = ("the", "order", "arrived", "box", "price", "colour", "size", "it", "was")

#: Loads of the model in this process (each worker is a process; 0 in the parent).
_loads_here = 0


class SentimentModel:
    """A bag-of-words scorer. Building it is the expensive part, as with a real model."""

    def __init__(self) -> None:
        global _loads_here
        _loads_here += 1
        self.loads_in_this_process = _loads_here
        rng = random.Random(42)
        # Stands in for reading weights from disk: many features, built deterministically.
        self.weights: dict[str, float] = {
            f"feature{i}": rng.uniform(-0.01, 0.01) for i in range(200_000)
        }
        self.weights.update({word: 1.0 for word in POSITIVE})
        self.weights.update({word: -1.0 for word in NEGATIVE})

    def score(self, text: str) -> float:
        return sum(self.weights.get(word, 0.0) for word in text.split())


class Inference(mg.Pipeline):
    """Score generated product reviews on three forked workers, one model load each."""

    def __init__(self, reviews: int = 2000, seed: int = 0) -> None:
        self.reviews = reviews
        self.seed = seed
        self.loads: dict[int, int] = {}  # worker pid -> loads it reported (parent side)
        self.labels = {"positive": 0, "negative": 0, "neutral": 0}

    @mg.producer
    def review_texts(self) -> Iterator[tuple[int, str]]:
        rng = random.Random(self.seed)
        vocabulary = POSITIVE + NEGATIVE + NEUTRAL * 3
        for review_id in range(self.reviews):
            yield review_id, " ".join(rng.choice(vocabulary) for _ in range(rng.randint(5, 30)))

    @mg.after_fork
    def load_model(self) -> None:
        """In each worker, before its first item: the one load that worker does."""
        self.model = SentimentModel()

    @mg.processor(execution="ipc_fork", processes=3)
    def score(self, review: tuple[int, str]) -> dict[str, Any]:
        review_id, text = review
        value = self.model.score(text)
        label = "positive" if value > 0.5 else "negative" if value < -0.5 else "neutral"
        return {
            "id": review_id,
            "label": label,
            "worker": os.getpid(),
            "loads": self.model.loads_in_this_process,
        }

    @mg.consumer
    def tally(self, scored: dict[str, Any]) -> None:
        """In the parent, on one thread: count labels and what each worker reported."""
        self.labels[scored["label"]] += 1
        self.loads[scored["worker"]] = max(self.loads.get(scored["worker"], 0), scored["loads"])

    @mg.after_run
    def report(self, result: mg.RunResult) -> None:
        stage = result.stats.stages["score"]
        print(
            f"scored {stage.processed} reviews on {stage.workers} ipc_fork workers;"
            f" model loaded {sum(self.loads.values())} times in {len(self.loads)} workers;"
            f" labels {self.labels}"
        )
