"""Dead-letter records keep items exactly, mark what they cannot keep, and never execute.

Each test writes a real file through a real run (or the writer) and reads it back.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import json
import math
import pickle
import uuid
from collections import namedtuple
from decimal import Decimal
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import pytest

import minigun as mg
from minigun.core.dead_letters import DeadLetter, decode_item, encode_item


class Colour(enum.Enum):
    RED = 1
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1


Point = namedtuple("Point", "x y")


@dataclasses.dataclass(frozen=True)
class Row:
    id: int
    tags: tuple[str, ...]
    seen: dt.date


GUARDED_CALLS: list[int] = []


@dataclasses.dataclass
class Guarded:
    x: int

    def __post_init__(self) -> None:
        GUARDED_CALLS.append(self.x)


class Opaque:
    """Neither JSON nor any tagged form: stored as its repr, marked unfaithful."""

    def __repr__(self) -> str:
        return "Opaque()"


UTC_PLUS_2 = dt.timezone(dt.timedelta(hours=2))

FAITHFUL: list[tuple[str, Any]] = [
    ("tuple", (1, "a", None)),
    ("nested-tuple", ((1, 2), [3, (4,)])),
    ("empty-tuple", ()),
    ("list", [1, [2, [3]]]),
    ("set", {1, 2, 3}),
    ("frozenset", frozenset({"a", "b"})),
    ("set-of-tuples", {(1, 2), (3, 4)}),
    ("int-keys", {7: "seven", 8: [1]}),
    ("mixed-keys", {1: "a", "1": "b", (1, 2): "c", None: "d", 1.5: "e", False: "f"}),
    ("tag-key", {"$mg": "tuple", "v": [1]}),
    ("bytes", b"\x00\xffabc"),
    ("bytearray", bytearray(b"xyz")),
    ("naive-datetime", dt.datetime(2026, 11, 28, 3, 4, 5, 123456)),
    ("aware-datetime", dt.datetime(2026, 11, 28, 3, 4, 5, tzinfo=dt.timezone.utc)),
    ("offset-datetime", dt.datetime(2026, 11, 28, 3, 4, 5, tzinfo=UTC_PLUS_2)),
    ("fold-datetime", dt.datetime(2026, 10, 25, 2, 30, fold=1)),
    ("date", dt.date(2026, 11, 28)),
    ("time", dt.time(23, 59, 58, 1)),
    ("aware-time", dt.time(1, 2, tzinfo=UTC_PLUS_2)),
    ("timedelta", dt.timedelta(days=-1, seconds=5, microseconds=7)),
    ("decimal", Decimal("1.10")),
    ("decimal-nan", Decimal("-Infinity")),
    ("uuid", uuid.UUID("12345678-1234-5678-1234-567812345678")),
    ("complex", complex(1.5, -2)),
    ("inf", float("inf")),
    ("neg-inf", float("-inf")),
    ("neg-zero", -0.0),
    ("big-int", 2**100),
    ("path", Path("/data/x.csv")),
    ("pure-posix-path", PurePosixPath("a/b")),
    ("pure-windows-path", PureWindowsPath("C:/a/b")),
    ("enum", Colour.GREEN),
    ("int-enum", Level.LOW),
    ("namedtuple", Point(1, (2, 3))),
    ("dataclass", Row(1, ("a", "b"), dt.date(2026, 1, 2))),
    ("str", "plain text"),
    ("unicode", "naïve ☃"),
    ("bool", True),
    ("none", None),
    (
        "everything-nested",
        {
            "rows": [(1, {2: b"x"}), {frozenset({1}): dt.date(2020, 1, 1)}],
            3: {Decimal("2.5"), uuid.UUID(int=1)},
        },
    ),
]


def _same(a: Any, b: Any) -> bool:
    """Equal, with the same types all the way down (a tuple is not a list)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, dict):
        if len(a) != len(b):
            return False
        keys_b = list(b)
        for key in a:
            match = [k for k in keys_b if _same(k, key)]
            if not match or not _same(a[key], b[match[0]]):
                return False
        return True
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dt.datetime):
        return a == b and a.tzinfo == b.tzinfo and a.fold == b.fold
    return a == b


def _dead_letter_all(items: list[Any], directory: Path) -> mg.RunResult:
    class DeadLetterAll(mg.Pipeline):
        @mg.producer
        def src(self):
            yield from items

        @mg.consumer(on_error="dead_letter")
        def sink(self, x):
            raise ValueError("no")

    return DeadLetterAll().run(execution="inline", dead_letter_dir=str(directory))


@pytest.mark.parametrize(("name", "item"), FAITHFUL, ids=[n for n, _ in FAITHFUL])
def test_item_round_trips_exactly_through_a_dead_letter_file(
    name: str, item: Any, tmp_path: Path
) -> None:
    result = _dead_letter_all([item], tmp_path)
    (letter,) = mg.read_dead_letters(result.dead_letter_file)
    assert letter.faithful, letter.reason
    assert _same(letter.item, item), (letter.item, item)


def test_nan_round_trips_and_the_file_is_strict_json(tmp_path: Path) -> None:
    result = _dead_letter_all([float("nan"), complex(float("nan"), 1)], tmp_path)
    text = Path(result.dead_letter_file).read_text()
    assert "NaN" not in text  # strict JSON: other tools can read it
    first, second = mg.read_dead_letters(result.dead_letter_file)
    assert math.isnan(first.item)
    assert math.isnan(second.item.real) and second.item.imag == 1


