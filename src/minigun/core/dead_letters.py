"""Dead letters: items a stage gave up on, kept so they can be inspected and replayed.

A record is ``{stage, item, error, traceback, attempts, time}``. Items that JSON
cannot represent are stored as their ``repr`` plus a base64 pickle
(``item_pickle``) so that ``minigun replay`` gets the original object back.
"""

from __future__ import annotations

import os
import threading
import time
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["DeadLetter", "DeadLetterWriter", "read_dead_letters"]


class DeadLetter:
    """One item that ended in the ``dead_letter`` policy of its stage."""

    __slots__ = ("attempts", "error", "item", "stage", "time", "traceback")

    def __init__(
        self, stage: str, item: Any, error: str, traceback: str, attempts: int, time: float
    ) -> None:
        self.stage = stage
        self.item = item
        self.error = error
        self.traceback = traceback
        self.attempts = attempts
        self.time = time

    def __repr__(self) -> str:
        return f"DeadLetter(stage={self.stage!r}, item={self.item!r}, error={self.error!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DeadLetter) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def to_dict(self) -> dict[str, Any]:
        import base64
        import json
        import pickle

        record: dict[str, Any] = {
            "stage": self.stage,
            "error": self.error,
            "traceback": self.traceback,
            "attempts": self.attempts,
            "time": self.time,
        }
        try:
            json.dumps(self.item)
            record["item"] = self.item
        except (TypeError, ValueError):
            record["item"] = repr(self.item)
            try:
                record["item_pickle"] = base64.b64encode(pickle.dumps(self.item)).decode()
            except Exception:  # unpicklable: keep the repr only
                pass
        return record

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> DeadLetter:
        import base64
        import pickle

        item = record["item"]
        if "item_pickle" in record:
            item = pickle.loads(base64.b64decode(record["item_pickle"]))
        return cls(
            stage=str(record["stage"]),
            item=item,
            error=str(record.get("error", "")),
            traceback=str(record.get("traceback", "")),
            attempts=int(record.get("attempts", 1)),
            time=float(record.get("time", 0.0)),
        )


class DeadLetterWriter:
    """Appends records to one JSON Lines file per run, created on the first record."""

    def __init__(self, directory: str | os.PathLike[str] | None, pipeline_name: str) -> None:
        from pathlib import Path

        self.directory = None if directory is None else Path(directory)
        self.pipeline_name = pipeline_name.replace(":", ".").replace("/", "_")
        self.path: Path | None = None
        self._file: IO[str] | None = None
        self._lock = threading.Lock()

    def write(self, letter: DeadLetter) -> None:
        import json

        if self.directory is None:
            return
        line = json.dumps(letter.to_dict(), default=repr)
        with self._lock:
            if self._file is None:
                self.directory.mkdir(parents=True, exist_ok=True)
                stamp = time.strftime("%Y%m%dT%H%M%S")
                self.path = self.directory / f"{self.pipeline_name}-{stamp}-{os.getpid()}.jsonl"
                self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
            self._file.write(line + "\n")
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def read_dead_letters(path: str | os.PathLike[str]) -> list[DeadLetter]:
    """Read a dead-letter file; a clear ``ValueError`` names the line that is bad."""
    import json
    from pathlib import Path

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read dead-letter file {str(path)!r}: {exc.strerror}") from None
    letters = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or "stage" not in record or "item" not in record:
                raise ValueError("a record needs 'stage' and 'item'")
            letters.append(DeadLetter.from_dict(record))
        except Exception as exc:
            raise ValueError(f"{path}:{number}: not a dead-letter record ({exc})") from None
    return letters
