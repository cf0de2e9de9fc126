"""Dagster definitions: the example ETL as an op in a job, and as an asset.

The ``minigun`` resource holds the runner settings; each op or asset runs its pipeline
in a child process group (never in the Dagster run worker) and reports items,
throughput, duration and a per-stage table as output metadata. Load it with
``dagster dev -f examples/dagster_defs.py`` or run the job with
``dagster job execute -f examples/dagster_defs.py -j nightly_etl_job``
(see the README, section "Orchestrators").
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from minigun.adapters.dagster import MinigunResource, minigun_asset, minigun_op

ETL = f"{Path(__file__).resolve().with_name('etl.py')}:NightlyEtl"

nightly_etl = minigun_op(
    name="nightly_etl",
    pipeline=ETL,
    params={"rows": 5000},  # the op's run config {"params": {...}} can override these
    retry_policy=dg.RetryPolicy(max_retries=2, delay=30),  # never applied to exit 2/3
)


@dg.op
def report(result: dict) -> None:
    loaded = result["stats"]["stages"]["transform"]["items_out"]  # rows kept and loaded
    dg.get_dagster_logger().info(f"ETL loaded {loaded} rows")


@dg.job
def nightly_etl_job() -> None:
    report(nightly_etl())


orders_table = minigun_asset(name="orders_table", pipeline=ETL, params={"rows": 1000})

defs = dg.Definitions(
    jobs=[nightly_etl_job],
    assets=[orders_table],
    resources={"minigun": MinigunResource(timeout=600, runner_retries=1, grace=30)},
)
