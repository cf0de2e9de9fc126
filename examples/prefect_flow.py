"""Prefect 3 flow: minigun pipelines as Prefect tasks, in both forms of minigun_task.

- ``minigun_task("path/or.module:Class", ...)`` turns a target into a task;
- ``@minigun_task(...)`` on a Pipeline class turns the class into a task.

Each task runs its pipeline in a child process group (never in the flow's process),
returns the result JSON and publishes a table artifact of per-stage stats. Run it with
``python examples/prefect_flow.py`` (see the README, section "Orchestrators").
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

import minigun as mg
from minigun.adapters.prefect import minigun_task

ETL = f"{Path(__file__).resolve().with_name('etl.py')}:NightlyEtl"

nightly_etl = minigun_task(
    ETL,
    name="nightly-etl",
    retries=2,  # Prefect's retries of the task (never for exit 2/3)
    retry_delay_seconds=30,
    runner_retries=1,  # the runner's retries inside one task run
    timeout=600,
    artifact_key="nightly-etl-stats",
)


@minigun_task(retries=1, artifact_key="word-lengths-stats")
class WordLengths(mg.Pipeline):
    """A pipeline turned into a Prefect task: ``WordLengths(text=...)`` runs it."""

    def __init__(self, text: str = "the quick brown fox") -> None:
        self.text = text

    @mg.producer
    def words(self):
        yield from self.text.split()

    @mg.processor(threads=4)
    def measure(self, word):
        return len(word)

    @mg.consumer
    def show(self, length):
        print("length", length)


@flow(name="minigun-example", log_prints=True)
def example_flow(rows: int = 5000) -> dict:
    etl = nightly_etl(rows=rows)
    words = WordLengths(text="pipelines run as isolated prefect tasks")
    loaded = etl["stats"]["stages"]["transform"]["items_out"]  # rows kept and loaded
    print(f"etl loaded {loaded} rows; word lengths: {words['status']}")
    return etl


if __name__ == "__main__":
    example_flow()
