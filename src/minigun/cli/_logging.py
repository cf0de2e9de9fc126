"""How the CLI's log lines look: ``minigun: …`` for people, JSON lines for log routers.

Everything the CLI says goes through :mod:`logging` under ``minigun.*`` names (its own
status lines under ``minigun.cli``, the engine's under ``minigun.core…``/``minigun.run``),
and so does every record the runner's child sends (with the child's level, logger name
and time). One handler on the ``minigun`` logger writes them all:

- ``text`` (the default): ``minigun: <message>`` for the CLI's and the engine's own
  records, and the pipeline's output lines exactly as printed -- what a person at a
  terminal reads;
- ``json``: one JSON object per line -- ``time`` (ISO 8601, UTC, the moment the record
  was made, in the child when it came from there), ``level``, ``logger``, ``message``,
  ``run_id``, ``pipeline``, plus ``stream`` for the pipeline's stdout/stderr lines and
  ``stage`` when a record names one -- what Kubernetes log collectors, Fluent Bit or a
  cloud log router parse without a regex.

A closed reader (``minigun run … | head``) only stops the writing of that stream: the
pipeline is a batch job and runs to its end; killing it because whoever watched its
output went away would lose work.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

__all__ = [
    "LOG_FORMATS",
    "configure",
    "emit_child_line",
    "ensure_configured",
    "log_context",
    "new_run",
]

LOG_FORMATS = ("text", "json")

#: Fields every JSON line carries besides the record's own: set once the run is known.
log_context: dict[str, str | None] = {"run_id": None, "pipeline": None}


class _CliHandler(logging.Handler):
    """Writes to stderr, or stdout for a pipeline's stdout lines; never raises."""

    def __init__(self) -> None:
        super().__init__()
        self.closed: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        target = "stdout" if getattr(record, "stream", None) == "stdout" else "stderr"
        if target in self.closed:
            return
        out = sys.stdout if target == "stdout" else sys.stderr
        try:
            out.write(self.format(record) + "\n")
            out.flush()
        except (BrokenPipeError, ValueError):
            self.closed.add(target)
        except OSError:
            pass  # a status line must never be what stops a run


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if getattr(record, "verbatim", False):
            return message
        return f"minigun: {message}"


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": _iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **log_context,
        }
        for key in ("stream", "stage"):
            value = getattr(record, key, None)
            if value is not None:
                data[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            data["traceback"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)


def _iso(created: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created % 1 * 1000):03d}Z"


_handler = _CliHandler()
_handler.setFormatter(_TextFormatter())


def new_run(pipeline: str) -> None:
    """Start a run's log context: its pipeline and a run id (``MINIGUN_RUN_ID`` if set,
    so that an orchestrator's own id can be carried into the lines, else a new one)."""
    import os
    import uuid

    log_context["pipeline"] = pipeline
    log_context["run_id"] = os.environ.get("MINIGUN_RUN_ID") or uuid.uuid4().hex[:12]


def configure(log_format: str = "text", *, debug: bool = False) -> None:
    """Route ``minigun.*`` records to the CLI's handler in ``log_format``."""
    _handler.setFormatter(_JsonFormatter() if log_format == "json" else _TextFormatter())
    root = logging.getLogger("minigun")
    if _handler not in root.handlers:
        root.addHandler(_handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    root.propagate = False  # the CLI owns the process's output: nothing is printed twice


def emit_child_line(
    text: str,
    *,
    stream: str,
    level: int | None = None,
    created: float | None = None,
    logger: str | None = None,
) -> None:
    """One line from the runner's child, written as it came (level, time, logger).

    A log record from the child's record channel keeps its logger name; a line the
    pipeline printed is ``minigun.pipeline`` with its ``stream``, INFO on stdout and
    WARNING on stderr unless the runner classified it (a traceback is ERROR). In text
    form both appear exactly as they were printed.
    """
    if level is None:
        level = logging.INFO if stream == "stdout" else logging.WARNING
    record = logging.LogRecord(logger or "minigun.pipeline", level, "", 0, text, None, None)
    if created is not None:
        record.created = created
    record.verbatim = True
    if stream in ("stdout", "stderr"):
        record.stream = stream
    ensure_configured()
    _handler.handle(record)


def ensure_configured() -> None:
    if _handler not in logging.getLogger("minigun").handlers:
        configure()
