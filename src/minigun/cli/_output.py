"""Small output helpers shared by the commands: stderr messages, the result file."""

from __future__ import annotations

import errno
import json
import logging
import os
import stat
from typing import Any

from minigun.cli._logging import emit_child_line, ensure_configured

__all__ = ["discard_stale", "not_a_regular_file", "say", "state", "write_json_atomic"]


class _State:
    """Process-wide CLI switches set by the group callback (``--debug``)."""

    debug: bool = False


state = _State()


def say(message: str, level: int = logging.INFO) -> None:
    """One status line of the CLI (``minigun: …`` on stderr, or a JSON line; see
    :mod:`minigun.cli._logging`), logged under ``minigun.cli`` at ``level``.

    Never raises: when the reader is gone (a runner that was SIGKILLed) a status
    message must not be what stops this process from shutting its run down.
    """
    ensure_configured()
    logging.getLogger("minigun.cli").log(level, message)


def echo_line(line: str, stream: str) -> None:
    """Relay one line of a child's output (a :class:`~minigun.runner.LogLine` keeps its
    level, time and logger): ``stdout`` to stdout, anything else to stderr."""
    emit_child_line(
        str(line),
        stream=stream,
        level=getattr(line, "level", None),
        created=getattr(line, "created", None),
        logger=getattr(line, "logger", None),
    )


def write_json_atomic(path: str, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` so a reader sees the old file or the new one.

    A temporary file in the same directory is written, fsynced and renamed over the
    target: an orchestrator polling for the result never reads half a document, even
    if the run is killed mid-write.

    Only a regular file is ever replaced. ``--result-file`` was checked by
    :func:`discard_stale` when the run started; if something that is not a regular
    file (a device node, a FIFO, a directory, a symlink) has appeared at ``path``
    since, it is left untouched and :class:`FileExistsError` is raised: renaming over
    ``/dev/full`` as root would replace the device node with a file.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    import tempfile  # only when a result is written: keeps the CLI's start-up lean

    fd, tmp = tempfile.mkstemp(prefix=".minigun-result-", suffix=".json", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=False, default=str)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        problem = not_a_regular_file(path)
        if problem is not None:
            raise FileExistsError(errno.EEXIST, f"{problem}; left untouched", path)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def not_a_regular_file(path: str) -> str | None:
    """None when ``path`` is a regular file or does not exist; else what it is instead.

    Looked at with ``lstat``: a symlink is reported as one (with what it points to),
    never followed, so a planted link cannot redirect or destroy anything.
    """
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISREG(info.st_mode):
        return None
    if stat.S_ISLNK(info.st_mode):
        try:
            target = _kind(os.stat(path).st_mode)
        except OSError:
            return "a dangling symlink"
        return f"a symlink to {target}"
    return _kind(info.st_mode)


def _kind(mode: int) -> str:
    kinds = [
        (stat.S_ISREG, "a regular file"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
    ]
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def discard_stale(path: str) -> None:
    """Check ``--result-file`` and remove a result left by an earlier run, at start.

    The result file is written only when the run produced a result; a run that is
    killed writes none. Without this, a reader would take the previous run's
    result for this one's.

    ``path`` must be a regular file or not exist yet. Anything else -- a device node
    (``/dev/null``, ``/dev/full``, ``/dev/stdout``), a FIFO, a socket, a directory, or
    a symlink (to anything: the last component is never followed) -- is refused
    with a usage error before the run starts, and left untouched. Writing "in place"
    to a character device was considered and rejected: the result is written
    atomically (temporary file, then rename), which only a regular file allows, and
    ``/dev/stdout`` would mix the JSON into the pipeline's own output; read the file
    (or use ``minigun report``) instead.
    """
    from minigun._text import escape_controls
    from minigun.cli._errors import BadInput

    shown = escape_controls(path)
    try:
        problem = not_a_regular_file(path)
    except OSError as exc:
        raise BadInput(f"cannot use --result-file {shown}: {exc.strerror or exc}") from None
    if problem is not None:
        raise BadInput(
            f"--result-file {shown} is {problem}, not a regular file; name a regular file"
            " or a new path (the result replaces it atomically)"
        )
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise BadInput(f"cannot replace --result-file {shown}: {exc.strerror or exc}") from None
