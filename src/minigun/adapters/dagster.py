"""Dagster adapter: :class:`MinigunResource`, :func:`minigun_op`, :func:`minigun_asset`.

.. code-block:: python

    import dagster as dg
    from minigun.adapters.dagster import MinigunResource, minigun_op

    sync = minigun_op(name="nightly_sync", pipeline="etl.pipelines:NightlySync",
                      params={"dataset_id": "demo"})

    @dg.job
    def nightly():
        sync()

    defs = dg.Definitions(jobs=[nightly],
                          resources={"minigun": MinigunResource(timeout=3600, runner_retries=1)})

The resource (key ``minigun``) holds the runner settings; the pipeline runs in a child
process group started by :mod:`minigun.runner`, never in the Dagster run worker. The op
logs the child's output to ``context.log`` and yields an ``Output`` (name ``result``)
whose value is the result JSON, with metadata: items, throughput, duration, attempts
and a per-stage table. Outcome mapping:

- exit 0: the output;
- exit 99 (``mg.Skip``): no output, so downstream ops are skipped;
- exit 2 and 3: ``Failure(allow_retries=False)``, never retried by a ``RetryPolicy``;
- exit 75 (``mg.TransientError``, after the runner's retries): ``RetryRequested``;
- other failures: ``Failure`` with the exit code and the log tail in its metadata
  (retried if the op has a ``RetryPolicy``).

Run termination (Dagster interrupts the run worker) cancels the runner, which stops
the whole process group before the step ends. Dagster delivers it as an interrupt
raised in the op (the step process sends itself SIGINT) and never SIGKILLs the step, so
any ``grace`` fits; the run stays CANCELING while the pipeline drains. See
:mod:`minigun.adapters._kill_windows`.
"""

# No ``from __future__ import annotations`` here: Dagster reads the op functions'
# annotations at definition time and rejects string annotations of ``context``.
import typing
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import dagster as dg

from minigun.adapters._common import (
    STAGE_COLUMNS,
    InvalidRunSpec,
    RunnerSettings,
    Verdict,
    failure_message,
    log_tail,
    outcome_summary,
    relay_to,
    run_announced,
    spec_from_settings,
    stage_rows,
    verdict,
)
from minigun.adapters._kill_windows import DAGSTER
from minigun.runner import RunOutcome, RunSpec

__all__ = ["MinigunResource", "minigun_asset", "minigun_op"]

RESOURCE_KEY = "minigun"


def _runner_config() -> type:
    """A ``ConfigurableResource`` whose config fields are :class:`RunnerSettings`'.

    The settings are declared once, in :mod:`minigun.adapters._common`; pydantic takes
    fields only from annotations in a model's own class body, so the body is built here
    from those annotations and defaults, as a ``class`` statement would build it.
    """
    hints = typing.get_type_hints(RunnerSettings)
    namespace: dict[str, Any] = {name: getattr(RunnerSettings, name) for name in hints}
    namespace["__annotations__"] = hints
    namespace["__module__"] = __name__
    namespace["__qualname__"] = "RunnerConfig"
    return type("RunnerConfig", (dg.ConfigurableResource,), namespace)


if TYPE_CHECKING:

    class _RunnerConfig(RunnerSettings, dg.ConfigurableResource):
        """What type checkers see: the settings' attributes on a resource."""

else:
    _RunnerConfig = _runner_config()


class MinigunResource(_RunnerConfig):
    """Runner settings shared by the minigun ops and assets of a code location.

    Its config fields are the runner settings of every adapter
    (:class:`~minigun.adapters._common.RunnerSettings`): ``python`` (interpreter of the
    pipeline, e.g. another virtualenv), ``env``, ``cwd``, ``timeout`` (seconds per
    runner attempt), ``runner_retries`` / ``runner_retry_delay`` (the runner's retries
    inside one step attempt), ``grace`` (seconds to drain when stopped) and the run
    overrides ``execution``, ``max_processes``, ``max_threads``.
    """

    grace: float = DAGSTER.default_grace

    def run_outcome(
        self, context: Any, pipeline: str, params: Mapping[str, Any] | None = None
    ) -> RunOutcome:
        """Run ``pipeline`` in isolation, relaying its output to ``context.log``.

        Settings that make no valid run raise ``Failure(allow_retries=False)``.
        """
        try:
            spec = self._spec(pipeline, params)
        except InvalidRunSpec as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from exc
        return run_announced(spec, relay_to(context.log))

    def _spec(self, pipeline: str, params: Mapping[str, Any] | None) -> RunSpec:
        return spec_from_settings(pipeline, params, self)

    def run(
        self,
        context: Any,
        pipeline: str,
        params: Mapping[str, Any] | None = None,
        *,
        transient_retries: int = 1,
        transient_retry_delay: float | None = None,
    ) -> dict[str, Any] | None:
        """Run ``pipeline``; return its result JSON, or raise Dagster's failure types.

        For use in your own ops and assets. A skipped run (exit 99) returns the result
        JSON too (``result["status"] == "skipped"``); decide there what skipping means.
        Failures raise as :func:`raise_for_outcome` describes.
        """
        outcome = self.run_outcome(context, pipeline, params)
        raise_for_outcome(
            pipeline,
            outcome,
            transient_retries=transient_retries,
            transient_retry_delay=transient_retry_delay,
        )
        return outcome.result


