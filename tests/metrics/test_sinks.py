"""``--pushgateway``, ``--statsd`` and ``--otel`` on real runs, received on 127.0.0.1;
OpenTelemetry spans also through the SDK's in-memory exporter; bad settings."""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from minigun.metrics.statsd import STAGE_COUNTS, check_address, packets
from minigun.report.table import stage_table
from pipelines.observed import Shop
from support import full_env, invoke_cli, run_cli

from .helpers import closed_port, http_server, samples, udp_socket, value
from .test_textfile import assert_stage_figures_match

SHOP = "pipelines.observed:Shop"


def shop(tmp_path: Path, *flags: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run Shop through the isolated runner with ``flags``; its result JSON."""
    result = tmp_path / "result.json"
    proc = run_cli(
        "run", SHOP, "-p", "n=400", "--result-file", str(result), *flags,
        cwd=str(tmp_path), env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    data: dict[str, Any] = json.loads(result.read_text())
    data["_stderr"] = proc.stderr
    return data


# --------------------------------------------------------------------- pushgateway


def test_pushgateway_gets_one_post_of_the_runs_metrics(tmp_path: Path) -> None:
    with http_server() as gateway:
        data = shop(tmp_path, "--pushgateway", gateway.url)
    assert [(r.method, r.path) for r in gateway.requests] == [
        ("POST", "/metrics/job/minigun/pipeline/Shop")
    ]
    (request,) = gateway.requests
    assert request.headers["Content-Type"].startswith("text/plain")
    parsed = samples(request.body.decode())
    assert value(parsed, "minigun_run_succeeded", pipeline="Shop") == 1
    assert value(parsed, "minigun_run_items_produced_total", pipeline="Shop") == 400
    assert value(parsed, "minigun_run_attempts", pipeline="Shop") == 1
    assert_stage_figures_match(parsed, data, "Shop")


def test_an_unreachable_pushgateway_is_a_warning_and_the_exit_code_stays(tmp_path: Path) -> None:
    data = shop(tmp_path, "--pushgateway", f"127.0.0.1:{closed_port()}")
    warnings = [line for line in data["_stderr"].splitlines() if "warning" in line]
    assert len(warnings) == 1
    assert warnings[0].startswith("minigun: warning: cannot push metrics to http://127.0.0.1:")


def test_a_pushgateway_error_status_is_a_warning(tmp_path: Path) -> None:
    with http_server(status=500) as gateway:
        data = shop(tmp_path, "--pushgateway", gateway.url + "/")
    assert len(gateway.requests) == 1
    assert "minigun: warning: cannot push metrics" in data["_stderr"]


# -------------------------------------------------------------------------- statsd


def receive(sock: socket.socket, deadline: float) -> list[str]:
    """Every datagram that arrives before the line for the last stage count of ``save``."""
    lines: list[str] = []
    sock.settimeout(0.2)
    while time.monotonic() < deadline:
        try:
            data, _ = sock.recvfrom(65536)
        except TimeoutError:
            continue
        assert len(data) <= 512
        lines += data.decode().split("\n")
        if any(line.startswith(f"minigun.Shop.stage.save.{STAGE_COUNTS[-1]}:") for line in lines):
            break
    return lines


def test_statsd_packets_carry_duration_throughput_items_and_stage_counts(
    tmp_path: Path,
) -> None:
    with udp_socket() as sock:
        port = sock.getsockname()[1]
        data = shop(tmp_path, "--statsd", f"127.0.0.1:{port}")
        lines = receive(sock, time.monotonic() + 30)
    metrics: dict[str, tuple[float, str]] = {}
    for line in lines:
        name, _, rest = line.partition(":")
        number, _, kind = rest.partition("|")
        metrics[name] = (float(number), kind)
    assert metrics["minigun.Shop.run.items_produced"] == (400, "c")
    assert metrics["minigun.Shop.run.items_consumed"] == (data["stats"]["total_consumed"], "c")
    assert metrics["minigun.Shop.run.succeeded"] == (1, "c")
    assert metrics["minigun.Shop.run.dead_letters"] == (data["dead_letter_count"], "c")
    assert metrics["minigun.Shop.run.attempts"] == (1, "g")
    duration, kind = metrics["minigun.Shop.run.duration"]
    assert kind == "ms" and duration == pytest.approx(data["stats"]["duration"] * 1000, abs=0.01)
    assert metrics["minigun.Shop.run.throughput"][1] == "g"
    for row in stage_table(data):
        for key in STAGE_COUNTS:
            assert metrics[f"minigun.Shop.stage.{row['stage']}.{key}"] == (row[key], "c")
    expected = Shop.expected(400)
    assert metrics["minigun.Shop.stage.price.dropped"][0] == expected["dropped"]


def test_statsd_names_keep_their_shape_and_packets_their_size() -> None:
    from minigun.metrics.statsd import encode

    result = {
        "status": "succeeded",
        "stats": {"duration": 1.0, "stages": {"outer.inner|x": {"items_in": 3}}},
    }
    lines = encode(result, "My.Pipe:line")
    assert "minigun.My_Pipe_line.stage.outer_inner_x.items_in:3|c" in lines
    datagrams = packets([f"m.{i}:{i}|c" for i in range(500)])
    assert len(datagrams) > 1 and all(len(d) <= 512 for d in datagrams)
    assert b"\n".join(datagrams).split(b"\n") == [f"m.{i}:{i}|c".encode() for i in range(500)]


@pytest.mark.parametrize(
    ("address", "parsed"),
    [("localhost:8125", ("localhost", 8125)), ("[::1]:9125", ("::1", 9125))],
)
def test_statsd_addresses(address: str, parsed: tuple[str, int]) -> None:
    assert check_address(address) == parsed


# ---------------------------------------------------------------------------- otel


def in_memory_provider() -> tuple[Any, Any]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def test_otel_spans_of_a_real_run_in_the_in_memory_exporter(tmp_path: Path) -> None:
    from opentelemetry.trace import StatusCode

    from minigun.metrics.otel import OtelSink

    data = shop(tmp_path)
    provider, exporter = in_memory_provider()
    warnings: list[str] = []
    sink = OtelSink(fallback_label="x", warn=warnings.append, tracer_provider=provider)
    sink.finish(data)
    spans = exporter.get_finished_spans()
    assert not warnings
    (run,) = [s for s in spans if s.parent is None]
    assert run.name == "minigun run Shop"
    assert run.attributes["minigun.items.produced"] == 400
    assert run.attributes["minigun.dead_letters"] == data["dead_letter_count"]
    assert run.attributes["minigun.attempts"] == 1
    assert run.status.status_code is StatusCode.UNSET
    assert [e.name for e in run.events] == ["minigun.attempt"]
    stages = [s for s in spans if s.parent is not None]
    assert [s.name for s in stages] == [
        f"minigun stage {n}" for n in ("orders", "price", "rows", "save")
    ]
    assert all(s.parent.span_id == run.context.span_id for s in stages)
    assert all(run.start_time <= s.start_time <= s.end_time <= run.end_time for s in stages)
    price = next(s for s in stages if s.name == "minigun stage price")
    row = next(r for r in stage_table(data) if r["stage"] == "price")
    assert price.attributes["minigun.stage.items_in"] == row["items_in"] == 400
    assert price.attributes["minigun.stage.dead_letters"] == row["dead_letters"]
    assert price.attributes["minigun.stage.latency_p99"] == row["latency_p99"]
    assert run.end_time - run.start_time >= int(data["stats"]["duration"] * 1e9)


def test_otel_marks_a_failed_run(tmp_path: Path) -> None:
    from opentelemetry.trace import StatusCode

    from minigun.metrics.otel import OtelSink

    result = tmp_path / "result.json"
    proc = run_cli("run", SHOP, "-p", "fail=true", "--result-file", str(result), cwd=str(tmp_path))
    assert proc.returncode == 1
    provider, exporter = in_memory_provider()
    OtelSink(fallback_label="x", warn=print, tracer_provider=provider).finish(
        json.loads(result.read_text())
    )
    (run,) = [s for s in exporter.get_finished_spans() if s.parent is None]
    assert run.status.status_code is StatusCode.ERROR
    assert "warehouse is read-only" in (run.status.description or "")


def test_otel_flag_exports_over_otlp_http_to_a_collector(tmp_path: Path) -> None:
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http")
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with http_server() as collector:
        env = full_env(
            OTEL_TRACES_EXPORTER="otlp",
            OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=f"{collector.url}/v1/traces",
            OTEL_SERVICE_NAME="nightly",
            TRACEPARENT=parent,
        )
        shop(tmp_path, "--otel", env=env)
    (request,) = collector.requests
    assert (request.method, request.path) == ("POST", "/v1/traces")
    export = ExportTraceServiceRequest()
    export.ParseFromString(request.body)
    (resource_spans,) = export.resource_spans
    service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert service["service.name"] == "nightly"
    spans = [s for scope in resource_spans.scope_spans for s in scope.spans]
    names = sorted(s.name for s in spans)
    assert names == sorted(
        ["minigun run Shop"] + [f"minigun stage {n}" for n in ("orders", "price", "rows", "save")]
    )
    run = next(s for s in spans if s.name == "minigun run Shop")
    assert run.trace_id.hex() == parent.split("-")[1]  # a child of the caller's trace
    assert run.parent_span_id.hex() == parent.split("-")[2]


def test_otel_console_exporter(tmp_path: Path) -> None:
    data = shop(tmp_path, "--otel", env=full_env(OTEL_TRACES_EXPORTER="console"))
    assert '"name": "minigun run Shop"' in data["_stderr"]


# ------------------------------------------------------------------- bad settings


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--statsd", "localhost"), "must be HOST:PORT"),
        (("--statsd", "localhost:99999"), "the port must be 1 to 65535"),
        (("--statsd", ":8125"), "must be HOST:PORT"),
        (("--statsd", "fe80::1:8125"), "[ADDR]:PORT"),
        (("--pushgateway", "ftp://gateway:9091"), "the scheme must be http or https"),
        (("--pushgateway", "http://"), "has no host"),
        (("--pushgateway", "http://gw:99999"), "is not a valid URL"),
        (("--pushgateway", "http://u:p@gw:9091"), "credentials in the URL"),
        (("--metrics-textfile", "metrics.txt"), "must end in .prom"),
        (("--metrics-textfile", "/no/such/dir/x.prom"), "no such directory"),
    ],
)
def test_bad_metrics_settings_are_one_usage_line(
    flags: tuple[str, ...], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    proc = invoke_cli("run", "--in-process", "pipelines.contract:Noop", *flags)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("minigun: error: "), proc.stderr
    assert message in lines[0]


def test_an_unsupported_otel_exporter_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    proc = invoke_cli("run", "--in-process", "pipelines.contract:Noop", "--otel")
    assert proc.returncode == 2
    assert "OTEL_TRACES_EXPORTER='zipkin' is not supported" in proc.stderr


def test_a_missing_package_names_the_extra() -> None:
    from minigun.metrics import MetricsConfigError, require

    hint = r"pip install 'minigun-pipelines\[metrics\]' \(or '\.\[metrics\]' in a checkout\)"
    with pytest.raises(MetricsConfigError, match=hint):
        require("no_such_module_for_minigun", "--metrics-textfile", "prometheus_client")


def test_no_metrics_module_is_loaded_without_a_flag(tmp_path: Path) -> None:
    """``import minigun`` and a ``minigun run`` without metrics flags load none of it."""
    code = (
        "import sys\n"
        "import minigun, minigun.runner\n"
        "from minigun.cli import run_cli\n"
        "assert run_cli(['run', 'pipelines.contract:Noop']) == 0\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in"
        " ('prometheus_client', 'opentelemetry') or m.startswith('minigun.metrics'))\n"
        "print(loaded)\n"
    )
    import subprocess

    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=full_env(),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
