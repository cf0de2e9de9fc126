"""The Prometheus metric families of a run, shared by the textfile and the Pushgateway sinks.

Run figures are labelled ``pipeline`` (the class name); stage figures ``pipeline`` and
``stage``, with one ``minigun_stage_info`` sample per stage carrying its ``kind`` and
``executor``. Every numeric column of the stage table
(:data:`minigun.report.table.STAGE_COLUMNS`) is a family here (:data:`STAGE_METRICS`),
so the metrics show what the report shows. Counts that only grow during a run are
counters (``_total``), so ``rate()`` works and a new run reads as a counter reset;
the rest are gauges. Latency percentiles are one family with a ``quantile`` label.

A batch job's "when did it last succeed" must survive a failed run:
``minigun_run_last_success_timestamp_seconds`` is written only by a successful run,
and the sinks carry the previous value over otherwise (the textfile reads it back;
the Pushgateway keeps it because the sink pushes with POST, which replaces only the
families it sends).
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from minigun.report.table import STAGE_COLUMNS, stage_table, stats_of

__all__ = ["LAST_SUCCESS", "STAGE_METRICS", "RunFamilies"]

#: Stage-table column -> (metric name, is a counter). Latency columns go to one family.
STAGE_METRICS: dict[str, tuple[str, bool]] = {
    "workers": ("minigun_stage_workers", False),
    "items_in": ("minigun_stage_items_in", True),
    "items_out": ("minigun_stage_items_out", True),
    "processed": ("minigun_stage_processed", True),
    "dropped": ("minigun_stage_dropped", True),
    "skipped": ("minigun_stage_skipped", True),
    "errors": ("minigun_stage_errors", True),
    "failed": ("minigun_stage_failed", True),
    "dead_letters": ("minigun_stage_dead_letters", True),
    "retries": ("minigun_stage_retries", True),
    "throughput": ("minigun_stage_throughput_items_per_second", False),
    "latency_p50": ("minigun_stage_latency_seconds", False),
    "latency_p95": ("minigun_stage_latency_seconds", False),
    "latency_p99": ("minigun_stage_latency_seconds", False),
    "busy_seconds": ("minigun_stage_busy_seconds", True),
    "utilisation": ("minigun_stage_utilisation_ratio", False),
    "queued": ("minigun_stage_queued_items", False),
    "queue_capacity": ("minigun_stage_queue_capacity_items", False),
    "queue_fill": ("minigun_stage_queue_fill_ratio", False),
}

LAST_SUCCESS = "minigun_run_last_success_timestamp_seconds"

_LATENCY_HELP = "Service time per item at a quantile (seconds)."


class RunFamilies(Collector):
    """A collector of one run's figures, from a snapshot or the final result; made
    afresh for each write, so it needs no registry and keeps no state."""

    def __init__(
        self,
        data: Mapping[str, Any],
        *,
        pipeline: str,
        final: bool,
        last_success: float | None = None,
        now: float | None = None,
    ) -> None:
        self.data = data
        self.pipeline = pipeline
        self.final = final
        self.last_success = last_success
        self.now = time.time() if now is None else now

    def collect(self) -> Iterator[Metric]:
        yield from self._run_families()
        yield from self._stage_families()

    def _run_families(self) -> Iterator[Metric]:
        data, labels = self.data, [self.pipeline]
        stats = stats_of(data)

        def gauge(name: str, doc: str, value: Any) -> Iterator[Metric]:
            if _is_number(value):
                family = GaugeMetricFamily(name, doc, labels=["pipeline"])
                family.add_metric(labels, float(value))
                yield family

        def counter(name: str, doc: str, value: Any) -> Iterator[Metric]:
            if _is_number(value):
                family = CounterMetricFamily(name, doc, labels=["pipeline"])
                family.add_metric(labels, float(value))
                yield family

        duration = stats.get("duration")
        yield from gauge("minigun_run_running", "1 while the run goes on, 0 once it ended.",
                         0 if self.final else 1)  # fmt: skip
        started = _parse_time(data.get("started_at")) if self.final else None
        if started is None and isinstance(duration, (int, float)):
            started = self.now - float(duration)
        yield from gauge("minigun_run_start_timestamp_seconds", "When the run started.", started)
        yield from gauge("minigun_run_duration_seconds", "Seconds the run has taken.", duration)
        yield from counter("minigun_run_items_produced", "Items emitted by producers.",
                           stats.get("total_produced"))  # fmt: skip
        yield from counter("minigun_run_items_consumed", "Items processed by final stages.",
                           stats.get("total_consumed"))  # fmt: skip
        yield from gauge("minigun_run_throughput_items_per_second", "Items produced per second.",
                         stats.get("throughput"))  # fmt: skip
        dead = data.get("dead_letter_count") if self.final else None
        if dead is None:
            dead = sum(row["dead_letters"] or 0 for row in stage_table(stats))
        yield from gauge("minigun_run_dead_letters", "Items dead-lettered in the run.", dead)
        if not self.final:
            yield from gauge(LAST_SUCCESS, "When the pipeline last succeeded.", self.last_success)
            return
        code = data.get("exit_code")
        yield from gauge("minigun_run_exit_code", "The run's exit code (0 ok).", code)
        yield from gauge("minigun_run_succeeded", "1 if the run succeeded, else 0.",
                         1 if code == 0 else 0)  # fmt: skip
        status = data.get("status")
        if status:
            family = GaugeMetricFamily(
                "minigun_run_status", "The run's status, as a label.", labels=["pipeline", "status"]
            )
            family.add_metric([self.pipeline, str(status)], 1.0)
            yield family
        runner = data.get("runner")
        if isinstance(runner, Mapping):
            yield from gauge("minigun_run_attempts", "Runner attempts.", runner.get("attempts"))
        yield from gauge("minigun_run_end_timestamp_seconds", "When the run ended.", self.now)
        last = self.now if code == 0 else self.last_success
        yield from gauge(LAST_SUCCESS, "When the pipeline last succeeded.", last)

    def _stage_families(self) -> Iterator[Metric]:
        rows = stage_table(self.data)
        info = GaugeMetricFamily(
            "minigun_stage_info",
            "One per stage; its kind and executor as labels.",
            labels=["pipeline", "stage", "kind", "executor"],
        )
        for row in rows:
            info.add_metric(
                [self.pipeline, row["stage"], row["kind"] or "", row["executor"] or ""], 1.0
            )
        yield info
        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}
        for column in STAGE_COLUMNS:
            if column.key not in STAGE_METRICS:
                continue
            name, is_counter = STAGE_METRICS[column.key]
            latency = column.key.startswith("latency_p")
            family = families.get(name)
            if family is None:
                doc = _LATENCY_HELP if latency else column.help
                names = ["pipeline", "stage", "quantile"] if latency else ["pipeline", "stage"]
                family = families[name] = (
                    CounterMetricFamily(name, doc, labels=names)
                    if is_counter
                    else GaugeMetricFamily(name, doc, labels=names)
                )
            for row in rows:
                value = row[column.key]
                if value is None:
                    continue
                labels = [self.pipeline, row["stage"]]
                if latency:
                    labels.append(f"0.{column.key.removeprefix('latency_p')}")
                family.add_metric(labels, float(value))
        yield from families.values()


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _parse_time(value: Any) -> float | None:
    """``2026-12-01T03:12:26Z`` (the result's ``started_at``) as a Unix time."""
    if not isinstance(value, str):
        return None
    try:
        return float(calendar.timegm(time.strptime(value, "%Y-%m-%dT%H:%M:%SZ")))
    except ValueError:
        return None
