"""Stage and pipeline options: their names, their validation, and their precedence.

Every declared option value is validated before a run starts, even when a run
argument or the environment overrides it for this run: a typo in a stage must not
hide until the day someone unsets ``MINIGUN_EXECUTION``.

Precedence, highest first (the docs' "Configuration and precedence" page): an explicit
``run()``/CLI argument > the environment > the stage option > the pipeline class
attribute > the default.

``max_threads`` and ``max_processes`` are *caps*, not counts, and precedence does not
apply to them the same way: a stage's worker count is its own ``threads`` (default 1)
or ``processes``/``max`` (default: the number of cores), lowered to the tightest cap
set anywhere -- the run argument, the environment (``MINIGUN_MAX_THREADS``,
``MINIGUN_MAX_PROCESSES``, ``MINIGUN_MAX_FORKS``), the class attribute of the pipeline
that owns the stage and that of any pipeline nesting it. A cap never raises a count:
``--max-threads 4`` leaves a consumer declared with one thread (a SQLite connection
that must not be shared) on one thread, and ``MINIGUN_MAX_PROCESSES=2`` lowers a
laptop run of stages that ask for 16.

Why the tightest and not the highest-precedence cap: each level states a limit for
a different reason (the author's class attribute: "this pipeline must not open more
than N connections"; an operator's environment: "this machine has N cores"; a run
argument: "this run may use N"). Letting a machine-wide ``MINIGUN_MAX_PROCESSES=8``
override a pipeline's ``max_processes = 2`` would *raise* that pipeline's count,
which is what a cap must never do. To loosen a cap, change the level that set it.

Every numeric option must be a finite number of the right kind: ``True`` is not a
thread count, ``float("inf")`` or ``nan`` is not a timeout, and a value too large to
be a timeout or a queue capacity (it would overflow when the engine uses it) is
rejected here, naming the stage and the fix, rather than failing every item later.
"""

from __future__ import annotations

import difflib
import importlib.util
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from minigun.core.errors import PipelineDefinitionError
from minigun.core.executors.registry import EXECUTORS, executor_names, fork_names, loop_name

#: Every ``execution=`` value and the forking ones, from the executor registry.
EXECUTIONS = executor_names()
FORK_EXECUTIONS = fork_names()
ON_ERROR = ("raise", "skip", "dead_letter")

#: Options every stage takes, whatever runs it.
COMMON_STAGE_OPTIONS = (
    "execution",
    "queue_size",
    "to",
    "from_",
    "on_error",
    "retries",
    "retry_delay",
    "timeout",
    "total",
)

#: What each executor-specific option must be: the union over the registry. An option
#: of another executor than the one in use is accepted and ignored, so
#: ``MINIGUN_EXECUTION`` can switch strategies without editing stages.
EXECUTOR_OPTIONS: dict[str, str] = {
    name: kind for entry in EXECUTORS.values() for name, kind in entry.options.items()
}

#: Stage option names (checked by :func:`validate_stage_options`).
STAGE_OPTIONS = COMMON_STAGE_OPTIONS + tuple(EXECUTOR_OPTIONS)

#: Pipeline-level settings: class attributes that ``run(**overrides)`` can override.
PIPELINE_SETTINGS = (
    "execution",
    "max_threads",
    "max_processes",
    "queue_size",
    "dead_letter_dir",
    "max_dead_letters",
    "stats",
    "concurrency",
    "dask_address",
)

DEFAULT_QUEUE_SIZE = 1000
DEFAULT_THREADS = 1
#: Items in flight per ``async def`` stage when nothing sets ``concurrency``: the size of
#: the connection pool of httpx's ``AsyncClient`` and of aiohttp's ``TCPConnector``
#: (100 each). More in flight than the client's pool only queues inside the client,
#: where the wait counts against the item's ``timeout``; fewer leaves connections idle.
#: A stage that needs 500 in flight says so, and raises its client's limit with it.
DEFAULT_CONCURRENCY = 100


