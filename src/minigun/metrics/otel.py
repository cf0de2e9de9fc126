"""``--otel``: an OpenTelemetry trace of the run, a span per run and a span per stage.

Made at the end of the run from its result JSON, with the run's real start and end
times: the run span carries the totals (items, throughput, dead letters, attempts,
status; an ERROR status when the run failed), each stage span the stage's row of the
stage table (``minigun.stage.items_in``, ``minigun.stage.latency_p99`` ...). With a
timeline in the result (``minigun run --result-file`` records one), a stage span
covers the time the stage was active; without, it covers the run.

Where the spans go: when the process already has a configured tracer provider (run
under ``opentelemetry-instrument``, or embedding code that set one), to it. Otherwise
this sink makes one from the standard environment: ``OTEL_TRACES_EXPORTER``
(``otlp``, the default, ``console`` on stderr, ``none``; a comma-separated list is
honoured), ``OTEL_EXPORTER_OTLP_*`` for the endpoint, headers and timeout
(``http/protobuf``, or ``grpc`` when ``opentelemetry-exporter-otlp-proto-grpc`` is
installed), ``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES`` for the resource
(service name ``minigun`` unless set). A ``TRACEPARENT`` in the environment (W3C trace
context, as CI systems and orchestrators pass it) makes the run span its child.

Exporting happens once, at the end, in this process; an export that fails is reported
in one line and does not change the exit code.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from minigun.metrics import MetricsConfigError, Warn, pipeline_label, require
from minigun.report.table import stage_table, stats_of

__all__ = ["OtelSink", "make_exporters"]


def make_exporters(environ: Mapping[str, str] | None = None) -> list[Any]:
    """Span exporters named by ``OTEL_TRACES_EXPORTER``, or raise MetricsConfigError."""
    env = os.environ if environ is None else environ
    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",")]
    exporters: list[Any] = []
    for name in filter(None, names):
        if name == "none":
            continue
        if name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            exporters.append(ConsoleSpanExporter(out=sys.stderr))
        elif name == "otlp":
            exporters.append(_otlp_exporter(env))
        else:
            raise MetricsConfigError(
                f"--otel: OTEL_TRACES_EXPORTER={name!r} is not supported (otlp, console, none)"
            )
    return exporters


def _otlp_exporter(env: Mapping[str, str]) -> Any:
    protocol = env.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
    ).strip()
    protocol = protocol or "http/protobuf"
    if protocol == "http/protobuf":
        module, package = (
            "opentelemetry.exporter.otlp.proto.http.trace_exporter",
            "opentelemetry-exporter-otlp-proto-http",
        )
    elif protocol == "grpc":
        module, package = (
            "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
            "opentelemetry-exporter-otlp-proto-grpc",
        )
    else:
        raise MetricsConfigError(
            f"--otel: OTLP protocol {protocol!r} is not supported (http/protobuf, grpc)"
        )
    try:
        require(module, "--otel with OTLP", package)
    except MetricsConfigError as exc:
        raise MetricsConfigError(f"{exc} (or set OTEL_TRACES_EXPORTER=console)") from None
    import importlib

    return importlib.import_module(module).OTLPSpanExporter()


def _configured_provider() -> Any:
    """The process's tracer provider if someone configured one, else None."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    provider = trace.get_tracer_provider()
    return provider if isinstance(provider, TracerProvider) else None


class OtelSink:
    """Records the run as spans at its end.

    ``tracer_provider`` is where the spans go (the tests pass one with an in-memory
    exporter); by default the process's configured provider, else one made here with
    the exporters of :func:`make_exporters` (checked now, so a bad setting is a usage
    error before the run starts).
    """

    def __init__(
        self, *, fallback_label: str, warn: Warn, tracer_provider: Any | None = None
    ) -> None:
        require("opentelemetry.sdk", "--otel", "opentelemetry-sdk")
        self.fallback_label = fallback_label
        self.warn = warn
        self._label: str | None = None
        self.provider = tracer_provider if tracer_provider is not None else _configured_provider()
        self.exporters: list[Any] = [] if self.provider is not None else make_exporters()
        #: Spans exported by this sink's own exporters (when it made its provider).
        self.exported = 0

    def update(self, snapshot: Mapping[str, Any]) -> None:
        if self._label is None and snapshot.get("pipeline"):
            self._label = pipeline_label(snapshot, self.fallback_label)

    def finish(self, result: Mapping[str, Any]) -> None:
        label = pipeline_label(result, self._label or self.fallback_label)
        if self.provider is not None:
            record_run(self.provider, result, label)
            try:
                self.provider.force_flush()
            except Exception as exc:
                self.warn(f"--otel: could not flush spans: {exc}")
            return
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        resource = Resource.create({})
        if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
            resource = resource.merge(Resource({"service.name": "minigun"}))
        provider = TracerProvider(resource=resource)
        # Kept here and exported below by hand, so that a failed export is seen and
        # reported in one line (a batch processor would only log it).
        collected = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(collected))
        record_run(provider, result, label)
        spans = collected.get_finished_spans()
        for exporter in self.exporters:
            try:
                outcome = exporter.export(spans)
            except Exception as exc:
                outcome = exc
            if outcome is SpanExportResult.SUCCESS:
                self.exported += len(spans)
            else:
                what = type(exporter).__name__
                self.warn(f"--otel: {what} could not export the run's spans ({outcome})")
            try:
                exporter.shutdown()
            except Exception:
                pass
        provider.shutdown()