def raise_for_outcome(
    pipeline: str,
    outcome: RunOutcome,
    *,
    transient_retries: int = 1,
    transient_retry_delay: float | None = None,
) -> None:
    """Raise the Dagster exception for a failed ``outcome``; return for success and skip."""
    kind = verdict(outcome)
    if kind in (Verdict.SUCCEEDED, Verdict.SKIPPED):
        return
    if kind is Verdict.FAILED_TRANSIENT and transient_retries > 0:
        raise dg.RetryRequested(
            max_retries=transient_retries, seconds_to_wait=transient_retry_delay
        )
    metadata: dict[str, Any] = {
        "exit_code": int(outcome.exit_code),
        "attempts": outcome.attempts,
        "log_tail": dg.MetadataValue.text("\n".join(log_tail(outcome, 50))),
    }
    raise dg.Failure(
        description=failure_message(pipeline, outcome, tail_lines=0),
        metadata=metadata,
        allow_retries=kind is not Verdict.FAILED_FINAL,
    )


def output_metadata(outcome: RunOutcome) -> dict[str, Any]:
    """Items, throughput, duration and the per-stage table, as Dagster metadata."""
    summary = outcome_summary(outcome)
    metadata: dict[str, Any] = {
        k: v for k, v in summary.items() if v is not None and not isinstance(v, bool)
    }
    rows = stage_rows(outcome.result)
    if rows:
        metadata["stages"] = dg.MetadataValue.table(
            records=[dg.TableRecord(row) for row in rows],
            schema=dg.TableSchema(
                columns=[
                    dg.TableColumn(c.key, _DAGSTER_TYPES[c.type], description=c.help)
                    for c in STAGE_COLUMNS
                ]
            ),
        )
    return metadata


#: The stage table's column types (``minigun.report.table.Column.type``) in Dagster's words.
_DAGSTER_TYPES = {"str": "string", "int": "int", "float": "float"}


def _run_to_output(
    context: Any,
    pipeline: str,
    params: Mapping[str, Any],
    transient_retries: int,
    transient_retry_delay: float | None,
    *,
    skipped: str,
) -> Iterator[dg.Output[Any]]:
    """The body shared by ops and assets: run, map failures, yield the output (or skip)."""
    resource: MinigunResource = getattr(context.resources, RESOURCE_KEY)
    outcome = resource.run_outcome(context, pipeline, params)
    raise_for_outcome(
        pipeline,
        outcome,
        transient_retries=transient_retries,
        transient_retry_delay=transient_retry_delay,
    )
    if verdict(outcome) is Verdict.SKIPPED:
        context.log.info(f"minigun pipeline {pipeline} skipped; {skipped}")
        return
    yield dg.Output(outcome.result, metadata=output_metadata(outcome))


def minigun_op(
    *,
    name: str,
    pipeline: str,
    params: Mapping[str, Any] | None = None,
    transient_retries: int = 1,
    transient_retry_delay: float | None = None,
    **op_kwargs: Any,
) -> dg.OpDefinition:
    """An op that runs ``pipeline`` through the ``minigun`` resource.

    ``params`` are the pipeline's params; the op's run config ``params`` (a free-form
    dict, e.g. from the launchpad) is merged over them, and so are the op's inputs
    when you declare ``ins`` (their values must be JSON-serialisable). A run that
    ends in ``mg.TransientError`` (exit 75) requests up to ``transient_retries``
    Dagster retries, ``transient_retry_delay`` seconds apart. Other keyword
    arguments go to ``dagster.op`` (``description``, ``tags``, ``retry_policy``,
    ``ins``, ``pool``, ...).
    """
    static_params = dict(params or {})

    @dg.op(
        name=name,
        out=dg.Out(dict, is_required=False),
        config_schema={"params": dg.Field(dg.Permissive(), default_value={}, is_required=False)},
        required_resource_keys={RESOURCE_KEY},
        **op_kwargs,
    )
    def _minigun_op(context: dg.OpExecutionContext, **inputs: Any) -> Any:
        run_params = {**static_params, **context.op_config.get("params", {}), **inputs}
        yield from _run_to_output(
            context,
            pipeline,
            run_params,
            transient_retries,
            transient_retry_delay,
            skipped="its output is skipped",
        )

    return _minigun_op


def minigun_asset(
    *,
    name: str,
    pipeline: str,
    params: Mapping[str, Any] | None = None,
    transient_retries: int = 1,
    transient_retry_delay: float | None = None,
    **asset_kwargs: Any,
) -> dg.AssetsDefinition:
    """An asset materialised by running ``pipeline``; same mapping as :func:`minigun_op`.

    A skipped run (exit 99) does not materialise the asset. Keyword arguments go to
    ``dagster.asset`` (``deps``, ``group_name``, ``retry_policy``, ...).
    """
    static_params = dict(params or {})

    @dg.asset(
        name=name,
        output_required=False,
        required_resource_keys={RESOURCE_KEY},
        **asset_kwargs,
    )
    def _minigun_asset(context: dg.AssetExecutionContext) -> Any:
        yield from _run_to_output(
            context,
            pipeline,
            static_params,
            transient_retries,
            transient_retry_delay,
            skipped="not materialised",
        )

    return _minigun_asset
