"""Params are converted by the type hints of the pipeline's ``__init__`` (issue 10, finding 6).

``-p`` values travel as raw strings to the child that knows the class; a bad value is
one ``minigun: error:`` line and exit 2, which the runner never retries.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import textwrap
from pathlib import Path
from typing import Any, Literal

import pytest

import minigun as mg
from minigun.cli import run_cli as run_cli_in_process
from minigun.cli._params import parse_params
from minigun.exit_codes import ExitCode
from minigun.params import ParamError, coerce_params, instantiate
from support import run_cli


class Mode(enum.Enum):
    FAST = "fast"
    SLOW = "slow"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Report(mg.Pipeline):
    def __init__(
        self,
        day: str = "",
        pages: int = 1,
        ratio: float = 1.0,
        on: bool = False,
        when: dt.date | None = None,
        at: dt.datetime | None = None,
        out: Path = Path("."),
        mode: Mode = Mode.FAST,
        level: Level = Level.LOW,
        kind: Literal["a", "b"] = "a",
        limit: int | None = None,
        ids: list[int] | None = None,
        weights: dict[str, float] | None = None,
        pair: tuple[int, str] = (0, ""),
        tags: set[str] | None = None,
        untyped: Any = None,
        legacy=None,  # deliberately unannotated: the legacy rule
    ) -> None:
        self.params = dict(locals())
        del self.params["self"]


CONVERSIONS = [
    ("day", "2026", "2026"),
    ("day", "007", "007"),
    ("pages", "3", 3),
    ("pages", " 42 ", 42),
    ("pages", 3, 3),
    ("ratio", "2.5", 2.5),
    ("ratio", 2, 2.0),
    ("on", "yes", True),
    ("on", "FALSE", False),
    ("on", "1", True),
    ("on", True, True),
    ("when", "2026-11-28", dt.date(2026, 11, 28)),
    ("when", "none", None),
    ("when", None, None),
    ("at", "2026-11-28T02:00:00", dt.datetime(2026, 11, 28, 2)),
    ("at", "2026-11-28T02:00:00Z", dt.datetime(2026, 11, 28, 2, tzinfo=dt.timezone.utc)),
    ("out", "/tmp/x", Path("/tmp/x")),
    ("mode", "SLOW", Mode.SLOW),
    ("mode", "slow", Mode.SLOW),
    ("level", "HIGH", Level.HIGH),
    ("level", "2", Level.HIGH),
    ("level", 2, Level.HIGH),
    ("kind", "b", "b"),
    ("limit", "null", None),
    ("limit", "5", 5),
    ("ids", "[1, 2]", [1, 2]),
    ("ids", [1, 2], [1, 2]),
    ("weights", '{"a": 1, "b": 0.5}', {"a": 1.0, "b": 0.5}),
    ("pair", '[1, "x"]', (1, "x")),
    ("pair", [1, "x"], (1, "x")),
    ("tags", '["a", "b", "a"]', {"a", "b"}),
    ("untyped", "3", 3),
    ("legacy", "[1, 2]", [1, 2]),
    ("legacy", "2026-11-28", "2026-11-28"),
    ("legacy", '"7"', "7"),
    ("legacy", {"k": [1]}, {"k": [1]}),
]


@pytest.mark.parametrize(("name", "value", "expected"), CONVERSIONS)
def test_values_are_converted_by_the_annotation(name: str, value: Any, expected: Any) -> None:
    converted = coerce_params(Report, {name: value})[name]
    assert converted == expected
    assert type(converted) is type(expected)


BAD = [
    ("pages", "abc", "pages='abc' is not an int"),
    ("pages", True, "pages=True is not an int"),
    ("pages", 2.5, "pages=2.5 is not an int"),
    ("day", 2026, "day=2026 is not a str"),
    ("ratio", "fast", "ratio='fast' is not a float"),
    ("ratio", [1], "ratio=[1] is not a float"),
    ("on", "maybe", "on='maybe' is not a bool"),
    ("on", 1, "on=1 is not a bool"),
    ("when", "2026-13-01", "when='2026-13-01' is not a date"),
    ("at", "yesterday", "at='yesterday' is not a datetime"),
    ("out", "", "out='' is not a path"),
    ("mode", "WARP", "mode='WARP' is not a Mode (one of FAST, SLOW)"),
    ("kind", "c", "kind='c' is not one of 'a', 'b'"),
    ("limit", "lots", "limit='lots' is not an int or none"),
    ("ids", "[1, 2", "ids='[1, 2' is not a list"),
    ("ids", '{"a": 1}', "is not a list"),
    ("ids", '[1, "x"]', "has an element 'x' that is not an int"),
    ("weights", "[1]", "is not a dict"),
    ("pair", "[1]", "is not a tuple of 2"),
]


@pytest.mark.parametrize(("name", "value", "message"), BAD)
def test_a_bad_value_names_class_param_value_and_type(name: str, value: Any, message: str) -> None:
    with pytest.raises(ParamError) as info:
        coerce_params(Report, {name: value})
    text = str(info.value)
    assert text.startswith("bad params for Report: ")
    assert message in text
    assert "\n" not in text
    assert info.value.exit_code == ExitCode.USAGE


def test_unknown_and_missing_params_list_the_accepted_names() -> None:
    class Needs(mg.Pipeline):
        def __init__(self, day: str, pages: int = 1) -> None: ...

    with pytest.raises(ParamError, match=r"unexpected keyword argument 'dya' \(accepted: day"):
        coerce_params(Needs, {"day": "x", "dya": "x"})
    with pytest.raises(ParamError, match=r"missing a required argument: 'day' \(accepted: day"):
        coerce_params(Needs, {})


def test_the_constructors_own_value_error_is_a_param_error() -> None:
    class Picky(mg.Pipeline):
        def __init__(self, pages: int = 1) -> None:
            if pages > 10:
                raise ValueError("at most 10 pages")

    assert instantiate(Picky, {"pages": "10"}) is not None
    with pytest.raises(ParamError, match="bad params for Picky: ValueError: at most 10 pages"):
        instantiate(Picky, {"pages": "11"})


def test_string_annotations_from_future_import_are_resolved(tmp_path: Path) -> None:
    # This module itself uses `from __future__ import annotations`: every hint above is
    # a string. A hint naming something only imported for type checkers falls back to
    # the legacy rule for that param alone.
    namespace: dict[str, Any] = {}
    exec(
        textwrap.dedent(
            """
            from __future__ import annotations
            from typing import TYPE_CHECKING
            import minigun as mg
            if TYPE_CHECKING:
                from decimal import Decimal
            class Half(mg.Pipeline):
                def __init__(self, pages: int = 1, price: Decimal | None = None) -> None:
                    pass
            """
        ),
        namespace,
    )
    assert coerce_params(namespace["Half"], {"pages": "3", "price": "2"}) == {
        "pages": 3,
        "price": 2,
    }


def test_params_nested_50000_deep_are_a_param_error_not_recursion() -> None:
    deep = "[" * 50_000 + "]" * 50_000
    for name in ("legacy", "ids"):
        with pytest.raises(ParamError, match="nested too deeply"):
            coerce_params(Report, {name: deep})


def test_p_values_stay_raw_strings_and_params_json_keeps_its_types() -> None:
    params = parse_params(["day=2026", "n=3"], '{"n": 1, "ids": [1, 2], "on": true}')
    assert params == {"day": "2026", "n": "3", "ids": [1, 2], "on": True}


def test_params_json_nested_50000_deep_is_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    deep = "[" * 50_000 + "]" * 50_000
    code = run_cli_in_process(["run", "--in-process", "x.py:X", "--params-json", deep])
    assert code == ExitCode.USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "minigun: error: --params-json is nested too deeply" in err


TYPED = """
import json
import minigun as mg

