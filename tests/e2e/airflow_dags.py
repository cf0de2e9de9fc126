"""The DAGs of the Airflow e2e scenarios, rendered into the temporary DAGs folder.

``render(workdir)`` returns the DAG file's text: every scenario's pipeline records its
process group in ``<workdir>/<dag_id>.pgid``.
"""

from __future__ import annotations

from pathlib import Path

PIPELINES = Path(__file__).with_name("pipelines.py")

#: Seconds of Airflow's ``execution_timeout`` in the timeout scenario.
EXECUTION_TIMEOUT = 15

TEMPLATE = """
from datetime import datetime, timedelta

from airflow.sdk import DAG

from minigun.adapters.airflow import MinigunOperator

PIPELINES = {pipelines!r}
WORKDIR = {workdir!r}


def dag(dag_id):
    return DAG(dag_id, schedule=None, start_date=datetime(2026, 1, 1), catchup=False)


def pgid(name):
    return f"{{WORKDIR}}/{{name}}.pgid"


with dag("mg_basic"):
    MinigunOperator(task_id="success", pipeline=f"{{PIPELINES}}:Succeeds",
                    pipeline_params={{"pgid_file": pgid("mg_basic.success")}})
    MinigunOperator(task_id="skip", pipeline=f"{{PIPELINES}}:Skips",
                    pipeline_params={{"pgid_file": pgid("mg_basic.skip")}})
    MinigunOperator(task_id="failure", pipeline=f"{{PIPELINES}}:Fails", retries=0,
                    pipeline_params={{"pgid_file": pgid("mg_basic.failure")}})

with dag("mg_mark_failed_default_grace"):
    MinigunOperator(task_id="drain", pipeline=f"{{PIPELINES}}:Drains", retries=0,
                    pipeline_params={{"pgid_file": pgid("mg_mark_failed_default_grace"),
                                     "item_seconds": 25}})

with dag("mg_mark_failed_grace30"):
    MinigunOperator(task_id="drain", pipeline=f"{{PIPELINES}}:Drains", retries=0, grace=30,
                    pipeline_params={{"pgid_file": pgid("mg_mark_failed_grace30"),
                                     "item_seconds": 25}})

with dag("mg_execution_timeout"):
    MinigunOperator(task_id="drain", pipeline=f"{{PIPELINES}}:Drains", retries=0,
                    execution_timeout=timedelta(seconds={timeout}),
                    pipeline_params={{"pgid_file": pgid("mg_execution_timeout"),
                                     "item_seconds": 25}})

with dag("mg_kill9"):
    MinigunOperator(task_id="drain", pipeline=f"{{PIPELINES}}:Drains", retries=0,
                    pipeline_params={{"pgid_file": pgid("mg_kill9"), "item_seconds": 25}})
"""


def render(workdir: Path) -> str:
    return TEMPLATE.format(
        pipelines=str(PIPELINES), workdir=str(workdir), timeout=EXECUTION_TIMEOUT
    )
