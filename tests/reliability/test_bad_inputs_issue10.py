"""Bad inputs of issue 10's findings: each refused cleanly now (one line, exit 2).

Each row failed before the fixes; what happened then, for the record (Python 3.11):

- ``cli-p-typed-int``, ``cli-p-typed-int-in-process``: ``-p pages=abc`` for
  ``pages: int`` is passed on as a string; the producer's ``range("abc")`` fails the
  run: exit 1 (retried by the runner) with a traceback.
- ``cli-p-typed-float``: ``-p ratio=fast`` for ``ratio: float`` is accepted as the
  string "fast" (exit 0).
- ``cli-p-typed-str``: ``-p day=2026`` for ``day: str`` arrives as the int 2026.
- ``stage-timeout-inf``: ``timeout=float('inf')`` passes validation; every item then
  fails with ``OverflowError`` (exit 1, retried).
- ``spec-retries-bool``, ``adapter-retries-bool``: ``retries=True`` is accepted as 1.
- ``cli-replay-unknown-stage``, ``cli-replay-producer``: a record for a stage the
  pipeline does not have (or for its producer): exit 1 and a traceback.
- ``cli-target-escape-sequence``: the raw ESC bytes of the target path are echoed
  into the error line (terminal injection).
- ``max-threads-is-a-cap-*``: ``--max-threads 4`` / ``run(max_threads=4)`` /
  ``MINIGUN_MAX_THREADS=4`` raise a one-thread consumer to four threads.
- ``*-params-50000-deep``: ``RecursionError`` (CLI: exit 1 and a traceback; RunSpec
  and build_spec: a ``RecursionError`` instead of ``ValueError``/``InvalidRunSpec``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

import minigun as mg
from minigun.adapters._common import InvalidRunSpec, build_spec
from minigun.runner import RunSpec
from reliability.catalogue import (
    Bad,
    check_cli_row,
    check_python_row,
    deep_json,
    deep_list,
    define,
    params,
    run_cli,
)

PDE = mg.PipelineDefinitionError
T = "reliability.faulty:Small"
TYPED = "reliability.faulty:Typed"
DEEP = 50_000

FINDINGS_PYTHON = [
    Bad(
        "stage-timeout-inf",
        PDE,
        "timeout=inf is invalid",
        lambda: define({"timeout": math.inf}).run(execution="inline"),
    ),
    Bad(
        "spec-retries-bool",
        ValueError,
        "retries must be an integer >= 0, got True",
        lambda: RunSpec(T, retries=True),
    ),
    Bad(
        "adapter-retries-bool",
        InvalidRunSpec,
        "retries must be an integer >= 0, got True",
        lambda: build_spec(T, runner_retries=True),
    ),
    Bad(
        "spec-params-50000-deep",
        ValueError,
        "params",
        lambda: RunSpec(T, params={"x": deep_list(DEEP)}),
    ),
    Bad(
        "adapter-params-50000-deep",
        InvalidRunSpec,
        "params",
        lambda: build_spec(T, {"x": deep_list(DEEP)}),
    ),
]

FINDINGS_CLI = [
    Bad("cli-p-typed-int", 2, "pages", argv=["run", TYPED, "-p", "pages=abc"]),
    Bad(
        "cli-p-typed-int-in-process",
        2,
        "pages",
        argv=["run", "--in-process", TYPED, "-p", "pages=abc"],
    ),
    Bad("cli-p-typed-float", 2, "ratio", argv=["run", "--in-process", TYPED, "-p", "ratio=fast"]),
    Bad(
        "cli-replay-unknown-stage",
        2,
        "nope",
        argv=["replay", "{tmp}/unknown-stage.jsonl", "reliability.faulty:BigDeadLetters"],
    ),
    Bad(
        "cli-replay-producer",
        2,
        "items",
        argv=["replay", "{tmp}/producer.jsonl", "reliability.faulty:BigDeadLetters"],
    ),
    Bad("cli-target-escape-sequence", 2, "x1b", argv=["run", "{tmp}/\x1b]0;owned\x07\x1b[2J.py:X"]),
    Bad(
        "cli-params-json-50000-deep",
        2,
        "params",
        argv=["run", T, "--params-json", '{"x": ' + deep_json(DEEP) + "}"],
    ),
    Bad("cli-p-50000-deep", 2, "x", argv=["run", "--in-process", T, "-p", "x=" + deep_json(DEEP)]),
]


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """Dead-letter files whose records name a stage the target lacks, or its producer."""
    from reliability.faulty import BigDeadLetters

    done = BigDeadLetters(n=2, size=8).run(dead_letter_dir=str(tmp_path / "dl"))
    assert done.dead_letters, done
    (recorded,) = (tmp_path / "dl").iterdir()
    lines = [json.loads(line) for line in recorded.read_text().splitlines()]
    for name, stage in (("unknown-stage", "nope"), ("producer", "items")):
        with open(tmp_path / f"{name}.jsonl", "w") as fh:
            for record in lines:
                fh.write(json.dumps({**record, "stage": stage}) + "\n")
    return tmp_path


@params(FINDINGS_PYTHON)
def test_findings_python_rows(row: Bad, monkeypatch: pytest.MonkeyPatch) -> None:
    check_python_row(row, monkeypatch)


@params(FINDINGS_CLI)
def test_findings_cli_rows(row: Bad, scratch: Path) -> None:
    check_cli_row(row, scratch)


def test_typed_p_keeps_a_str_param_a_string(tmp_path: Path) -> None:
    """``-p day=2026`` for ``day: str`` is the string "2026" (the pipeline checks)."""
    proc = run_cli(["run", "--in-process", TYPED, "-p", "day=2026"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.parametrize(
    ("how", "argv", "env"),
    [
        ("cli", ["--max-threads", "4"], {}),
        ("env", [], {"MINIGUN_MAX_THREADS": "4"}),
    ],
    ids=["max-threads-is-a-cap-cli", "max-threads-is-a-cap-env"],
)
def test_max_threads_never_raises_a_stages_own_count(
    how: str, argv: list[str], env: dict[str, str], tmp_path: Path
) -> None:
    proc = run_cli(
        ["run", "--in-process", "reliability.faulty:OneThreadSink", *argv], tmp_path, env
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_max_threads_is_a_cap_in_run() -> None:
    from reliability.faulty import OneThreadSink

    result = OneThreadSink().run(max_threads=4)
    assert result.status == "succeeded", result.error
    assert result.stats.stages["save"]["workers"] == 1
