"""Dead letters: items a stage gave up on, kept so they can be inspected and replayed.

A record is one JSON object per line: ``{stage, item, error, traceback, attempts,
time}``. The item is written in a *tagged JSON* form that keeps the Python data
pipelines carry exactly: plain JSON values stay plain (a ``str`` item is a JSON
string a person can read), and everything else is an object with a ``"$mg"`` tag::

    {"stage": "enrich", "item": {"$mg": "tuple", "v": ["2026-11-28", {"$mg": "dict",
     "v": [[7, {"$mg": "decimal", "v": "1.10"}]]}]}, "error": "KeyError: 'x'", ...}

Tags: ``tuple``, ``set``, ``frozenset``, ``dict`` (non-string keys, or a key named
``$mg``), ``bytes``, ``bytearray``, ``float`` (nan, inf, -inf), ``complex``,
``datetime`` (naive or aware; a ``zoneinfo`` zone keeps its name), ``date``,
``time``, ``timedelta``, ``decimal``, ``uuid``, ``path`` (the ``pathlib`` classes),
and three that name a class: ``enum`` (a member), ``namedtuple`` and ``dataclass``.
Those classes are looked up only among modules already imported (the pipeline's
own module is, when replaying): a dead-letter file never makes minigun import a
module, call a constructor, or unpickle anything. Pickle was rejected for exactly
that reason: whoever can write a dead-letter file would run code as whoever
replays it.

An item that cannot be kept faithfully (an arbitrary object, a cycle, a subclass
of a builtin, a class that is not loaded) is stored as its ``repr`` with
``"item_faithful": false``. Reading it back gives a :class:`DeadLetter` whose
``faithful`` is False; replay reports such records instead of feeding the repr
string to the stage. Files written by older minigun versions with an
``item_pickle`` field are read the same way: the pickle is never loaded.

Files are created exclusively (``O_EXCL``, never through a symlink) with mode 0600
under a name with a random part, in a directory created 0700 when missing; each
record is one ``os.write`` of the whole line. A write that fails (disk full, file
size limit, I/O error) never raises into the run: the writer remembers the error,
removes the torn part of the record it was writing, and the engine fails the run
with a :class:`DeadLetterWriteError` while every dead letter stays in
``result.dead_letters``. A process killed in the middle of a write can still leave
a torn last line; :func:`read_dead_letters` reports it and reads the rest.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from minigun.core.errors import MinigunError
from minigun.exit_codes import ExitCode

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "DeadLetter",
    "DeadLetterFile",
    "DeadLetterWriteError",
    "DeadLetterWriter",
    "ReplayError",
    "decode_item",
    "default_directory",
    "encode_item",
    "read_dead_letters",
]

#: The tag key of an encoded non-JSON value.
TAG = "$mg"
#: Name of the directory :func:`default_directory` returns (under the working directory).
DEFAULT_DIRECTORY_NAME = "minigun-dead-letters"
#: Deepest nesting an item may have and still be recorded faithfully.
MAX_DEPTH = 200
#: Longest ``repr`` kept for an item that cannot be recorded faithfully.
MAX_REPR = 10_000

_PATH_CLASSES = ("Path", "PosixPath", "WindowsPath", "PurePath", "PurePosixPath", "PureWindowsPath")


def default_directory() -> str:
    """The dead-letter directory of a run that names none: ``./minigun-dead-letters``.

    The CLI, the runner's child and the adapters pass it as
    ``Pipeline.run(default_dead_letter_dir=...)``, the lowest level of precedence
    (a run argument, ``MINIGUN_DEAD_LETTER_DIR`` or the class attribute
    ``dead_letter_dir`` win). It is resolved against the working directory of the
    process that calls it, so the path in the summary line is absolute.

    Why there: the working directory is where the operator who runs a job (and the
    deployment that sets its ``cwd``) already looks, and it survives the run.
    Rejected: the system temp directory (cleaned at reboot, shared by every user,
    the classic place for planted symlinks), the home directory (often read-only or
    throw-away for a scheduler's service user) and a hidden XDG state directory
    (nobody finds the items there). Set ``MINIGUN_DEAD_LETTER_DIR`` in a deployment
    whose working directory is not durable.
    """
    return os.path.abspath(DEFAULT_DIRECTORY_NAME)


class ReplayError(MinigunError, ValueError):
    """Dead letters that cannot be replayed into a pipeline; found before anything runs."""

    exit_code = ExitCode.USAGE


class DeadLetterWriteError(MinigunError, OSError):
    """Dead letters could not be written to their file (disk full, size limit, I/O).

    It fails the run (exit 1) instead of escaping from it; every dead letter,
    written or not, is still in ``result.dead_letters``.
    """


# ---------------------------------------------------------------------------- encoding


class _Unfaithful(Exception):
    """Raised while encoding: this value has no faithful tagged-JSON form."""


def _class_name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _loaded_class(name: Any) -> type:
    """The class ``module:Qual.Name`` from an already imported module (never imports)."""
    if not isinstance(name, str) or ":" not in name:
        raise _Unfaithful(f"bad class name {name!r}")
    module_name, _, qualname = name.partition(":")
    obj: Any = sys.modules.get(module_name)
    if obj is None:
        raise _Unfaithful(f"class {name} is not loaded (module {module_name} is not imported)")
    for part in qualname.split("."):
        if part.startswith("<"):
            raise _Unfaithful(f"class {name} is local to a function")
        obj = getattr(obj, part, None)
        if obj is None:
            raise _Unfaithful(f"class {name} not found")
    if not isinstance(obj, type):
        raise _Unfaithful(f"{name} is not a class")
    return obj


def _float(value: float) -> Any:
    if math.isfinite(value):
        return value
    return {TAG: "float", "v": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}


def _encode(value: Any, depth: int, active: set[int]) -> Any:
    import dataclasses
    import datetime as dt
    import decimal
    import enum
    import pathlib
    import uuid

    if depth > MAX_DEPTH:
        raise _Unfaithful("nested too deeply")
    cls = type(value)
    if value is None or cls is bool or cls is int or cls is str:
        return value
    if cls is float:
        return _float(value)
    if isinstance(value, enum.Enum):
        if value.name is None or cls.__members__.get(value.name) is not value:
            raise _Unfaithful(f"{value!r} is not a named member")  # e.g. a Flag combination
        _loaded_or_unfaithful(cls)
        return {TAG: "enum", "cls": _class_name(cls), "name": value.name}
    if cls in (list, tuple, set, frozenset, dict) or (
        isinstance(value, tuple) and hasattr(cls, "_fields")
    ):
        if id(value) in active:
            raise _Unfaithful("the item contains itself")
        active.add(id(value))
        try:
            if cls is dict:
                if all(type(k) is str and k != TAG for k in value):
                    return {k: _encode(v, depth + 1, active) for k, v in value.items()}
                pairs = [
                    [_encode(k, depth + 1, active), _encode(v, depth + 1, active)]
                    for k, v in value.items()
                ]
                return {TAG: "dict", "v": pairs}
            items = [_encode(v, depth + 1, active) for v in value]
            if cls is list:
                return items
            if cls in (tuple, set, frozenset):
                return {TAG: cls.__name__, "v": items}
            _loaded_or_unfaithful(cls)
            return {TAG: "namedtuple", "cls": _class_name(cls), "v": items}
        finally:
            active.discard(id(value))
    if cls is bytes or cls is bytearray:
        import base64

        return {TAG: cls.__name__, "v": base64.b64encode(value).decode("ascii")}
    if cls is complex:
        return {TAG: "complex", "v": [_float(value.real), _float(value.imag)]}
    if cls is dt.datetime:
        record: dict[str, Any] = {TAG: "datetime", "v": value.isoformat()}
        if value.fold:
            record["fold"] = 1
        if value.tzinfo is not None:
            key = getattr(value.tzinfo, "key", None)
            if isinstance(key, str) and type(value.tzinfo).__name__ == "ZoneInfo":
                record["tz"] = key
            elif not isinstance(value.tzinfo, dt.timezone):
                raise _Unfaithful(f"time zone {value.tzinfo!r} has no faithful form")
        return record
    if cls is dt.date:
        return {TAG: "date", "v": value.isoformat()}
    if cls is dt.time:
        if value.tzinfo is not None and not isinstance(value.tzinfo, dt.timezone):
            raise _Unfaithful(f"time zone {value.tzinfo!r} has no faithful form")
        return {TAG: "time", "v": value.isoformat()}
    if cls is dt.timedelta:
        return {TAG: "timedelta", "v": [value.days, value.seconds, value.microseconds]}
    if cls is decimal.Decimal:
        return {TAG: "decimal", "v": str(value)}
    if cls is uuid.UUID:
        return {TAG: "uuid", "v": str(value)}
    if isinstance(value, pathlib.PurePath) and cls.__name__ in _PATH_CLASSES:
        if getattr(pathlib, cls.__name__, None) is not cls:
            raise _Unfaithful(f"{cls.__name__} subclass")
        return {TAG: "path", "cls": cls.__name__, "v": str(value)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        _loaded_or_unfaithful(cls)
        names = [f.name for f in dataclasses.fields(value)]
        extra = set(getattr(value, "__dict__", {})) - set(names)
        if extra:
            raise _Unfaithful(f"attributes outside the dataclass fields: {sorted(extra)}")
        if id(value) in active:
            raise _Unfaithful("the item contains itself")
        active.add(id(value))
        try:
            fields = {n: _encode(getattr(value, n), depth + 1, active) for n in names}
        finally:
            active.discard(id(value))
        return {TAG: "dataclass", "cls": _class_name(cls), "v": fields}
    raise _Unfaithful(f"{cls.__name__} has no faithful form")


def _loaded_or_unfaithful(cls: type) -> None:
    """A class recorded by name must be findable again by that name."""
    if _loaded_class(_class_name(cls)) is not cls:
        raise _Unfaithful(f"class {_class_name(cls)} cannot be found by its name")


def encode_item(item: Any) -> tuple[Any, bool]:
    """``(json_value, faithful)``: the tagged-JSON form of ``item``, or its repr and False."""
    try:
        return _encode(item, 0, set()), True
    except (_Unfaithful, RecursionError):
        return _safe_repr(item), False


def _safe_repr(item: Any) -> str:
    try:
        text = repr(item)
    except Exception:  # a broken __repr__ must not lose the record
        text = f"<{type(item).__name__} object (repr failed)>"
    if len(text) > MAX_REPR:
        text = text[:MAX_REPR] + "...(truncated)"
    return text


def _decode(value: Any, depth: int) -> Any:
    if depth > MAX_DEPTH + 1:
        raise _Unfaithful("nested too deeply")
    if isinstance(value, list):
        return [_decode(v, depth + 1) for v in value]
    if not isinstance(value, dict):
        return value
    tag = value.get(TAG)
    if tag is None:
        return {k: _decode(v, depth + 1) for k, v in value.items()}
    import dataclasses
    import datetime as dt
    import decimal
    import enum
    import pathlib
    import uuid

    v = value.get("v")
    if tag in ("tuple", "set", "frozenset", "namedtuple"):
        items = [_decode(x, depth + 1) for x in _expect(v, list)]
        if tag == "tuple":
            return tuple(items)
        if tag == "set":
            return set(items)
        if tag == "frozenset":
            return frozenset(items)
        cls = _loaded_class(value.get("cls"))
        if not (issubclass(cls, tuple) and hasattr(cls, "_fields")):
            raise _Unfaithful(f"{value.get('cls')} is not a namedtuple")
        if len(items) != len(cls._fields):
            raise _Unfaithful(f"{value.get('cls')} has {len(cls._fields)} fields")
        return tuple.__new__(cls, items)
    if tag == "dict":
        pairs = _expect(v, list)
        out = {}
        for pair in pairs:
            if not isinstance(pair, list) or len(pair) != 2:
                raise ValueError("a dict entry must be a [key, value] pair")
            out[_decode(pair[0], depth + 1)] = _decode(pair[1], depth + 1)
        return out
    if tag in ("bytes", "bytearray"):
        import base64

        raw = base64.b64decode(_expect(v, str), validate=True)
        return raw if tag == "bytes" else bytearray(raw)
    if tag == "float":
        if v not in ("nan", "inf", "-inf"):
            raise ValueError(f"bad float {v!r}")
        return float(v)
    if tag == "complex":
        parts = _expect(v, list)
        if len(parts) != 2:
            raise ValueError("a complex needs [real, imag]")
        real, imag = (_decode(p, depth + 1) for p in parts)
        return complex(_expect(real, (int, float)), _expect(imag, (int, float)))
    if tag == "datetime":
        moment = dt.datetime.fromisoformat(_expect(v, str))
        if "tz" in value:
            from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

            try:
                zone = ZoneInfo(_expect(value["tz"], str))
            except ZoneInfoNotFoundError:
                raise _Unfaithful(f"time zone {value['tz']!r} is not known here") from None
            moment = moment.astimezone(zone)
        if value.get("fold"):
            moment = moment.replace(fold=1)
        return moment
    if tag == "date":
        return dt.date.fromisoformat(_expect(v, str))
    if tag == "time":
        return dt.time.fromisoformat(_expect(v, str))
    if tag == "timedelta":
        days, seconds, micros = (_expect(x, int) for x in _expect(v, list))
        return dt.timedelta(days=days, seconds=seconds, microseconds=micros)
    if tag == "decimal":
        return decimal.Decimal(_expect(v, str))
    if tag == "uuid":
        return uuid.UUID(_expect(v, str))
    if tag == "path":
        name = value.get("cls")
        if name not in _PATH_CLASSES:
            raise ValueError(f"bad path class {name!r}")
        return getattr(pathlib, name)(_expect(v, str))
    if tag == "enum":
        cls = _loaded_class(value.get("cls"))
        if not issubclass(cls, enum.Enum):
            raise _Unfaithful(f"{value.get('cls')} is not an Enum")
        members = cls.__members__
        member_name = _expect(value.get("name"), str)
        if member_name not in members:
            raise _Unfaithful(f"{value.get('cls')} has no member {member_name!r}")
        return members[member_name]
    if tag == "dataclass":
        cls = _loaded_class(value.get("cls"))
        if not dataclasses.is_dataclass(cls):
            raise _Unfaithful(f"{value.get('cls')} is not a dataclass")
        fields = _expect(v, dict)
        names = {f.name for f in dataclasses.fields(cls)}
        if set(fields) != names:
            raise _Unfaithful(f"{value.get('cls')} has fields {sorted(names)}, not these")
        obj = object.__new__(cls)  # no __init__: nothing of the class runs on file data
        for name, raw in fields.items():
            object.__setattr__(obj, name, _decode(raw, depth + 1))
        return obj
    raise ValueError(f"unknown tag {tag!r}")


def _expect(value: Any, kind: type | tuple[type, ...]) -> Any:
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ValueError(f"bad value {value!r}")
    return value


def decode_item(value: Any) -> Any:
    """The Python value of a tagged-JSON item (the inverse of :func:`encode_item`).

    Raises ``ValueError`` for a malformed value; a class that is not loaded raises
    ``ValueError`` too, with ``unfaithful`` in the message's reason.
    """
    try:
        return _decode(value, 0)
    except _Unfaithful as exc:
        raise _UnfaithfulRecord(str(exc)) from None
    except RecursionError:
        raise _UnfaithfulRecord("nested too deeply") from None


class _UnfaithfulRecord(ValueError):
    """A well-formed record whose item cannot be rebuilt here (class not loaded, ...)."""


# ---------------------------------------------------------------------------- records


class DeadLetter:
    """One item that ended in the ``dead_letter`` policy of its stage.

    ``faithful`` is False when ``item`` is not the original item but its ``repr``
    (the item could not be recorded faithfully, or it was read back from a record
    that says so); ``reason`` then says why. Replay never feeds such an item.
    """

    __slots__ = ("attempts", "error", "faithful", "item", "reason", "stage", "time", "traceback")

    def __init__(
        self,
        stage: str,
        item: Any,
        error: str,
        traceback: str,
        attempts: int,
        time: float,
        faithful: bool = True,
        reason: str = "",
    ) -> None:
        self.stage = stage
        self.item = item
        self.error = error
        self.traceback = traceback
        self.attempts = attempts
        self.time = time
        self.faithful = faithful
        self.reason = reason

    def __repr__(self) -> str:
        flag = "" if self.faithful else ", faithful=False"
        return f"DeadLetter(stage={self.stage!r}, item={self.item!r}, error={self.error!r}{flag})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DeadLetter) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready data (the item in tagged JSON, or its repr, marked)."""
        if self.faithful:
            item, faithful = encode_item(self.item)
        else:
            item, faithful = str(self.item), False
        record: dict[str, Any] = {
            "stage": self.stage,
            "item": item,
            "error": self.error,
            "traceback": self.traceback,
            "attempts": self.attempts,
            "time": self.time,
        }
        if not faithful:
            record["item_faithful"] = False
        return record

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> DeadLetter:
        """Rebuild a letter from its record; nothing in the record is executed.

        A record marked ``"item_faithful": false``, an old record with
        ``item_pickle`` (never unpickled), and one whose item names a class that is
        not loaded come back with ``faithful=False``. A malformed record raises
        ``ValueError``.
        """
        stage = record["stage"]
        if not isinstance(stage, str):
            raise ValueError("'stage' must be a string")
        faithful, reason = True, ""
        raw = record["item"]
        if "item_pickle" in record:
            faithful, reason = False, "recorded as a pickle by an older minigun (never loaded)"
        elif record.get("item_faithful", True) is not True:
            faithful, reason = False, "the item had no faithful form when it was recorded"
        if faithful:
            try:
                item = decode_item(raw)
            except _UnfaithfulRecord as exc:
                faithful, reason, item = False, str(exc), _safe_repr(raw)
        else:
            item = raw if isinstance(raw, str) else _safe_repr(raw)
        return cls(
            stage=stage,
            item=item,
            error=str(record.get("error", "")),
            traceback=str(record.get("traceback", "")),
            attempts=int(record.get("attempts", 1)),
            time=float(record.get("time", 0.0)),
            faithful=faithful,
            reason=reason,
        )

    def to_line(self) -> bytes:
        """The record as one JSON Lines line (ASCII, newline included)."""
        import json

        return (json.dumps(self.to_dict(), allow_nan=False, default=_safe_repr) + "\n").encode()


# ---------------------------------------------------------------------------- writing


_OPEN_FLAGS = (
    os.O_CREAT
    | os.O_EXCL
    | os.O_WRONLY
    | os.O_APPEND
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
)
#: Fresh names tried when one is taken (a planted file or symlink) before giving up.
_NAME_ATTEMPTS = 100


def _safe_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in text)[:120] or "pipeline"


