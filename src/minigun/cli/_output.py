"""Small output helpers shared by the commands: stderr messages, the result file."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from typing import Any

__all__ = ["say", "state", "write_json_atomic"]


class _State:
    """Process-wide CLI switches set by the group callback (``--debug``)."""

    debug: bool = False


state = _State()


def say(message: str) -> None:
    """One ``minigun: …`` line on stderr, flushed (logs interleave with the child's).

    Never raises: when the reader is gone (a runner that was SIGKILLed) a status
    message must not be what stops this process from shutting its run down.
    """
    try:
        sys.stderr.write(f"minigun: {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


_closed_streams: set[str] = set()


def echo_line(line: str, stream: str) -> None:
    """Relay one line of a child's output: ``stdout`` to stdout, anything else to stderr.

    A closed reader (``minigun run … | head``) only stops the relaying of that stream:
    the pipeline is a batch job and runs to its end; killing it because whoever
    watched its output went away would lose work.
    """
    target = "stdout" if stream == "stdout" else "stderr"
    if target in _closed_streams:
        return
    out = sys.stdout if target == "stdout" else sys.stderr
    try:
        out.write(line + "\n")
        out.flush()
    except (BrokenPipeError, ValueError):
        _closed_streams.add(target)


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


def discard_stale(path: str) -> None:
    """Remove a result file left by an earlier run before this one starts.

    The result file is written only when the run produced a result; a run that is
    killed writes none. Without this, a reader would take the previous run's
    result for this one's.
    """
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        from minigun.cli._errors import BadInput

        raise BadInput(f"cannot replace --result-file {path}: {exc}") from None