def test_aware_datetime_keeps_its_zoneinfo_zone(tmp_path: Path) -> None:
    zoneinfo = pytest.importorskip("zoneinfo")
    try:
        zone = zoneinfo.ZoneInfo("Europe/Paris")
    except zoneinfo.ZoneInfoNotFoundError:
        pytest.skip("no tz database here")
    moment = dt.datetime(2026, 10, 25, 2, 30, fold=1, tzinfo=zone)
    result = _dead_letter_all([moment], tmp_path)
    (letter,) = mg.read_dead_letters(result.dead_letter_file)
    assert letter.item == moment and letter.item.tzinfo is zone
    assert letter.item.utcoffset() == moment.utcoffset()


def test_plain_json_items_stay_plain_and_readable(tmp_path: Path) -> None:
    items = ["a line of text", 42, 1.5, None, True, [1, "x"], {"k": {"n": [1]}}]
    result = _dead_letter_all(items, tmp_path)
    records = [json.loads(line) for line in Path(result.dead_letter_file).read_text().splitlines()]
    assert [r["item"] for r in records] == items
    assert all("item_faithful" not in r for r in records)
    assert {"stage", "item", "error", "traceback", "attempts", "time"} <= set(records[0])


def test_a_tuple_is_not_a_list_and_int_keys_stay_ints(tmp_path: Path) -> None:
    """Finding 3: a tuple came back as a list and {7: ...} as {'7': ...}."""
    result = _dead_letter_all([(1, 2), {7: "a"}], tmp_path)
    pair, mapping = (letter.item for letter in mg.read_dead_letters(result.dead_letter_file))
    assert pair == (1, 2) and type(pair) is tuple
    assert mapping == {7: "a"}


UNFAITHFUL = [
    ("object", Opaque()),
    ("in-a-list", [1, Opaque()]),
    ("cycle", None),
    ("too-deep", None),
    ("local-class", None),
    ("str-subclass", None),
]


def _unfaithful_item(name: str) -> Any:
    if name == "cycle":
        loop: list[Any] = [1]
        loop.append(loop)
        return loop
    if name == "too-deep":
        deep: Any = 1
        for _ in range(5000):
            deep = [deep]
        return deep
    if name == "local-class":

        @dataclasses.dataclass
        class Local:
            x: int

        return Local(1)
    if name == "str-subclass":

        class Label(str):
            pass

        return Label("x")
    return dict(UNFAITHFUL)[name]


@pytest.mark.parametrize("name", [n for n, _ in UNFAITHFUL])
def test_an_item_without_a_faithful_form_is_marked_and_kept_as_repr(
    name: str, tmp_path: Path
) -> None:
    item = _unfaithful_item(name)
    result = _dead_letter_all([item], tmp_path)
    assert result.dead_letters[0].item is item  # in memory: the real object
    record = json.loads(Path(result.dead_letter_file).read_text())
    assert record["item_faithful"] is False and isinstance(record["item"], str)
    (letter,) = mg.read_dead_letters(result.dead_letter_file)
    assert not letter.faithful and letter.reason
    assert isinstance(letter.item, str)


def test_an_enum_whose_module_is_not_loaded_reads_back_unfaithful(tmp_path: Path) -> None:
    line = json.dumps(
        {
            "stage": "work",
            "item": {"$mg": "enum", "cls": "module_nobody_imported:Colour", "name": "RED"},
            "error": "",
            "traceback": "",
            "attempts": 1,
            "time": 0,
        }
    )
    path = tmp_path / "letters.jsonl"
    path.write_text(line + "\n")
    (letter,) = mg.read_dead_letters(path)
    assert not letter.faithful and "not loaded" in letter.reason
    import sys

    assert "module_nobody_imported" not in sys.modules  # reading never imports


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


def test_an_item_pickle_in_a_file_is_never_unpickled(tmp_path: Path) -> None:
    """Finding 10: reading a record whose unpickling runs code ran that code."""
    marker = tmp_path / "pwned"
    payload = base64.b64encode(pickle.dumps(_Exploit(marker))).decode()
    record = {
        "stage": "work",
        "item": "<repr>",
        "item_pickle": payload,
        "error": "",
        "traceback": "",
        "attempts": 1,
        "time": 0,
    }
    path = tmp_path / "old.jsonl"
    path.write_text(json.dumps(record) + "\n")
    (letter,) = mg.read_dead_letters(path)
    assert not marker.exists()
    assert not letter.faithful and "pickle" in letter.reason and letter.item == "<repr>"


def test_no_pickle_is_written(tmp_path: Path) -> None:
    result = _dead_letter_all([Opaque(), {1, 2}], tmp_path)
    assert "item_pickle" not in Path(result.dead_letter_file).read_text()


def test_a_dataclass_is_rebuilt_without_running_its_constructor() -> None:
    encoded, faithful = encode_item(Guarded(5))
    assert faithful and GUARDED_CALLS == [5]
    decoded = decode_item(encoded)
    assert type(decoded) is Guarded and decoded.x == 5
    assert GUARDED_CALLS == [5]  # the fields were set; __init__/__post_init__ never ran


def test_result_json_uses_the_same_faithful_form(tmp_path: Path) -> None:
    result = _dead_letter_all([(1, 2)], tmp_path)
    record = result.to_dict()["dead_letters"][0]
    assert DeadLetter.from_dict(record).item == (1, 2)
