"""Metrics out of a run: Prometheus (textfile, Pushgateway), StatsD and OpenTelemetry.

Each sink is a module of its own and is fed plain data -- the live stats snapshots
the CLI parent receives while a run goes on (:meth:`MetricsSink.update`) and, at the
end, the result JSON as ``minigun run`` writes it (:meth:`MetricsSink.finish`) -- so
the run's child stays lean and the sinks work the same for an isolated and an
in-process run. Per-stage figures come from
:func:`minigun.report.table.stage_table`, the one table the report and the adapters
show too.

- :mod:`~minigun.metrics.textfile`: ``--metrics-textfile PATH``, Prometheus text format
  for node_exporter's textfile collector, during and at the end of a run;
- :mod:`~minigun.metrics.pushgateway`: ``--pushgateway URL``, the same pushed at the end;
- :mod:`~minigun.metrics.statsd`: ``--statsd HOST:PORT``, duration, throughput, items and
  per-stage counts over UDP at the end;
- :mod:`~minigun.metrics.otel`: ``--otel``, a span per run with a span per stage.

The packages they use (``prometheus_client``, ``opentelemetry-sdk``) are in the
``metrics`` extra and are imported only when a sink is made: ``import minigun`` and a
``minigun run`` without these flags never load them.

Metrics are reported on a best-effort basis: a sink that cannot write or send says so
(once, through ``warn``) and the run goes on; its exit code is never changed by a
metrics problem, because the result JSON, not a metric, is the record of the run.
A bad setting (a URL without a host, a port out of range, a missing package) is a
:class:`MetricsConfigError`, raised when the sink is made, before the run starts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

__all__ = ["MetricsConfigError", "MetricsSink", "Warn", "pipeline_label", "require"]

#: Where a sink reports a problem: one line, e.g. the CLI's ``minigun: warning: …``.
Warn = Callable[[str], None]


class MetricsConfigError(ValueError):
    """A metrics setting that cannot work (bad address, missing package): exit 2."""


class MetricsSink(Protocol):
    """What the CLI feeds every sink."""

    def update(self, snapshot: Mapping[str, Any]) -> None:
        """A live stats snapshot (the shape of the result's ``stats``), a few a second."""

    def finish(self, result: Mapping[str, Any]) -> None:
        """The run's result JSON (with ``runner`` when the runner ran it), once."""


def pipeline_label(data: Mapping[str, Any] | None, fallback: str) -> str:
    """The pipeline's class name, the ``pipeline`` label of every metric.

    A result names its pipeline ``module:Class``; a progress snapshot from the runner's
    child carries ``pipeline`` (the class name). Only the class name is used, so the
    label does not change with the path the job was started from.
    """
    name = (data or {}).get("pipeline")
    text = str(name) if name else fallback
    return text.rpartition(":")[2] or text


def require(module: str, flag: str, package: str) -> None:
    """Raise :class:`MetricsConfigError` unless ``module`` can be imported (not importing it)."""
    import importlib.util

    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise MetricsConfigError(
            f"{flag} needs {package}: install the metrics extra:"
            " pip install 'minigun-pipelines[metrics]' (or '.[metrics]' in a checkout)"
        )
