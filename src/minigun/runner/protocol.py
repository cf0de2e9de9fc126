"""The narrow protocol between the runner and its child, in the spirit of Dagster Pipes.

Three channels, each with one job:

- **control** (the child's stdin, runner → child): the first line is the run's spec as
  one JSON object (target, params, options, grace, timeout); later lines are control
  messages (``{"stop": "timeout"}``: why the group is about to be stopped). The runner
  never closes its end while it lives, so end-of-file on it means *the runner is gone*:
  that is the child's lifetime guard (:mod:`minigun.child.guard`). Params never travel
  on argv, so their size and encoding are not limited by the kernel's argument limits.
- **records** (a dedicated pipe, child → runner): JSON lines of structured records --
  log records with level, time and logger name, progress snapshots, and the run's
  result JSON. They are apart from the user's stdout/stderr, which are still relayed
  line by line, so nothing a stage prints can be mistaken for a record.
- **stdout/stderr**: whatever the pipeline and its libraries print, relayed as it comes.

Every record is one ``os.write`` of one line. This module is plain data (json only) and
is imported by both sides; it imports nothing from the engine.
"""

from __future__ import annotations

import json

TYPE_CHECKING = False  # typing is not imported: this module is on the way to spawning
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "LEVELS",
    "RECORDS_FD_KEY",
    "RUNNER_PID_ENV",
    "decode_record",
    "encode",
    "log_record",
    "progress_record",
    "result_record",
    "stop_message",
]

#: Environment variable naming the runner's pid in the child: the guard's second check
#: (see :func:`minigun.runner.spawn.child_environment`).
RUNNER_PID_ENV = "MINIGUN_RUNNER_PID"

#: The spec key carrying the records pipe's fd number in the child.
RECORDS_FD_KEY = "records_fd"

#: Python's logging levels, without importing logging (the runner's parent stays lean).
LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "ERROR": 40, "CRITICAL": 50}


def encode(message: dict[str, Any]) -> bytes:
    """One message as one line of UTF-8 JSON (newline included).

    ``ensure_ascii=False`` keeps non-ASCII text at its UTF-8 size (an 80 KB param of
    accented text stays 80 KB instead of tripling as ``\\uXXXX`` escapes).
    """
    return (
        json.dumps(message, ensure_ascii=False, separators=(",", ":"), default=str) + "\n"
    ).encode("utf-8")


def log_record(level: int, message: str, *, logger: str, created: float) -> dict[str, Any]:
    """A log record: ``level`` is a logging level number, ``created`` a Unix time."""
    return {
        "kind": "log",
        "level": int(level),
        "logger": logger,
        "created": created,
        "msg": message,
    }


def progress_record(snapshot: dict[str, Any]) -> dict[str, Any]:
    """A live progress snapshot (the shape of the result JSON's ``stats``)."""
    return {"kind": "progress", "snapshot": snapshot}


def result_record(result: dict[str, Any]) -> dict[str, Any]:
    """The run's result JSON, sent once at the end."""
    return {"kind": "result", "result": result}


def stop_message(reason: str) -> dict[str, Any]:
    """A control message: the group is about to be stopped, and why (``timeout``)."""
    return {"stop": reason}


def decode_record(line: bytes) -> dict[str, Any] | None:
    """A record from one line, or None when the line is not a well-formed record."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    if not isinstance(record, dict) or record.get("kind") not in ("log", "progress", "result"):
        return None
    return record
