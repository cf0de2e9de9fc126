"""Turning a child's output into log lines, each with a stream, a level and a time.

The runner reads raw chunks from pipes; callers want whole lines, as they arrive, and
a short tail for error messages. Lines are :class:`LogLine` strings that also say
which stream they came from, their logging level and when they were written, so
``on_log=logger.info`` works unchanged while an adapter can log each line at its own
level and the CLI can still send stdout lines to stdout and stderr lines to stderr.

Levels: the child's structured log records keep the level they were logged at.
Raw output has none, so it gets the conventional one: stdout is INFO, stderr WARNING,
and a Python traceback printed on stderr (from ``Traceback (most recent call last):``
to its exception line) is ERROR, so an orchestrator shows a crash as an error.
"""

from __future__ import annotations

import collections
import time

from minigun.runner.protocol import LEVELS

__all__ = ["MAX_LINE", "LineBuffer", "LogLine", "LogTail"]

_INFO, _WARNING, _ERROR = LEVELS["INFO"], LEVELS["WARNING"], LEVELS["ERROR"]
_STREAM_LEVELS = {"stdout": _INFO, "stderr": _WARNING}
_TRACEBACK_START = "Traceback (most recent call last):"
_TRACEBACK_CHAINS = (
    "During handling of the above exception",
    "The above exception was the direct cause",
)

#: A "line" longer than this is passed on in pieces, so a child printing megabytes
#: without a newline cannot make the parent's memory grow without bound.
MAX_LINE = 64 * 1024


class LogLine(str):
    """A line of child output (without its newline) that knows where it came from.

    ``stream`` is ``"stdout"``, ``"stderr"``, ``"log"`` for a log record the child
    sent on its record channel, or ``"runner"`` for the runner's own messages
    (attempt results, retries, kills). ``level`` is a :mod:`logging` level number,
    ``created`` the Unix time the line was written (the child's own clock for log
    records), ``logger`` the logger name (``minigun.*`` for minigun's own messages).
    """

    stream: str
    level: int
    created: float
    logger: str

    def __new__(
        cls,
        text: str,
        stream: str,
        *,
        level: int | None = None,
        created: float | None = None,
        logger: str | None = None,
    ) -> LogLine:
        line = super().__new__(cls, text)
        line.stream = stream
        line.level = _STREAM_LEVELS.get(stream, _INFO) if level is None else int(level)
        line.created = time.time() if created is None else float(created)
        line.logger = logger or ("minigun.runner" if stream == "runner" else f"minigun.{stream}")
        return line


class LineBuffer:
    """Accumulates bytes from one stream and hands back complete lines."""

    def __init__(self, stream: str) -> None:
        self.stream = stream
        self._pending = bytearray()
        self._in_traceback = False

    def feed(self, data: bytes) -> list[LogLine]:
        """Add a chunk; return the lines it completed (decoded, newline stripped)."""
        self._pending += data
        lines: list[LogLine] = []
        while True:
            newline = self._pending.find(b"\n")
            if newline < 0:
                if len(self._pending) >= MAX_LINE:
                    lines.append(self._decode(bytes(self._pending[:MAX_LINE])))
                    del self._pending[:MAX_LINE]
                    continue
                return lines
            lines.append(self._decode(bytes(self._pending[:newline])))
            del self._pending[: newline + 1]

    def flush(self) -> list[LogLine]:
        """The unterminated last line, if any (called once the stream is closed)."""
        if not self._pending:
            return []
        line = self._decode(bytes(self._pending))
        self._pending.clear()
        return [line]

    def _decode(self, raw: bytes) -> LogLine:
        text = raw.decode("utf-8", errors="replace").rstrip("\r")
        return LogLine(text, self.stream, level=self._level(text))

    def _level(self, text: str) -> int | None:
        """ERROR inside a traceback printed on stderr, else the stream's level."""
        if self.stream != "stderr":
            return None
        if text.startswith((_TRACEBACK_START, *_TRACEBACK_CHAINS)):
            self._in_traceback = True
            return _ERROR
        if not self._in_traceback:
            return None
        if not text or text[0].isspace():
            return _ERROR
        self._in_traceback = False  # the exception line ends the block
        return _ERROR


class LogTail:
    """The last ``size`` lines seen, for :attr:`RunOutcome.log_tail`."""

    def __init__(self, size: int = 50) -> None:
        self._lines: collections.deque[str] = collections.deque(maxlen=size)

    def add(self, line: str) -> None:
        self._lines.append(line)

    def text(self) -> str:
        return "\n".join(self._lines)