def record_run(provider: Any, result: Mapping[str, Any], label: str) -> None:
    """Make the run's span and its stage spans with ``provider``'s tracer."""
    from opentelemetry import trace
    from opentelemetry.trace import Status, StatusCode

    tracer = provider.get_tracer("minigun")
    stats = stats_of(result)
    end = time.time_ns()
    run_seconds = _number(stats.get("duration"), _number(result.get("duration"), 0.0))
    runner = result.get("runner") if isinstance(result.get("runner"), Mapping) else {}
    assert isinstance(runner, Mapping)
    total_seconds = max(run_seconds, _number(runner.get("duration"), 0.0))
    start = end - int(total_seconds * 1e9)
    engine_start = end - int(run_seconds * 1e9)  # the last attempt's run

    attributes: dict[str, Any] = {"minigun.pipeline": label}
    for key, name in (
        ("status", "minigun.status"),
        ("exit_code", "minigun.exit_code"),
        ("dead_letter_count", "minigun.dead_letters"),
    ):
        if result.get(key) is not None:
            attributes[name] = result[key]
    for key, name in (
        ("total_produced", "minigun.items.produced"),
        ("total_consumed", "minigun.items.consumed"),
        ("throughput", "minigun.throughput"),
        ("duration", "minigun.duration"),
        ("bottleneck", "minigun.bottleneck"),
    ):
        if stats.get(key) is not None:
            attributes[name] = stats[key]
    if runner.get("attempts") is not None:
        attributes["minigun.attempts"] = runner["attempts"]

    run_span = tracer.start_span(
        f"minigun run {label}",
        context=_parent_context(),
        kind=trace.SpanKind.INTERNAL,
        start_time=start,
        attributes=attributes,
    )
    history = runner.get("history")
    if isinstance(history, Sequence):
        for attempt in history:
            if isinstance(attempt, Mapping):
                run_span.add_event(
                    "minigun.attempt",
                    {k: v for k, v in attempt.items() if isinstance(v, (str, int, float, bool))},
                    timestamp=end,
                )
    context = trace.set_span_in_context(run_span)
    activity = _activity(result.get("timeline"))
    for row in stage_table(result):
        first, last = activity.get(row["stage"], (0.0, run_seconds))
        stage_attributes: dict[str, Any] = {"minigun.stage": row["stage"]}
        for key, value in row.items():
            if key != "stage" and value is not None:
                stage_attributes[f"minigun.stage.{key}"] = value
        span = tracer.start_span(
            f"minigun stage {row['stage']}",
            context=context,
            start_time=min(end, engine_start + int(first * 1e9)),
            attributes=stage_attributes,
        )
        if row["failed"]:
            span.set_status(Status(StatusCode.ERROR, f"{row['failed']} item(s) failed the run"))
        span.end(end_time=min(end, engine_start + int(max(first, last) * 1e9)))
    code = result.get("exit_code")
    if code not in (0, 99, None):
        error = result.get("error")
        message = error.get("message") if isinstance(error, Mapping) else None
        run_span.set_status(Status(StatusCode.ERROR, str(message or result.get("status"))))
    run_span.end(end_time=end)


def _parent_context() -> Any:
    """The context of a ``TRACEPARENT`` in the environment (W3C trace context), if any."""
    traceparent = os.environ.get("TRACEPARENT")
    if not traceparent:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier = {"traceparent": traceparent}
    if os.environ.get("TRACESTATE"):
        carrier["tracestate"] = os.environ["TRACESTATE"]
    return TraceContextTextMapPropagator().extract(carrier)


def _activity(timeline: Any) -> dict[str, tuple[float, float]]:
    """Per stage, the first and last time (seconds into the run) its counts moved."""
    if not isinstance(timeline, Mapping):
        return {}
    times = timeline.get("t")
    stages = timeline.get("stages")
    if not isinstance(times, list) or not isinstance(stages, Mapping):
        return {}
    activity: dict[str, tuple[float, float]] = {}
    for name, series in stages.items():
        if not isinstance(series, Mapping):
            continue
        totals = [
            sum(v for v in values if isinstance(v, (int, float)))
            for values in zip(
                *(series.get(k) or [] for k in ("items_in", "items_out")), strict=False
            )
        ]
        moved = [i for i in range(1, len(totals)) if totals[i] != totals[i - 1]]
        if totals and totals[0]:
            moved.insert(0, 0)
        if moved and moved[-1] < len(times):
            first = float(times[max(0, moved[0] - 1)])
            activity[name] = (first, float(times[moved[-1]]))
    return activity


def _number(value: Any, default: float) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return default
