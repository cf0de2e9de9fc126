"""Small output helpers shared by the commands: stderr messages, the result file."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from typing import Any

__all__ = ["say", "write_json_atomic", "state"]


class _State:
    """Process-wide CLI switches set by the group callback (``--debug``)."""

    debug: bool = False


state = _State()


def say(message: str) -> None:
    """One ``minigun: …`` line on stderr, flushed (logs interleave with the child's)."""
    sys.stderr.write(f"minigun: {message}\n")
    sys.stderr.flush()


def write_json_atomic(path: str, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` so a reader sees the old file or the new one.

    A temporary file in the same directory is written, fsynced and renamed over the
    target: an orchestrator polling for the result never reads half a document, even
    if the run is killed mid-write.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".minigun-result-", suffix=".json", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=False, default=str)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
