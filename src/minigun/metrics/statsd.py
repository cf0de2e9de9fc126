"""``--statsd HOST:PORT``: the run's figures as StatsD metrics over UDP, at its end.

StatsD is the transport Airflow's own metrics use, so a team that already has a
StatsD daemon (or a statsd_exporter, or Datadog's agent) for Airflow sees minigun's
figures next to it. Sent at the end of a run, under ``minigun.<Pipeline>.``:

- ``run.duration`` (timer, ms), ``run.throughput`` (gauge, items/s),
  ``run.items_produced``, ``run.items_consumed``, ``run.dead_letters`` (counters),
  ``run.<status>`` (counter, 1: ``run.succeeded``, ``run.failed`` ...), ``run.attempts``
  (gauge, when the runner ran it);
- ``stage.<stage>.<count>`` (counters) for every count of the stage table: items_in,
  items_out, processed, dropped, skipped, errors, failed, dead_letters, retries.

The protocol is a line of text per metric (``name:value|type``), so this is a few lines
of standard library rather than a client package; lines are packed into datagrams of
at most 512 bytes (what a StatsD server accepts over any network), several per packet
separated by newlines, as StatsD servers read them. UDP is fire-and-forget: a missing
server is not an error (nothing could tell), a name that does not resolve is reported.
Dots and other characters that mean something in a StatsD name are replaced by ``_``
in pipeline and stage names, so ``outer.inner`` stays one path segment.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterable, Mapping
from typing import Any

from minigun.metrics import MetricsConfigError, Warn, pipeline_label
from minigun.report.table import STAGE_COLUMNS, stage_table, stats_of

__all__ = ["PREFIX", "STAGE_COUNTS", "StatsdSink", "check_address", "encode"]

PREFIX = "minigun"

#: Datagram size that every StatsD server and network path accepts.
MAX_PACKET = 512

#: The counts of the stage table sent per stage (every int column about items, and retries).
STAGE_COUNTS = tuple(
    c.key
    for c in STAGE_COLUMNS
    if c.type == "int" and (c.unit == "items" or c.key == "retries")
    and c.key not in ("queued", "queue_capacity")
)  # fmt: skip

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def check_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for an IPv6 literal) as ``(host, port)``, or raise."""
    text = address.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise MetricsConfigError(f"--statsd {address!r} must be HOST:PORT, e.g. localhost:8125")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise MetricsConfigError(f"--statsd {address!r}: write an IPv6 address as [ADDR]:PORT")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise MetricsConfigError(f"--statsd {address!r}: the port must be 1 to 65535")
    if not host or any(ch.isspace() for ch in host):
        raise MetricsConfigError(f"--statsd {address!r} has no valid host")
    return host, int(port_text)


def _segment(name: str) -> str:
    return _UNSAFE.sub("_", name) or "_"


def encode(result: Mapping[str, Any], pipeline: str, prefix: str = PREFIX) -> list[str]:
    """The StatsD lines of a finished run (``name:value|type``)."""
    base = f"{prefix}.{_segment(pipeline)}"
    stats = stats_of(result)
    lines: list[str] = []
    duration = stats.get("duration", result.get("duration"))
    if _is_number(duration):
        lines.append(f"{base}.run.duration:{float(duration) * 1000:.3f}|ms")
    if _is_number(stats.get("throughput")):
        lines.append(f"{base}.run.throughput:{float(stats['throughput']):.3f}|g")
    for key, name in (("total_produced", "items_produced"), ("total_consumed", "items_consumed")):
        if _is_number(stats.get(key)):
            lines.append(f"{base}.run.{name}:{int(stats[key])}|c")
    if _is_number(result.get("dead_letter_count")):
        lines.append(f"{base}.run.dead_letters:{int(result['dead_letter_count'])}|c")
    if result.get("status"):
        lines.append(f"{base}.run.{_segment(str(result['status']))}:1|c")
    runner = result.get("runner")
    if isinstance(runner, Mapping) and _is_number(runner.get("attempts")):
        lines.append(f"{base}.run.attempts:{int(runner['attempts'])}|g")
    for row in stage_table(result):
        stage = f"{base}.stage.{_segment(row['stage'])}"
        for key in STAGE_COUNTS:
            if row[key] is not None:
                lines.append(f"{stage}.{key}:{row[key]}|c")
    return lines


def packets(lines: Iterable[str], limit: int = MAX_PACKET) -> list[bytes]:
    """Lines joined by newlines into datagrams of at most ``limit`` bytes each."""
    out: list[bytes] = []
    current = b""
    for line in lines:
        data = line.encode("utf-8")
        if current and len(current) + 1 + len(data) > limit:
            out.append(current)
            current = b""
        current = data if not current else current + b"\n" + data
    if current:
        out.append(current)
    return out


class StatsdSink:
    """Sends the run's figures to a StatsD server at the end of the run."""

    def __init__(
        self, address: str, *, fallback_label: str, warn: Warn, prefix: str = PREFIX
    ) -> None:
        self.host, self.port = check_address(address)
        self.fallback_label = fallback_label
        self.warn = warn
        self.prefix = prefix
        self._label: str | None = None
        #: Datagrams sent by :meth:`finish`.
        self.sent = 0

    def update(self, snapshot: Mapping[str, Any]) -> None:
        if self._label is None and snapshot.get("pipeline"):
            self._label = pipeline_label(snapshot, self.fallback_label)

    def finish(self, result: Mapping[str, Any]) -> None:
        label = pipeline_label(result, self._label or self.fallback_label)
        datagrams = packets(encode(result, label, self.prefix))
        try:
            infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM)
            family, kind, proto, _, address = infos[0]
            with socket.socket(family, kind, proto) as sock:
                for datagram in datagrams:
                    sock.sendto(datagram, address)
                    self.sent += 1
        except OSError as exc:
            self.warn(f"cannot send metrics to StatsD at {self.host}:{self.port}: {exc}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