class Typed(mg.Pipeline):
    execution = "inline"

    def __init__(self, day: str = "", pages: int = 1, legacy=None):
        self.seen = {"day": day, "pages": pages, "legacy": legacy}

    @mg.producer
    def show(self):
        print(json.dumps({k: [v, type(v).__name__] for k, v in self.seen.items()}))
        yield 1

    @mg.consumer
    def sink(self, x):
        pass
"""


@pytest.fixture
def typed(tmp_path: Path) -> str:
    path = tmp_path / "typed_pipeline.py"
    path.write_text(TYPED)
    return f"{path}:Typed"


def test_in_process_run_passes_a_str_for_a_str_param(
    typed: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["run", "--in-process", "--no-progress", typed, "-p", "day=2026", "-p", "pages=3"]
    assert run_cli_in_process(args) == 0
    seen = json.loads(capsys.readouterr().out.splitlines()[0])
    assert seen["day"] == ["2026", "str"] and seen["pages"] == [3, "int"]


def test_in_process_bad_value_is_one_line_exit_2(
    typed: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run_cli_in_process(["run", "--in-process", typed, "-p", "pages=abc"])
    assert code == ExitCode.USAGE
    err = capsys.readouterr().err
    assert err == "minigun: error: bad params for Typed: pages='abc' is not an int\n"


def test_through_the_runner_typed_values_arrive_typed(typed: str) -> None:
    proc = run_cli("run", typed, "-p", "day=2026", "-p", "pages=7", "-p", "legacy=[1]")
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.splitlines()[0])
    assert seen == {"day": ["2026", "str"], "pages": [7, "int"], "legacy": [[1], "list"]}


def test_through_the_runner_a_bad_value_is_exit_2_and_never_retried(typed: str) -> None:
    proc = run_cli("run", typed, "-p", "pages=abc", "--retries", "3", "--retry-delay", "0")
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("minigun: error:")]
    assert errors == ["minigun: error: bad params for Typed: pages='abc' is not an int"]
    assert "Traceback" not in proc.stderr
    assert "attempt 2" not in proc.stderr


def test_through_the_runner_50000_deep_params_are_one_line(typed: str) -> None:
    deep = "[" * 50_000 + "]" * 50_000
    proc = run_cli("run", typed, "-p", f"legacy={deep}")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "RecursionError" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("minigun: error:")]
    assert len(errors) == 1 and "nested too deeply" in errors[0]
    assert len(errors[0]) < 300
