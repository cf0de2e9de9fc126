"""Prefect 3 adapter: :func:`minigun_task` makes a Prefect task that runs a pipeline in isolation.

.. code-block:: python

    from prefect import flow
    from minigun.adapters.prefect import minigun_task
    import minigun as mg

    @minigun_task(retries=2, timeout_seconds=3600, runner_retries=1)
    class NightlySync(mg.Pipeline):          # the name now refers to a Prefect task
        ...

    sync_orders = minigun_task("etl.pipelines:SyncOrders")   # or from a target string

    @flow
    def nightly():
        NightlySync(dataset_id="2026-11-28")   # keyword arguments are pipeline params
        sync_orders()

The pipeline runs in a child process group started by :mod:`minigun.runner`, never in
the flow's process. The task returns the result JSON, logs the child's output through
Prefect's run logger, and publishes a table artifact of per-stage stats. Outcome
mapping:

- exit 0: Completed, returning the result JSON;
- exit 99 (``mg.Skip``): Completed with message ``"skipped"``, returning the result JSON;
- exit 2 and 3, and settings that make no valid run: Failed, and not retried
  whatever ``retries`` says;
- other failures: Failed (:class:`~minigun.adapters._common.PipelineRunFailed`, carrying
  the exit code); Prefect retries it per the task's ``retries``.

Cancelling the flow run, or Prefect's own ``timeout_seconds``, cancels the runner,
which stops the whole process group before the task ends.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, overload

from prefect import Task, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed

from minigun.adapters._common import (
    RUNNER_SETTINGS,
    PipelineRunFailed,
    Verdict,
    build_spec,
    outcome_summary,
    run_announced,
    stage_rows,
    verdict,
)

__all__ = ["PipelineRunFailed", "minigun_task"]


def target_of(pipeline_class: type) -> str:
    """The runner target of a class decorated with :func:`minigun_task`.

    The decorator rebinds the class's name to the Prefect task, so the child could not
    find the class under that name; the class is also kept in its module under an alias
    (the decorator runs again when the child imports the module, and sets it again).

    A class in a package module is addressed as ``package.module:alias``. A class in a
    top-level module file (a script run as ``__main__``, a flow file Prefect loaded from
    a deployment's entrypoint) is addressed by that file's path, which the child can
    import whatever its ``sys.path``.
    """
    alias = "_minigun_pipeline_" + pipeline_class.__qualname__.replace(".", "_")
    module = sys.modules.get(pipeline_class.__module__)
    if module is not None:
        setattr(module, alias, pipeline_class)
    location = pipeline_class.__module__
    if "." not in location:
        try:
            location = str(Path(inspect.getfile(pipeline_class)).resolve())
        except (TypeError, OSError):  # defined interactively: no file to point at
            pass
    return f"{location}:{alias}"


def _never_retry_final(
    user_condition: Callable[..., bool] | None,
) -> Callable[[Any, Any, Any], bool]:
    """A ``retry_condition_fn`` refusing final failures, else deferring to the user's."""

    def should_retry(task: Any, task_run: Any, state: Any) -> bool:
        # PipelineRunFailed of exit 2/3, and InvalidRunSpec, are final.
        if getattr(state.data, "final", False) is True:
            return False
        if user_condition is not None:
            return bool(user_condition(task, task_run, state))
        return True

    return should_retry


def _make_task(
    pipeline: str,
    runner_kwargs: Mapping[str, Any],
    task_kwargs: dict[str, Any],
    *,
    artifact_key: str | None,
    default_name: str,
) -> Task[..., Any]:
    def run_pipeline(**params: Any) -> Any:
        logger = get_run_logger()
        spec = build_spec(pipeline, params, **runner_kwargs)
        outcome = run_announced(spec, lambda line: logger.info("%s", line))
        _publish(outcome, pipeline, artifact_key)

        kind = verdict(outcome)
        if kind is Verdict.SUCCEEDED:
            return outcome.result
        if kind is Verdict.SKIPPED:
            return Completed(message="skipped", data=outcome.result)
        raise PipelineRunFailed(pipeline, outcome)

    run_pipeline.__doc__ = f"Run the minigun pipeline {pipeline} in an isolated process group."
    task_kwargs.setdefault("name", default_name)
    # A pipeline run is a side effect (it loads, sends, writes); Prefect must not answer
    # a second call with the same params from a cache unless asked to.
    task_kwargs.setdefault("cache_policy", NO_CACHE)
    task_kwargs["retry_condition_fn"] = _never_retry_final(task_kwargs.get("retry_condition_fn"))
    return task(**task_kwargs)(run_pipeline)


def _publish(outcome: Any, pipeline: str, key: str | None) -> None:
    rows = stage_rows(outcome.result)
    summary = outcome_summary(outcome)
    description = f"minigun `{pipeline}`: " + ", ".join(
        f"{k} {v}" for k, v in summary.items() if v is not None
    )
    if rows:
        create_table_artifact(table=rows, key=key, description=description)
    else:  # nothing ran (bad target, skip before any stage): still leave a record
        create_markdown_artifact(markdown=description, key=key, description="minigun run")


@overload
def minigun_task(__pipeline: type, /) -> Task[..., Any]: ...
@overload
def minigun_task(__pipeline: str, /, **kwargs: Any) -> Task[..., Any]: ...
@overload
def minigun_task(__pipeline: None = None, /, **kwargs: Any) -> Callable[[type], Task[..., Any]]: ...


def minigun_task(
    __pipeline: str | type | None = None, /, *, artifact_key: str | None = None, **kwargs: Any
) -> Task[..., Any] | Callable[[type], Task[..., Any]]:
    """A Prefect task that runs a minigun pipeline through the isolated runner.

    Three forms: ``@minigun_task`` and ``@minigun_task(**options)`` on a Pipeline class,
    and ``minigun_task("pkg.mod:Cls", **options)``. Calling the task with keyword
    arguments passes them to the pipeline as params.

    Options are ``prefect.task`` arguments with their usual meaning (``name``,
    ``retries``, ``retry_delay_seconds``, ``timeout_seconds``, ``tags``, ...), plus the
    runner settings ``python``, ``env``, ``cwd``, ``timeout``, ``runner_retries``,
    ``runner_retry_delay``, ``grace``, ``execution``, ``max_processes``,
    ``max_threads``, and ``artifact_key`` (key of the stage-stats table artifact; lower
    case letters, digits and dashes; default none, so one unkeyed artifact per run).
    """
    # minigun_task's own keyword arguments; every other one goes to ``prefect.task``
    runner_kwargs = {k: kwargs.pop(k) for k in RUNNER_SETTINGS if k in kwargs}

    def build(pipeline: str | type) -> Task[..., Any]:
        if isinstance(pipeline, type):
            name, target = pipeline.__name__, target_of(pipeline)
        else:
            name, target = pipeline.rpartition(":")[2] or pipeline, pipeline
        return _make_task(
            target, runner_kwargs, dict(kwargs), artifact_key=artifact_key, default_name=name
        )

    if __pipeline is None:
        return build
    return build(__pipeline)
