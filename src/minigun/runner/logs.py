"""Turning a child's output bytes into log lines.

The runner reads raw chunks from pipes; callers want whole lines, as they arrive, and
a short tail for error messages. Lines are :class:`LogLine` strings that also say
which stream they came from, so ``on_log=logger.info`` works unchanged while the CLI
can still send stdout lines to stdout and stderr lines to stderr.
"""

from __future__ import annotations

import collections

__all__ = ["MAX_LINE", "LineBuffer", "LogLine", "LogTail"]

#: A "line" longer than this is passed on in pieces, so a child printing megabytes
#: without a newline cannot make the parent's memory grow without bound.
MAX_LINE = 64 * 1024


class LogLine(str):
    """A line of child output (without its newline) that knows its stream.

    ``stream`` is ``"stdout"``, ``"stderr"``, or ``"runner"`` for the runner's own
    messages (attempt results, retries, kills).
    """

    stream: str

    def __new__(cls, text: str, stream: str) -> LogLine:
        line = super().__new__(cls, text)
        line.stream = stream
        return line


class LineBuffer:
    """Accumulates bytes from one stream and hands back complete lines."""

    def __init__(self, stream: str) -> None:
        self.stream = stream
        self._pending = bytearray()

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
        return LogLine(raw.decode("utf-8", errors="replace").rstrip("\r"), self.stream)


class LogTail:
    """The last ``size`` lines seen, for :attr:`RunOutcome.log_tail`."""

    def __init__(self, size: int = 50) -> None:
        self._lines: collections.deque[str] = collections.deque(maxlen=size)

    def add(self, line: str) -> None:
        self._lines.append(line)

    def text(self) -> str:
        return "\n".join(self._lines)