class DeadLetterWriter:
    """Appends records to one JSON Lines file per run, created on the first record.

    Thread-safe. :meth:`write` never raises: the first failure is kept in
    ``error`` and later records are not attempted (they stay in memory).
    """

    def __init__(self, directory: str | os.PathLike[str] | None, pipeline_name: str) -> None:
        from pathlib import Path

        self.directory = None if directory is None else Path(directory)
        self.pipeline_name = _safe_name(pipeline_name.replace(":", "."))
        self.path: Path | None = None
        self.written = 0
        self.error: OSError | None = None
        self._fd: int | None = None
        self._size = 0  # bytes this writer put in the file
        self._complete = 0  # where its last complete record ends
        self._lock = threading.Lock()

    def write(self, letter: DeadLetter) -> bool:
        """Append ``letter``; True when it is on disk (False: no directory, or failed)."""
        if self.directory is None:
            return False
        line = letter.to_line()
        with self._lock:
            if self.error is not None:
                return False
            try:
                if self._fd is None:
                    self._fd = self._create()
                self._write_all(self._fd, line)
            except OSError as exc:
                self.error = exc
                self._discard_torn()
                return False
            self.written += 1
            return True

    def _create(self) -> int:
        import secrets

        assert self.directory is not None
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S")
        for _ in range(_NAME_ATTEMPTS):
            suffix = secrets.token_hex(6)
            path = self.directory / f"{self.pipeline_name}-{stamp}-{os.getpid()}-{suffix}.jsonl"
            try:
                fd = os.open(path, _OPEN_FLAGS, 0o600)
            except FileExistsError:
                continue
            self.path = path
            return fd
        raise FileExistsError(
            f"no free dead-letter file name in {self.directory} after {_NAME_ATTEMPTS} tries"
        )

    def _write_all(self, fd: int, data: bytes) -> None:
        """One ``os.write`` of the whole line; more only if the kernel writes it short."""
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            self._size += n
            view = view[n:]
        self._complete = self._size

    def _discard_torn(self) -> None:
        """After a failed write: cut the part of the record that did get written.

        The file was created exclusively and only this writer appends to it, so
        its complete records end at ``_complete``; shrinking a file works on a
        full disk too. Then the file is closed: no later record is attempted.
        """
        if self._fd is None:
            return
        if self._size > self._complete:
            try:
                os.ftruncate(self._fd, self._complete)
                self._size = self._complete
            except OSError:
                pass
        self._close()

    def _close(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None

    def close(self) -> None:
        with self._lock:
            self._close()


# ---------------------------------------------------------------------------- reading


class DeadLetterFile(list[DeadLetter]):
    """The records of a dead-letter file, plus what the reader had to report.

    ``torn`` is 1 when the last line was cut short (a process killed mid-write,
    a full disk) and was left out; ``torn_bytes`` is its length. ``unfaithful``
    lists the letters whose item is only a repr.
    """

    def __init__(self, letters: list[DeadLetter], path: str, torn: int, torn_bytes: int) -> None:
        super().__init__(letters)
        self.path = path
        self.torn = torn
        self.torn_bytes = torn_bytes

    @property
    def unfaithful(self) -> list[DeadLetter]:
        return [letter for letter in self if not letter.faithful]


def _parse(line: bytes) -> DeadLetter:
    import json

    record = json.loads(line)
    if not isinstance(record, dict) or "stage" not in record or "item" not in record:
        raise ValueError("a record needs 'stage' and 'item'")
    return DeadLetter.from_dict(record)


def read_dead_letters(path: str | os.PathLike[str]) -> DeadLetterFile:
    """Read a dead-letter file without executing anything in it.

    A torn last record (no newline at the end and not a whole record) is left out,
    counted in ``torn`` and logged as a warning; every other bad line is a clear
    ``ValueError`` that names the file and line.
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise ValueError(f"cannot read dead-letter file {name!r}: {exc.strerror}") from None
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    letters: list[DeadLetter] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            letters.append(_parse(line))
        except Exception as exc:
            raise ValueError(f"{name}:{number}: not a dead-letter record ({exc})") from None
    torn = torn_bytes = 0
    if tail.strip(b" \t\r\x00"):
        try:
            letters.append(_parse(tail))
        except Exception:
            import logging

            torn, torn_bytes = 1, len(tail)
            logging.getLogger("minigun.dead_letters").warning(
                "%s:%d: the last record is torn (%d bytes, cut short while it was written);"
                " read the %d complete record(s) before it",
                name,
                len(lines) + 1,
                torn_bytes,
                len(letters),
            )
    return DeadLetterFile(letters, name, torn, torn_bytes)