def _suggest(name: str, choices: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(name, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


#: The largest whole number an option may hold (threads, processes, queue sizes,
#: retries, chunk, dead-letter limits): far above anything sensible, and below what
#: would overflow a C ``ssize_t`` where the engine hands it to the standard library.
MAX_COUNT = 2**31 - 1

#: The largest number of seconds an option may hold (timeouts, delays): about 31
#: years. ``threading`` waits overflow a little above 2**31 seconds on some platforms.
MAX_SECONDS = 1e9


def _check_int(where: str, name: str, value: Any, minimum: int) -> None:
    ok = isinstance(value, int) and not isinstance(value, bool)
    if ok and minimum <= value <= MAX_COUNT:
        return
    kind = "a bool" if isinstance(value, bool) else "too large" if ok and value > 0 else ""
    why = f" ({kind})" if kind else ""
    raise PipelineDefinitionError(
        f"{where}: {name}={value!r} is invalid{why}; use a whole number from {minimum}"
        f" to {MAX_COUNT}"
    )


def _check_number(where: str, name: str, value: Any, *, positive: bool) -> None:
    why = _number_problem(value, positive=positive)
    if why is None:
        return
    bound = "> 0" if positive else ">= 0"
    raise PipelineDefinitionError(
        f"{where}: {name}={value!r} is invalid{why}; use a finite number {bound}"
        f" and at most {MAX_SECONDS:g} seconds (None for no limit)"
    )


def _number_problem(value: Any, *, positive: bool) -> str | None:
    """None when ``value`` is a usable number of seconds, else what to say about it."""
    if isinstance(value, bool):
        return " (a bool)"
    if not isinstance(value, (int, float)):
        return ""
    if isinstance(value, float) and not math.isfinite(value):
        return " (not finite)"
    if not (value > 0 if positive else value >= 0):
        return ""
    if value > MAX_SECONDS:  # exact for ints of any size: no float conversion
        return " (too large)"
    return None


def check_execution(where: str, value: Any) -> None:
    if value not in EXECUTIONS:
        hint = _suggest(str(value), EXECUTIONS)
        raise PipelineDefinitionError(
            f"{where}: execution={value!r} is invalid{hint}; use one of {', '.join(EXECUTIONS)}"
        )


def as_name_list(where: str, name: str, value: Any) -> tuple[str, ...]:
    """Normalise a ``to=``/``from_=`` value (a name or a list of names) to a tuple."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise PipelineDefinitionError(
        f"{where}: {name}={value!r} is invalid; use a stage name or a list of stage names"
    )


def validate_stage_options(where: str, options: Mapping[str, Any]) -> None:
    """Raise :class:`PipelineDefinitionError` for an unknown option or a bad value."""
    for key, value in options.items():
        if key not in STAGE_OPTIONS:
            raise PipelineDefinitionError(
                f"{where}: unknown option {key!r}{_suggest(key, STAGE_OPTIONS)}; "
                f"valid options are {', '.join(STAGE_OPTIONS)}"
            )
        if value is None:
            continue
        if key == "execution":
            check_execution(where, value)
        elif key == "queue_size" or EXECUTOR_OPTIONS.get(key) == "count":
            _check_int(where, key, value, 1)
        elif EXECUTOR_OPTIONS.get(key) == "address":
            _check_address(where, key, value)
        elif key == "retries":
            _check_int(where, key, value, 0)
        elif key == "retry_delay":
            _check_number(where, key, value, positive=False)
        elif key == "timeout":
            _check_number(where, key, value, positive=True)
        elif key == "on_error":
            if value not in ON_ERROR:
                raise PipelineDefinitionError(
                    f"{where}: on_error={value!r} is invalid{_suggest(str(value), ON_ERROR)}; "
                    f"use one of {', '.join(ON_ERROR)}"
                )
        elif key in ("to", "from_"):
            as_name_list(where, key, value)
        elif key == "total" and not callable(value):
            _check_int(where, key, value, 0)
    _check_backoff(where, options.get("retries"), options.get("retry_delay"))
    if options.get("processes") is not None and options.get("max") is not None:
        raise PipelineDefinitionError(f"{where}: give processes= or its alias max=, not both")


def _check_backoff(where: str, retries: Any, retry_delay: Any) -> None:
    """The longest backoff (``retry_delay * 2**(retries - 1)``) must be a wait, not an overflow."""
    delay = 1.0 if retry_delay is None else float(retry_delay)
    if not retries or not delay:
        return
    if retries - 1 > 64 or delay * 2 ** (retries - 1) > MAX_SECONDS:
        raise PipelineDefinitionError(
            f"{where}: retries={retries!r} with retry_delay={delay:g} would wait"
            f" {delay:g} * 2**{retries - 1} seconds before the last attempt (over"
            f" {MAX_SECONDS:g}); lower retries or retry_delay"
        )


def validate_pipeline_settings(where: str, settings: Mapping[str, Any]) -> None:
    """Validate pipeline-level settings (class attributes or run overrides)."""
    for key, value in settings.items():
        if value is None:
            continue
        if key == "execution":
            check_execution(where, value)
        elif key in ("max_threads", "max_processes", "queue_size", "concurrency"):
            _check_int(where, key, value, 1)
        elif key == "max_dead_letters":
            _check_int(where, key, value, 0)
        elif key == "dead_letter_dir" and not isinstance(value, (str, os.PathLike)):
            raise PipelineDefinitionError(
                f"{where}: dead_letter_dir={value!r} is invalid; use a directory path"
            )
        elif key == "stats" and not isinstance(value, bool):
            raise PipelineDefinitionError(f"{where}: stats={value!r} is invalid; use True/False")
        elif key == "dask_address":
            _check_address(where, key, value)


def _check_address(where: str, name: str, value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise PipelineDefinitionError(
            f"{where}: {name}={value!r} is invalid; use a scheduler address such as"
            " 'tcp://host:8786' (None for a local cluster started for the run)"
        )


def _env_int(name: str) -> int | None:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise PipelineDefinitionError(
            f"environment: {name}={raw!r} is invalid; use a whole number"
        ) from None
    if not 1 <= value <= MAX_COUNT:
        raise PipelineDefinitionError(
            f"environment: {name}={raw!r} is invalid; use a whole number from 1 to {MAX_COUNT}"
        )
    return value


def environment_overrides() -> dict[str, Any]:
    """Read ``MINIGUN_*`` variables, validated, as pipeline settings.

    The environment ranks below a run argument and above stage options and class
    attributes; a malformed value is a :class:`~minigun.PipelineDefinitionError`.
    """
    env: dict[str, Any] = {}
    execution = os.environ.get("MINIGUN_EXECUTION")
    if execution:
        check_execution("environment: MINIGUN_EXECUTION", execution)
        env["execution"] = execution
    threads = _env_int("MINIGUN_MAX_THREADS")
    if threads is not None:
        env["max_threads"] = threads
    processes = tightest_cap(_env_int("MINIGUN_MAX_PROCESSES"), _env_int("MINIGUN_MAX_FORKS"))
    if processes is not None:
        env["max_processes"] = processes
    dead_letter_dir = os.environ.get("MINIGUN_DEAD_LETTER_DIR")
    if dead_letter_dir is not None and dead_letter_dir.strip() != "":
        env["dead_letter_dir"] = dead_letter_dir
    dask_address = os.environ.get("MINIGUN_DASK_ADDRESS")
    if dask_address is not None and dask_address.strip() != "":
        env["dask_address"] = dask_address.strip()
    stats = os.environ.get("MINIGUN_STATS")
    if stats is not None and stats.strip() != "":
        env["stats"] = stats.strip().lower() not in ("0", "false", "no", "off")
    return env


def first_set(*values: Any) -> Any:
    """The first value that is not None: precedence resolution in one place."""
    for value in values:
        if value is not None:
            return value
    return None


def tightest_cap(*caps: int | None) -> int | None:
    """The smallest cap that is set (None when none is): caps combine, they never override."""
    set_caps = [cap for cap in caps if cap is not None]
    return min(set_caps) if set_caps else None


def capped(own: int, *caps: int | None) -> int:
    """A stage's own worker count lowered to the tightest cap; a cap never raises it."""
    cap = tightest_cap(*caps)
    return own if cap is None else min(own, cap)


# --------------------------------------------------------------------------- precedence


@dataclass(frozen=True)
class Layers:
    """One run's pipeline settings by level: run argument, environment, class attribute."""

    explicit: dict[str, Any]
    env: dict[str, Any]
    declared: dict[str, Any]

    def settings(self) -> dict[str, Any]:
        """The run's pipeline settings: the first level that sets each; caps the tightest."""
        resolved = {
            k: first_set(self.explicit.get(k), self.env.get(k), self.declared.get(k))
            for k in PIPELINE_SETTINGS
        }
        for cap in ("max_threads", "max_processes"):
            resolved[cap] = tightest_cap(
                self.explicit.get(cap), self.env.get(cap), self.declared.get(cap)
            )
        return resolved


def resolve_layers(cls: type, overrides: Mapping[str, Any]) -> Layers:
    """Validate the class attributes, the run's overrides and the environment; layer them."""
    where = f"pipeline {cls.__name__}"
    declared = {k: getattr(cls, k, None) for k in PIPELINE_SETTINGS}
    validate_pipeline_settings(where, declared)
    explicit = {k: v for k, v in overrides.items() if v is not None}
    unknown = set(explicit) - set(PIPELINE_SETTINGS)
    if unknown:
        raise PipelineDefinitionError(
            f"run(): unknown setting(s) {', '.join(sorted(unknown))}; "
            f"settings are {', '.join(PIPELINE_SETTINGS)}"
        )
    validate_pipeline_settings("run()", explicit)
    return Layers(explicit, environment_overrides(), declared)


@dataclass(frozen=True)
class Placement:
    """Where and how wide one stage runs: its executor, worker count and inbox size,
    and for an executor that takes an address (dask) the cluster's (None: a local one)."""

    execution: str
    workers: int
    queue_size: int
    address: str | None = None


#: Stage kinds that always run on a thread of this process (or inline): a producer
#: drives an iterator, a batch stage buffers items; neither runs user code per item.
_PARENT_KINDS = ("producer", "batch")


def resolve_stage(
    name: str,
    kind: str,
    options: Mapping[str, Any],
    owner: type,
    layers: Layers,
    coroutine: bool = False,
) -> Placement:
    """A stage's placement from its options, its owner's class and the run's layers.

    ``execution`` and ``queue_size`` follow precedence (run > environment > stage >
    owning class > pipeline class > default); worker counts follow the executor's
    :data:`~minigun.core.executors.registry.WorkerRule`, lowered by every cap set
    anywhere (see the module docstring). ``owner`` is the class of the pipeline that
    declares the stage: a nested pipeline's attributes apply to its own stages.

    ``coroutine``: the stage is an ``async def``. It runs on the run's event loop
    whatever the pipeline-wide ``execution`` says (see :func:`_loop_or_not`).
    """
    explicit, env, declared = layers.explicit, layers.env, layers.declared
    local = {
        k: getattr(owner, k, None)
        for k in (
            "execution",
            "max_threads",
            "max_processes",
            "queue_size",
            "concurrency",
            "dask_address",
        )
    }
    execution = first_set(
        explicit.get("execution"),
        env.get("execution"),
        options.get("execution"),
        local["execution"],
        declared["execution"],
        "thread",
    )
    executor = EXECUTORS[_loop_or_not(name, options.get("execution"), execution, coroutine)]
    if executor.loop:
        pass  # an async generator producer runs on the loop too (a thread takes its items)
    elif kind in _PARENT_KINDS and execution != "inline":
        executor = EXECUTORS["thread"]
    elif kind == "custom" and not executor.runs_custom:
        executor = EXECUTORS["thread"]  # a custom Stage keeps its state in this process
    if importlib.util.find_spec(executor.module) is None:
        raise PipelineDefinitionError(
            f"stage {name!r}: execution={executor.name!r} is not available in this release"
            " yet; use thread, cow_fork or ipc_fork"
        )
    for package in executor.requires:
        if importlib.util.find_spec(package) is None:
            raise PipelineDefinitionError(
                f"stage {name!r}: execution={executor.name!r} needs the {package!r} package,"
                f" which is not installed; install the {executor.extra} extra:"
                f" pip install 'minigun-pipelines[{executor.extra}]'"
                f" (or '.[{executor.extra}]' in a checkout)"
            )
    if executor.workers == "processes":
        own = first_set(options.get("processes"), options.get("max"), os.cpu_count() or 1)
        workers = capped(
            int(own),
            explicit.get("max_processes"),
            env.get("max_processes"),
            local["max_processes"],
            declared["max_processes"],
        )
    elif executor.workers == "threads":
        own = first_set(options.get("threads"), DEFAULT_THREADS)
        workers = capped(
            int(own),
            explicit.get("max_threads"),
            env.get("max_threads"),
            local["max_threads"],
            declared["max_threads"],
        )
    elif executor.workers == "concurrency":
        workers = int(
            first_set(
                explicit.get("concurrency"),
                options.get("concurrency"),
                local["concurrency"],
                declared["concurrency"],
                DEFAULT_CONCURRENCY,
            )
        )
    else:
        workers = 1
    queue_size = int(
        first_set(
            explicit.get("queue_size"),
            options.get("queue_size"),
            local["queue_size"],
            declared["queue_size"],
            DEFAULT_QUEUE_SIZE,
        )
    )
    address = None
    if "address" in executor.options.values():
        if local["dask_address"] is not None:
            _check_address(f"pipeline {owner.__name__}", "dask_address", local["dask_address"])
        address = first_set(
            explicit.get("dask_address"),
            env.get("dask_address"),
            options.get("dask_address"),
            local["dask_address"],
            declared["dask_address"],
        )
    return Placement(executor.name, workers, queue_size, address)


def _loop_or_not(name: str, own: Any, execution: str, coroutine: bool) -> str:
    """The executor of a stage, given that it is (or is not) an ``async def``.

    A coroutine can only run on the event loop, so it does whatever the pipeline-wide
    ``execution`` (class attribute, run argument, ``MINIGUN_EXECUTION``) says: those
    choose a strategy for the pipeline's plain stages. But a stage that itself asks a
    thread or a fork to run a coroutine, or the loop to run a plain function (which
    would block every coroutine of the run while it ran), is a definition error.
    """
    loop = loop_name()
    if coroutine:
        if own is not None and own != loop:
            raise PipelineDefinitionError(
                f"stage {name!r}: execution={own!r} cannot run an async def stage (a"
                f" {own} worker would get a coroutine object, not a result); remove"
                f" execution= (async def stages always run on the run's event loop) or"
                f" make the stage a plain def"
            )
        return loop
    if own == loop:
        raise PipelineDefinitionError(
            f"stage {name!r}: execution={loop!r} runs async def stages on the run's event"
            f" loop, and this stage is a plain def (it would block the loop while it"
            f" runs); declare it async def, or use execution='thread'"
        )
    return "thread" if execution == loop else execution
