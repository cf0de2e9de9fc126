"""Airflow 3 adapter: :class:`MinigunOperator` runs a pipeline as an isolated Airflow task.

.. code-block:: python

    from airflow.sdk import DAG
    from minigun.adapters.airflow import MinigunOperator

    with DAG("nightly_sync", schedule="@daily"):
        MinigunOperator(
            task_id="sync",
            pipeline="etl.pipelines:NightlySync",
            pipeline_params={"dataset_id": "{{ ds }}"},
            timeout=3600,
            retries=2,              # Airflow's own retries of the whole task
            runner_retries=1,       # the runner's retries inside one task attempt
        )

The pipeline runs in a child process group started by :mod:`minigun.runner`, never in
the Airflow worker. Outcome mapping:

- exit 0: the task succeeds; its return value (XCom ``return_value``) is the result JSON;
- exit 99 (``mg.Skip``): ``AirflowSkipException``;
- exit 2 (bad target, params or definition) and 3 (partial), and settings that
  make no valid run (e.g. params that are not JSON): ``AirflowFailException``, which
  Airflow does not retry;
- any other failure: ``AirflowException``; Airflow retries it per the task's ``retries``.

``@task.minigun`` (:func:`minigun_task`, registered by minigun's Airflow provider) is
the TaskFlow form: the decorated function returns the pipeline params.

On failure and skip the result JSON (when the child wrote one) is pushed as the XCom
``minigun_result``. Whenever the run has stage stats, the per-stage table (the rows
``minigun report``, the Prefect artifact and the Dagster metadata show:
:func:`minigun.adapters._common.stage_rows`) is pushed as the XCom ``minigun_stages``.
``on_kill`` (Airflow's kill signal and ``execution_timeout``) cancels the runner,
which stops the whole process group, so nothing outlives the task.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.bases.decorator import (
    DecoratedOperator,
    TaskDecorator,
    determine_kwargs,
    task_decorator_factory,
)
from airflow.sdk.definitions.context import context_merge

from minigun.adapters._common import (
    InvalidRunSpec,
    Verdict,
    error_text,
    failure_message,
    relay_to,
    run_announced,
    spec_from_settings,
    stage_rows,
    verdict,
)
from minigun.adapters._kill_windows import AIRFLOW
from minigun.runner import RunSpec

# Airflow >= 3.1 has the task-facing exceptions in the SDK; 3.0 only in airflow.exceptions.
_exceptions: Any = importlib.import_module("airflow.sdk.exceptions")
if not hasattr(_exceptions, "AirflowSkipException"):  # pragma: no cover - Airflow 3.0
    _exceptions = importlib.import_module("airflow.exceptions")
AirflowException = _exceptions.AirflowException
AirflowFailException = _exceptions.AirflowFailException
AirflowSkipException = _exceptions.AirflowSkipException

__all__ = ["MinigunOperator", "minigun_task"]


class MinigunOperator(BaseOperator):
    """Run a minigun pipeline in an isolated child process group as one Airflow task.

    :param pipeline: ``"package.module:ClassName"`` or ``"path/to/file.py:ClassName"``.
        Templated.
    :param pipeline_params: keyword arguments for the pipeline class (sent as JSON).
        Templated.
    :param python: interpreter for the pipeline (another virtualenv); default: Airflow's.
    :param env: environment variables for the pipeline process. Templated.
    :param cwd: working directory of the pipeline process.
    :param timeout: seconds per runner attempt, then the process group is stopped
        (exit 124). Airflow's ``execution_timeout`` (the whole task) works as well.
    :param runner_retries: the runner's retries inside one task attempt (exit 1, 75,
        124, 137), with exponential backoff from ``runner_retry_delay`` seconds.
    :param grace: seconds a stopped pipeline gets to drain before SIGKILL. The default
        (3 s) is short on purpose: when Airflow kills a task (marked failed or cleared
        in the UI, lost heartbeat) its supervisor sends SIGTERM and SIGKILLs the task
        process 5 seconds later, a delay Airflow does not let you change. A grace that
        does not fit that window with margin is logged as a warning: such a kill then
        ends the pipeline's group at once, cutting its drain short. For a longer drain
        stop the pipeline from inside the task instead: ``timeout`` (the runner's) or
        Airflow's ``execution_timeout`` stop it with the whole grace, as no SIGKILL
        follows them. See :mod:`minigun.adapters._kill_windows`.
    :param execution: run override of every stage's strategy (``"inline"``,
        ``"thread"``, ``"cow_fork"``, ...).
    :param max_processes: run override of the pipeline's ``max_processes``.
    :param max_threads: run override of the pipeline's ``max_threads``.

    Other keyword arguments go to :class:`airflow.sdk.BaseOperator` with their usual
    meaning (``retries`` is Airflow's retry count of the whole task).
    """

    template_fields: Sequence[str] = ("pipeline", "pipeline_params", "env")
    template_fields_renderers = {"pipeline_params": "json", "env": "json"}
    ui_color = "#f4d35e"

    def __init__(
        self,
        *,
        pipeline: str,
        pipeline_params: Mapping[str, Any] | None = None,
        python: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout: float | None = None,
        runner_retries: int = 0,
        runner_retry_delay: float = 1.0,
        grace: float = AIRFLOW.default_grace,
        execution: str | None = None,
        max_processes: int | None = None,
        max_threads: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.pipeline = pipeline
        self.pipeline_params = dict(pipeline_params or {})
        self.python = python
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.timeout = timeout
        self.runner_retries = runner_retries
        self.runner_retry_delay = runner_retry_delay
        self.grace = grace
        self.execution = execution
        self.max_processes = max_processes
        self.max_threads = max_threads
        self._cancel_event: threading.Event | None = None

    def execute(self, context: Any) -> dict[str, Any] | None:
        try:
            spec = self._spec()
        except InvalidRunSpec as exc:  # a configuration error: retrying cannot help
            raise AirflowFailException(str(exc)) from exc
        AIRFLOW.check_grace(self.grace, self.log)
        self._cancel_event = threading.Event()
        outcome = run_announced(spec, self._relay, cancel_event=self._cancel_event)

        rows = stage_rows(outcome.result)
        if rows:
            self._push(context, "minigun_stages", rows)
        kind = verdict(outcome)
        if kind is Verdict.SUCCEEDED:
            return outcome.result
        if outcome.result is not None:
            self._push(context, "minigun_result", outcome.result)
        if kind is Verdict.SKIPPED:
            reason = error_text(outcome.result) or "mg.Skip"
            raise AirflowSkipException(f"minigun pipeline {self.pipeline} skipped: {reason}")
        message = failure_message(self.pipeline, outcome)
        if kind is Verdict.FAILED_FINAL:
            raise AirflowFailException(message)
        raise AirflowException(message)

    def _spec(self) -> RunSpec:
        return spec_from_settings(self.pipeline, self.pipeline_params, self)

    def on_kill(self) -> None:
        """Cancel the runner: SIGTERM to the pipeline's process group, then SIGKILL."""
        if self._cancel_event is not None:
            self.log.info("minigun: task killed, stopping pipeline %s", self.pipeline)
            self._cancel_event.set()

    def _relay(self, line: str) -> None:
        relay_to(self.log)(line)

    def _push(self, context: Any, key: str, value: Any) -> None:
        try:
            context["ti"].xcom_push(key=key, value=value)
        except Exception:  # the outcome being reported matters more than this XCom
            self.log.warning("minigun: could not push the XCom %s", key, exc_info=True)


class _MinigunDecoratedOperator(DecoratedOperator, MinigunOperator):
    """``@task.minigun``: the decorated function returns the pipeline params."""

    template_fields: Sequence[str] = (
        *DecoratedOperator.template_fields,
        *MinigunOperator.template_fields,
    )
    custom_operator_name = "@task.minigun"

    def __init__(
        self,
        *,
        python_callable: Callable[..., Any],
        op_args: Collection[Any] | None = None,
        op_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            python_callable=python_callable, op_args=op_args, op_kwargs=op_kwargs, **kwargs
        )

    def execute(self, context: Any) -> dict[str, Any] | None:
        context_merge(context, self.op_kwargs)
        kwargs = determine_kwargs(self.python_callable, self.op_args, context)
        params = self.python_callable(*self.op_args, **kwargs)
        if params is not None:
            if not isinstance(params, Mapping):
                raise TypeError(
                    f"@task.minigun function must return the pipeline params as a dict "
                    f"(or None), got {type(params).__name__}"
                )
            self.pipeline_params = {**self.pipeline_params, **params}
        return MinigunOperator.execute(self, context)


def minigun_task(python_callable: Callable[..., Any] | None = None, **kwargs: Any) -> TaskDecorator:
    """TaskFlow form of :class:`MinigunOperator`, registered as ``@task.minigun``.

    The decorated function runs in the task (so its arguments may be upstream
    results) and returns the pipeline params; ``pipeline`` and the other operator
    arguments go to the decorator::

        @task.minigun(pipeline="etl.pipelines:NightlySync", timeout=3600)
        def nightly_sync(dataset_id):
            return {"dataset_id": dataset_id}
    """
    return task_decorator_factory(
        python_callable=python_callable,
        decorated_operator_class=_MinigunDecoratedOperator,
        **kwargs,
    )
