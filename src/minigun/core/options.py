"""Stage and pipeline options: their names, their validation, and their precedence.

Every declared option value is validated before a run starts, even when a run
argument or the environment overrides it for this run: a typo in a stage must not
hide until the day someone unsets ``MINIGUN_EXECUTION``.

Precedence (DESIGN 3.6): explicit ``run()``/CLI argument > environment > stage
option > pipeline class attribute > default.

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
import math
import os
from collections.abc import Mapping
from typing import Any

from minigun.core.errors import PipelineDefinitionError

EXECUTIONS = ("inline", "thread", "cow_fork", "ipc_fork", "dask")
ON_ERROR = ("raise", "skip", "dead_letter")
FORK_EXECUTIONS = ("cow_fork", "ipc_fork")

#: Stage option names and what each accepts (checked by :func:`validate_stage_options`).
STAGE_OPTIONS = (
    "execution",
    "threads",
    "processes",
    "max",
    "queue_size",
    "to",
    "from_",
    "on_error",
    "retries",
    "retry_delay",
    "timeout",
    "chunk",
    "dask_address",
)

#: Pipeline-level settings: class attributes that ``run(**overrides)`` can override.
PIPELINE_SETTINGS = (
    "execution",
    "max_threads",
    "max_processes",
    "queue_size",
    "dead_letter_dir",
    "max_dead_letters",
    "stats",
)

DEFAULT_QUEUE_SIZE = 1000
DEFAULT_THREADS = 1


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
        elif key in ("threads", "processes", "max", "queue_size", "chunk"):
            _check_int(where, key, value, 1)
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
        elif key == "dask_address" and not isinstance(value, str):
            raise PipelineDefinitionError(
                f"{where}: dask_address={value!r} is invalid; use an address string"
            )
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
        elif key in ("max_threads", "max_processes", "queue_size"):
            _check_int(where, key, value, 1)
        elif key == "max_dead_letters":
            _check_int(where, key, value, 0)
        elif key == "dead_letter_dir" and not isinstance(value, (str, os.PathLike)):
            raise PipelineDefinitionError(
                f"{where}: dead_letter_dir={value!r} is invalid; use a directory path"
            )
        elif key == "stats" and not isinstance(value, bool):
            raise PipelineDefinitionError(f"{where}: stats={value!r} is invalid; use True/False")


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
    """Read ``MINIGUN_*`` variables (DESIGN 3.6), validated, as pipeline settings."""
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
