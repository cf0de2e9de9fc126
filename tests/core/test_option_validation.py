"""Numeric options are finite numbers of the right kind (issue 10, finding 9).

``timeout=float("inf")`` used to pass validation and then fail every item with
``OverflowError`` (exit 1, retried). Every such value is now a definition error that
names the stage and the fix, before anything runs.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

import minigun as mg
from minigun.core.options import MAX_COUNT, MAX_SECONDS
from support import run_cli


def pipeline_with(**options: Any) -> mg.Pipeline:
    class P(mg.Pipeline):
        @mg.producer
        def src(self):
            yield from range(3)

        @mg.processor(**options)
        def work(self, x):
            return x

        @mg.consumer
        def sink(self, x): ...

    return P()


BAD_STAGE_OPTIONS = [
    ({"timeout": math.inf}, "timeout=inf is invalid (not finite)"),
    ({"timeout": -math.inf}, "timeout=-inf is invalid"),
    ({"timeout": math.nan}, "timeout=nan is invalid (not finite)"),
    ({"timeout": -1}, "timeout=-1 is invalid"),
    ({"timeout": True}, "timeout=True is invalid (a bool)"),
    ({"timeout": 1e300}, "timeout=1e+300 is invalid (too large)"),
    ({"timeout": 10**400}, "is invalid (too large)"),
    ({"retry_delay": math.inf}, "retry_delay=inf is invalid (not finite)"),
    ({"retry_delay": False}, "retry_delay=False is invalid (a bool)"),
    ({"threads": True}, "threads=True is invalid (a bool)"),
    ({"processes": True}, "processes=True is invalid (a bool)"),
    ({"retries": True}, "retries=True is invalid (a bool)"),
    ({"queue_size": 2**64}, "is invalid (too large)"),
    ({"chunk": 10**20}, "is invalid (too large)"),
    ({"threads": 2.0}, "threads=2.0 is invalid"),
    ({"retries": 100}, "retries=100 with retry_delay=1 would wait"),
    ({"retries": 40, "retry_delay": 0.5}, "lower retries or retry_delay"),
]


@pytest.mark.parametrize(("options", "message"), BAD_STAGE_OPTIONS, ids=lambda v: repr(v)[:40])
def test_bad_numeric_stage_option_is_a_definition_error(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(mg.PipelineDefinitionError) as info:
        pipeline_with(**options).run(execution="inline")
    text = str(info.value)
    assert text.startswith("stage 'work' of P: ")
    assert message in text
    assert "; use " in text or "; lower " in text  # the fix


def test_the_largest_allowed_values_run_without_overflow() -> None:
    result = pipeline_with(timeout=MAX_SECONDS, retries=3, retry_delay=0).run()
    assert result.ok and result.stats.total_consumed == 3
    result = pipeline_with(retries=1000, retry_delay=0).run()
    assert result.ok


def test_bad_batch_timeout_is_a_definition_error() -> None:
    class P(mg.Pipeline):
        @mg.producer
        def src(self):
            yield 1

        rows = mg.batch(5, timeout=math.inf)

        @mg.consumer
        def sink(self, x): ...

    with pytest.raises(mg.PipelineDefinitionError, match=r"stage 'rows' of P: timeout=inf"):
        P().run()


@pytest.mark.parametrize(
    "settings",
    [{"max_threads": True}, {"max_processes": 2**70}, {"queue_size": 2**63}],
    ids=repr,
)
def test_bad_pipeline_settings_are_definition_errors(settings: dict[str, Any]) -> None:
    with pytest.raises(mg.PipelineDefinitionError, match="is invalid"):
        pipeline_with().run(**settings)
    capped = type("Capped", (type(pipeline_with()),), dict(settings))
    with pytest.raises(mg.PipelineDefinitionError, match=r"pipeline Capped: .* is invalid"):
        capped().run()


def test_an_overflowing_environment_cap_is_a_definition_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MINIGUN_MAX_THREADS", str(MAX_COUNT + 1))
    with pytest.raises(mg.PipelineDefinitionError, match=r"MINIGUN_MAX_THREADS=.* is invalid"):
        pipeline_with().run()


INFINITE = """
import minigun as mg

class Infinite(mg.Pipeline):
    @mg.producer
    def src(self):
        yield from range(3)

    @mg.processor(timeout=float("inf"))
    def work(self, x):
        return x

    @mg.consumer
    def sink(self, x):
        pass
"""


def test_minigun_run_of_an_infinite_timeout_is_exit_2_and_one_line(tmp_path: Path) -> None:
    path = tmp_path / "infinite_timeout.py"
    path.write_text(INFINITE)
    proc = run_cli("run", str(path), "--retries", "2", "--retry-delay", "0")
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("minigun: error:")]
    assert errors == [
        "minigun: error: stage 'work' of Infinite: timeout=inf is invalid (not finite);"
        f" use a finite number > 0 and at most {MAX_SECONDS:g} seconds (None for no limit)"
    ]
    assert "OverflowError" not in proc.stderr
