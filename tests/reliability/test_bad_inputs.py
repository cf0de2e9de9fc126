"""The catalogue of bad inputs: every surface refuses each with one clear line.

Python rows: the exception type and a fragment of its message (one line, no
traceback). CLI rows: exit code 2 and one ``minigun: error:`` line on stderr. The rows
that issue 10's fixes will make pass live in ``test_bad_inputs_issue10.py``.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import minigun as mg
from minigun.adapters._common import InvalidRunSpec, build_spec
from minigun.runner import RunSpec
from reliability.catalogue import (
    Bad,
    C,
    P,
    W,
    body,
    check_cli_row,
    check_python_row,
    define,
    params,
    run_defined,
    run_with,
)

PDE = mg.PipelineDefinitionError
T = "reliability.faulty:Small"


class NotAPipeline:
    pass


class Empty(mg.Pipeline):
    """Takes no params: ``mg.nested(Empty, speed=3)`` is a bad nesting."""

    @mg.consumer
    def sink(self, x: Any) -> None:
        pass


class OnlyProducer(mg.Pipeline):
    """Nothing to feed: invalid as a nested pipeline."""

    @mg.producer
    def only(self) -> Any:
        yield 1


class Loop(mg.Pipeline):
    pass


Loop.inner = mg.nested(Loop)  # type: ignore[attr-defined]


def hidden_stage() -> None:
    pipeline = define()
    pipeline.work = 5  # an instance attribute that hides the stage method
    pipeline.run(execution="inline")


def without_distributed(attempt: Callable[[], Any]) -> Callable[[], Any]:
    """``attempt`` as on a machine without the dask extra: ``None`` in ``sys.modules``
    is how Python marks a module that cannot be imported."""

    def attempt_without() -> Any:
        saved = sys.modules.get("distributed")
        sys.modules["distributed"] = None  # type: ignore[assignment]
        try:
            return attempt()
        finally:
            if saved is None:
                del sys.modules["distributed"]
            else:
                sys.modules["distributed"] = saved

    return attempt_without


def shared_custom_stage() -> None:
    class Echo(mg.Stage):
        def process(self, item: Any, out: mg.Out) -> None:
            out.emit(item)

    echo = Echo()
    body(src=P(), a=echo, b=echo, sink=C())()


DEFINITIONS = [
    Bad(
        "unknown-option",
        PDE,
        "unknown option 'thread' (did you mean 'threads'?)",
        run_defined({"thread": 4}),
    ),
    Bad("bad-execution", PDE, "execution='warp' is invalid", run_defined({"execution": "warp"})),
    Bad("execution-typo", PDE, "did you mean 'ipc_fork'", run_defined({"execution": "ipcfork"})),
    Bad("threads-zero", PDE, "threads=0 is invalid", run_defined({"threads": 0})),
    Bad("threads-bool", PDE, "threads=True is invalid", run_defined({"threads": True})),
    Bad("threads-float", PDE, "threads=2.5 is invalid", run_defined({"threads": 2.5})),
    Bad("processes-negative", PDE, "processes=-1 is invalid", run_defined({"processes": -1})),
    Bad(
        "processes-and-max",
        PDE,
        "give processes= or its alias max=, not both",
        run_defined({"processes": 2, "max": 2}),
    ),
    Bad("queue-size-zero", PDE, "queue_size=0 is invalid", run_defined({"queue_size": 0})),
    Bad("chunk-zero", PDE, "chunk=0 is invalid", run_defined({"chunk": 0})),
    Bad("retries-negative", PDE, "retries=-1 is invalid", run_defined({"retries": -1})),
    Bad("retries-float", PDE, "retries=1.5 is invalid", run_defined({"retries": 1.5})),
    Bad("retry-delay-negative", PDE, "retry_delay=-1 is invalid", run_defined({"retry_delay": -1})),
    Bad("timeout-zero", PDE, "timeout=0 is invalid", run_defined({"timeout": 0})),
    Bad("timeout-nan", PDE, "timeout=nan is invalid", run_defined({"timeout": math.nan})),
    Bad("timeout-string", PDE, "timeout='5' is invalid", run_defined({"timeout": "5"})),
    Bad(
        "on-error-unknown", PDE, "on_error='ignore' is invalid", run_defined({"on_error": "ignore"})
    ),
    Bad(
        "on-error-typo", PDE, "did you mean 'dead_letter'", run_defined({"on_error": "deadletter"})
    ),
    Bad("to-number", PDE, "to=5 is invalid", run_defined({"to": 5})),
    Bad("from-empty-list", PDE, "from_=[] is invalid", run_defined({"from_": []})),
    Bad(
        "to-unknown-stage", PDE, "to= names unknown stage 'nowhere'", run_defined({"to": "nowhere"})
    ),
    Bad("dask-address-number", PDE, "dask_address=5 is invalid", run_defined({"dask_address": 5})),
    Bad("dask-address-empty", PDE, "dask_address='' is invalid", run_defined({"dask_address": ""})),
    Bad("dask-address-run", PDE, "run(): dask_address=5 is invalid", run_with(dask_address=5)),
    Bad("max-in-flight-zero", PDE, "max_in_flight=0 is invalid", run_defined({"max_in_flight": 0})),
    Bad(
        "dask-without-distributed",
        PDE,
        "execution='dask' needs the 'distributed' package, which is not installed;"
        " install the dask extra: pip install 'minigun-pipelines[dask]'"
        " (or '.[dask]' in a checkout)",
        without_distributed(lambda: define({"execution": "dask"}).run()),
    ),
    Bad(
        "producer-with-from",
        PDE,
        "a producer takes no input",
        run_defined(source={"from_": "work"}),
    ),
    Bad("consumer-with-to", PDE, "a consumer has no outputs", run_defined(sink={"to": "work"})),
    Bad("to-a-producer", PDE, "to= names producer 'source'", run_defined({"to": "source"})),
    Bad("from-a-consumer", PDE, "from_= names consumer 'sink'", run_defined({"from_": "sink"})),
    Bad("no-producer", PDE, "has no producer", body(work=W(), sink=C())),
    Bad("producer-feeds-nothing", PDE, "this producer feeds no stage", body(src=P())),
    Bad("unreachable-stage", PDE, "is unreachable", body(src=P(to="sink"), lost=W(), sink=C())),
    Bad(
        "processor-arity",
        PDE,
        "a processor takes (self, item) or (self, item, out)",
        body(src=P(), work=mg.processor(lambda self, a, b, c: a), sink=C()),
    ),
    Bad(
        "consumer-with-out",
        PDE,
        "consumers have no outputs",
        body(src=P(), sink=mg.consumer(lambda self, x, out: None)),
    ),
    Bad(
        "nested-not-a-pipeline",
        PDE,
        "mg.nested() takes a Pipeline class",
        body(src=P(), inner=mg.nested(NotAPipeline), sink=C()),
    ),
    Bad(
        "nested-bad-params",
        PDE,
        "bad params for nested pipeline",
        body(src=P(), inner=mg.nested(Empty, speed=3), sink=C()),
    ),
    Bad(
        "nested-nothing-to-feed",
        PDE,
        "has no processor or consumer to feed",
        body(src=P(), inner=mg.nested(OnlyProducer), sink=C()),
    ),
    Bad(
        "nested-recursive",
        PDE,
        "nesting must not be recursive",
        body(src=P(), inner=mg.nested(Loop), sink=C()),
    ),
    Bad("custom-stage-shared", PDE, "the same Stage object is also stage", shared_custom_stage),
    Bad("attribute-hides-stage", PDE, "hides the stage method", hidden_stage),
    Bad("batch-size-zero", PDE, "size=0 is invalid", body(src=P(), b=mg.batch(0), sink=C())),
    Bad(
        "batch-timeout-negative",
        PDE,
        "timeout=-1 is invalid",
        body(src=P(), b=mg.batch(5, timeout=-1), sink=C()),
    ),
    Bad(
        "decorator-positional",
        TypeError,
        "takes keyword options only",
        lambda: mg.processor("fast"),
    ),
]

RUN_ARGUMENTS = [
    Bad("run-unknown-setting", PDE, "run(): unknown setting(s) thread", run_with(thread=2)),
    Bad("run-bad-execution", PDE, "execution='fast' is invalid", run_with(execution="fast")),
    Bad("run-max-threads-zero", PDE, "max_threads=0 is invalid", run_with(max_threads=0)),
    Bad(
        "run-max-processes-negative", PDE, "max_processes=-2 is invalid", run_with(max_processes=-2)
    ),
    Bad("run-queue-size-string", PDE, "queue_size='big' is invalid", run_with(queue_size="big")),
    Bad(
        "run-max-dead-letters-negative",
        PDE,
        "max_dead_letters=-1 is invalid",
        run_with(max_dead_letters=-1),
    ),
    Bad(
        "run-dead-letter-dir-number",
        PDE,
        "dead_letter_dir=5 is invalid",
        run_with(dead_letter_dir=5),
    ),
    Bad("run-stats-string", PDE, "stats='yes' is invalid", run_with(stats="yes")),
    Bad("env-execution", PDE, "MINIGUN_EXECUTION", run_with(), env={"MINIGUN_EXECUTION": "warp"}),
    Bad(
        "env-max-threads-text",
        PDE,
        "MINIGUN_MAX_THREADS='many' is invalid",
        run_with(),
        env={"MINIGUN_MAX_THREADS": "many"},
    ),
    Bad(
        "env-max-processes-zero",
        PDE,
        "MINIGUN_MAX_PROCESSES='0' is invalid",
        run_with(),
        env={"MINIGUN_MAX_PROCESSES": "0"},
    ),
]

RUNNER = [
    Bad(
        "spec-no-class",
        ValueError,
        "pipeline must be 'package.module:ClassName'",
        lambda: RunSpec("just_a_module"),
    ),
    Bad("spec-pipeline-number", ValueError, "pipeline must be", lambda: RunSpec(5)),  # type: ignore[arg-type]
    Bad(
        "spec-params-list",
        ValueError,
        "params must be a mapping, got list",
        lambda: RunSpec(T, params=[1]),
    ),  # type: ignore[arg-type]
    Bad(
        "spec-params-not-json",
        ValueError,
        "params must be JSON-serialisable",
        lambda: RunSpec(T, params={"when": object()}),
    ),
    Bad(
        "spec-timeout-zero",
        ValueError,
        "timeout must be a number > 0",
        lambda: RunSpec(T, timeout=0),
    ),
    Bad(
        "spec-timeout-nan",
        ValueError,
        "timeout must be a number > 0",
        lambda: RunSpec(T, timeout=math.nan),
    ),
    Bad(
        "spec-timeout-inf",
        ValueError,
        "timeout must be a number > 0",
        lambda: RunSpec(T, timeout=math.inf),
    ),
    Bad(
        "spec-timeout-string",
        ValueError,
        "timeout must be a number > 0",
        lambda: RunSpec(T, timeout="5"),
    ),  # type: ignore[arg-type]
    Bad(
        "spec-retries-negative",
        ValueError,
        "retries must be an integer >= 0",
        lambda: RunSpec(T, retries=-1),
    ),
    Bad(
        "spec-retries-float",
        ValueError,
        "retries must be an integer >= 0",
        lambda: RunSpec(T, retries=1.5),
    ),  # type: ignore[arg-type]
    Bad(
        "spec-retry-delay-negative",
        ValueError,
        "retry_delay must be a number >= 0",
        lambda: RunSpec(T, retry_delay=-1),
    ),
    Bad(
        "spec-backoff-below-one",
        ValueError,
        "retry_backoff must be a number >= 1",
        lambda: RunSpec(T, retry_backoff=0.5),
    ),
    Bad(
        "spec-max-retry-delay-negative",
        ValueError,
        "max_retry_delay must be a number >= 0",
        lambda: RunSpec(T, max_retry_delay=-1),
    ),
    Bad(
        "spec-grace-negative",
        ValueError,
        "grace must be a number >= 0",
        lambda: RunSpec(T, grace=-1),
    ),
    Bad(
        "spec-retry-on-out-of-range",
        ValueError,
        "retry_on must be exit codes (0-255)",
        lambda: RunSpec(T, retry_on=[300]),
    ),
    Bad(
        "spec-unknown-option",
        ValueError,
        "unknown run option(s) turbo",
        lambda: RunSpec(T, options={"turbo": True}),
    ),
]

ADAPTERS = [
    Bad(
        "adapter-pipeline-not-string",
        TypeError,
        "pipeline must be a 'module:Class' string",
        lambda: build_spec(5),
    ),  # type: ignore[arg-type]
    Bad(
        "adapter-bad-target", InvalidRunSpec, "cannot run 'nightly'", lambda: build_spec("nightly")
    ),
    Bad(
        "adapter-params-not-json",
        InvalidRunSpec,
        "params must be JSON-serialisable",
        lambda: build_spec(T, {"ids": {1, 2}}),
    ),
    Bad(
        "adapter-timeout-negative",
        InvalidRunSpec,
        "timeout must be a number > 0",
        lambda: build_spec(T, timeout=-5),
    ),
    Bad(
        "adapter-retries-negative",
        InvalidRunSpec,
        "retries must be an integer >= 0",
        lambda: build_spec(T, runner_retries=-1),
    ),
    Bad(
        "adapter-retry-delay-negative",
        InvalidRunSpec,
        "retry_delay must be a number >= 0",
        lambda: build_spec(T, runner_retry_delay=-2),
    ),
    Bad(
        "adapter-grace-negative",
        InvalidRunSpec,
        "grace must be a number >= 0",
        lambda: build_spec(T, grace=-1),
    ),
    Bad(
        "adapter-unknown-option",
        InvalidRunSpec,
        "unknown run option(s) turbo",
        lambda: build_spec(T, options={"turbo": 1}),
    ),
]

CLI = [
    Bad("cli-max-processes-zero", 2, "--max-processes", argv=["run", T, "--max-processes", "0"]),
    Bad("cli-retries-negative", 2, "--retries", argv=["run", T, "--retries", "-1"]),
    Bad("cli-retry-delay-negative", 2, "--retry-delay", argv=["run", T, "--retry-delay", "-1"]),
    Bad("cli-grace-negative", 2, "--grace", argv=["run", T, "--grace", "-1"]),
    Bad(
        "cli-max-dead-letters-negative",
        2,
        "--max-dead-letters",
        argv=["run", T, "--max-dead-letters", "-1"],
    ),
    Bad("cli-timeout-text", 2, "--timeout", argv=["run", T, "--timeout", "soon"]),
    Bad("cli-timeout-zero", 2, "--timeout", argv=["run", T, "--timeout", "0"]),
    Bad("cli-p-empty-key", 2, "expected key=value", argv=["run", T, "-p", "=3"]),
    Bad(
        "cli-params-json-string",
        2,
        "must be a JSON object",
        argv=["run", T, "--params-json", '"x"'],
    ),
    Bad(
        "cli-unknown-param-in-process",
        2,
        "bad params for Small",
        argv=["run", "--in-process", T, "-p", "speed=3"],
    ),
    Bad("cli-empty-target", 2, "got ''", argv=["run", ""]),
    Bad("cli-target-no-module", 2, "bad target ':Small'", argv=["run", ":Small"]),
    Bad("cli-target-empty-class", 2, "name the class", argv=["run", "reliability.faulty:"]),
    Bad("cli-target-bad-module-name", 2, "bad module name", argv=["run", "not a module:X"]),
    Bad("cli-target-not-a-class", 2, "not a minigun Pipeline", argv=["run", "os:sep"]),
    Bad(
        "cli-target-not-a-pipeline",
        2,
        "not a minigun Pipeline subclass",
        argv=["run", "reliability.faulty:announce"],
    ),
    Bad("cli-target-missing-file", 2, "no such file", argv=["run", "{tmp}/gone.py:X"]),
    Bad(
        "cli-target-bad-definition",
        2,
        "unknown stage 'nowhere'",
        argv=["run", "pipelines.contract:BadDefinition"],
    ),
    Bad("cli-inspect-missing-module", 2, "no module named", argv=["inspect", "no_such.mod:X"]),
    Bad(
        "cli-inspect-bad-definition",
        2,
        "unknown stage 'nowhere'",
        argv=["inspect", "pipelines.contract:BadDefinition"],
    ),
    Bad("cli-replay-a-directory", 2, "cannot read dead letters", argv=["replay", "{tmp}", T]),
    Bad(
        "cli-replay-bad-target",
        2,
        "has no attribute",
        argv=["replay", "{tmp}/letters.jsonl", "reliability.faulty:Nope"],
    ),
    Bad("cli-worker-interval-negative", 2, "--interval", argv=["worker", T, "--interval", "-1"]),
    Bad(
        "cli-worker-restart-delay-text",
        2,
        "--restart-delay",
        argv=["worker", T, "--restart-delay", "later"],
    ),
    Bad("cli-worker-bad-param", 2, "bad -p", argv=["worker", T, "-p", "novalue"]),
    Bad(
        "cli-env-execution",
        2,
        "MINIGUN_EXECUTION",
        argv=["run", "--in-process", T],
        env={"MINIGUN_EXECUTION": "warp"},
    ),
]

PYTHON_ROWS = DEFINITIONS + RUN_ARGUMENTS + RUNNER + ADAPTERS


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """A working directory with an (empty, valid) dead-letter file for the replay rows."""
    (tmp_path / "letters.jsonl").write_text("")
    return tmp_path


@params(PYTHON_ROWS)
def test_python_surfaces_refuse_with_one_line(row: Bad, monkeypatch: pytest.MonkeyPatch) -> None:
    check_python_row(row, monkeypatch)


@params(CLI)
def test_cli_refuses_with_exit_2_and_one_line(row: Bad, scratch: Path) -> None:
    check_cli_row(row, scratch)


def test_the_catalogue_is_big_enough() -> None:
    rows = PYTHON_ROWS + CLI
    assert len(rows) >= 60, len(rows)
    assert len({r.id for r in rows}) == len(rows), "row ids must be unique"
