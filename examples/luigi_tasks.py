"""Luigi tasks: the example ETL as a MinigunTask, and a task that depends on it.

``NightlyEtl`` runs examples/etl.py in a child process group (never in the Luigi
worker); its Luigi parameters become pipeline params and its output is the result JSON
under ``minigun-results/``. Run it with
``python examples/luigi_tasks.py Report --rows 2000 --local-scheduler``
(see the README, section "Orchestrators").
"""

from __future__ import annotations

import json
from pathlib import Path

import luigi

from minigun.adapters.luigi import MinigunTask


class NightlyEtl(MinigunTask):
    pipeline = f"{Path(__file__).resolve().with_name('etl.py')}:NightlyEtl"
    timeout = 600
    runner_retries = 1

    rows = luigi.IntParameter(default=5000)  # -> the pipeline's `rows` param
    seed = luigi.IntParameter(default=0)


class Report(luigi.Task):
    rows = luigi.IntParameter(default=5000)

    def requires(self) -> NightlyEtl:
        return NightlyEtl(rows=self.rows)

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget(f"minigun-results/report-{self.rows}.txt")

    def run(self) -> None:
        with self.input().open() as f:
            result = json.load(f)
        with self.output().open("w") as out:
            loaded = result["stats"]["stages"]["transform"]["items_out"]  # rows kept
            out.write(f"{result['status']}: {loaded} rows loaded\n")


if __name__ == "__main__":
    luigi.run()
