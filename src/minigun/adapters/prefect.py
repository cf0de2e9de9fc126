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
- exit 99 (``mg.Skip``): Completed with message ``"skipped"``; the call still returns
  the result JSON (``result["status"] == "skipped"``), as do ``.submit().result()``
  and ``return_state=True``'s ``state.result()``;
- exit 2 and 3, and settings that make no valid run: Failed, and not retried
  whatever ``retries`` says;
- other failures: Failed (:class:`~minigun.adapters._common.PipelineRunFailed`, carrying
  the exit code); Prefect retries it per the task's ``retries``.

Cancelling the flow run, or Prefect's own ``timeout_seconds``, cancels the runner,
which stops the whole process group before the task ends. Prefect's runner SIGKILLs a
cancelled flow run's process 30 s after its SIGTERM (not configurable), so the default
``grace`` is 20 s; a longer one is logged as a warning, and cancelling then cuts the
drain short. For a deadline with a full drain use ``timeout`` (the runner's) or
``timeout_seconds``, which stop the pipeline from inside the task. See
:mod:`minigun.adapters._kill_windows`.
"""

from __future__ import annotations

import inspect
import re
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, overload

from prefect import Task, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import Completed, State

from minigun.adapters._common import (
    RUNNER_SETTINGS,
    PipelineRunFailed,
    Verdict,
    build_spec,
    outcome_summary,
    relay_to,
    run_announced,
    stage_rows,
    verdict,
)
from minigun.adapters._kill_windows import PREFECT

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


class _MinigunPrefectTask(Task[..., Any]):
    """A Prefect task whose direct call returns the result JSON of a skipped run too.

    A skipped run must end Completed with the message "skipped", which a task can only
    say by returning a ``State``; Prefect hands a directly called task's raw return
    value to the caller, so the flow would get that ``State`` instead of the result
    JSON it gets from every other outcome. Futures and ``return_state=True`` already
    read the state's data.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        value = super().__call__(*args, **kwargs)
        if not kwargs.get("return_state") and isinstance(value, State):
            return value.result()
        return value


def default_artifact_key(name: str) -> str:
    """``minigun-<name>`` in the form Prefect requires of a key (lower case letters,
    digits, dashes): unkeyed artifacts are not listed by ``prefect artifact ls``."""
    slug = re.sub(r"[^a-z0-9]+", "-", re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", name).lower())
    return "minigun-" + (slug.strip("-") or "run")


def _make_task(
    pipeline: str,
    runner_kwargs: Mapping[str, Any],
    task_kwargs: dict[str, Any],
    *,
    artifact_key: str,
    default_name: str,
) -> Task[..., Any]:
    def run_pipeline(**params: Any) -> Any:
        logger = get_run_logger()
        spec = build_spec(pipeline, params, **runner_kwargs)
        PREFECT.check_grace(spec.grace, logger)
        outcome = run_announced(spec, relay_to(logger))
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
    return _MinigunPrefectTask(fn=run_pipeline, **task_kwargs)


def _publish(outcome: Any, pipeline: str, key: str) -> None:
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
    case letters, digits and dashes; default ``minigun-<task name>``, e.g.
    ``minigun-nightly-sync``, so that ``prefect artifact ls`` lists it).

    ``grace`` defaults to 20 s, inside Prefect's 30 s kill of a cancelled flow run.
    """
    # minigun_task's own keyword arguments; every other one goes to ``prefect.task``
    runner_kwargs = {k: kwargs.pop(k) for k in RUNNER_SETTINGS if k in kwargs}
    runner_kwargs.setdefault("grace", PREFECT.default_grace)

    def build(pipeline: str | type) -> Task[..., Any]:
        if isinstance(pipeline, type):
            name, target = pipeline.__name__, target_of(pipeline)
        else:
            name, target = pipeline.rpartition(":")[2] or pipeline, pipeline
        task_kwargs = dict(kwargs)
        key = artifact_key or default_artifact_key(task_kwargs.get("name") or name)
        return _make_task(target, runner_kwargs, task_kwargs, artifact_key=key, default_name=name)

    if __pipeline is None:
        return build
    return build(__pipeline)
