"""Airflow 3 DAG: the example ETL (examples/etl.py) as an isolated Airflow task.

The pipeline runs in a child process group started by minigun's runner, never in the
Airflow worker; the task's XCom ``return_value`` is the run's result JSON. See
the README, section "Orchestrators" for how to run it (``airflow dags test minigun_example_etl``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import DAG

from minigun.adapters.airflow import MinigunOperator

# resolve(): the DAG file may be a symlink in the DAGs folder; etl.py sits beside it.
ETL = f"{Path(__file__).resolve().with_name('etl.py')}:NightlyEtl"

with DAG(
    dag_id="minigun_example_etl",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    render_template_as_native_obj=True,  # "{{ ... }}" params render to ints, not str
    tags=["minigun", "example"],
):
    MinigunOperator(
        task_id="nightly_etl",
        pipeline=ETL,
        pipeline_params={"rows": 5000, "seed": "{{ logical_date.day }}"},
        timeout=600,  # the runner stops the whole process group after 10 minutes
        runner_retries=1,  # one quick retry inside the attempt (exit 1, 75, 124, 137)
        retries=2,  # Airflow's own retries of the task, as usual
        retry_delay=timedelta(minutes=5),
        execution_timeout=timedelta(minutes=30),
    )
