"""Definitions loaded by ``dagster dev -f dagster_defs.py`` in the e2e env.

Each job ``<name>`` runs one minigun op ``<name>_op`` (op names are unique in a code
location); its params (``pgid_file``, ...) come from run config.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from minigun.adapters.dagster import MinigunResource, minigun_op

PIPELINES = Path(__file__).with_name("pipelines.py")


def _job(name: str, pipeline: str) -> dg.JobDefinition:
    op = minigun_op(name=f"{name}_op", pipeline=f"{PIPELINES}:{pipeline}")

    @dg.job(name=name)
    def job() -> None:
        op()

    return job


defs = dg.Definitions(
    jobs=[
        _job("mg_success", "Succeeds"),
        _job("mg_skip", "Skips"),
        _job("mg_failure", "Fails"),
        _job("mg_drain", "Drains"),
    ],
    resources={"minigun": MinigunResource()},
)
