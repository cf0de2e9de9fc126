"""Stage and pipeline options: their names, their validation, and their precedence.

Every declared option value is validated before a run starts, even when a run
argument or the environment overrides it for this run: a typo in a stage must not
hide until the day someone unsets ``MINIGUN_EXECUTION``.

Precedence (DESIGN 3.6): explicit ``run()``/CLI argument > environment > stage
option > pipeline class attribute > default. ``max_threads``/``max_processes`` follow
the same rule against a stage's ``threads``/``processes``: the highest-precedence
value that is set wins, so ``MINIGUN_MAX_PROCESSES=2`` caps a laptop run of a
pipeline whose stages ask for 16.
"""

from __future__ import annotations

import difflib
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


def _check_int(where: str, name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise PipelineDefinitionError(
            f"{where}: {name}={value!r} is invalid; use a whole number >= {minimum}"
        )


def _check_number(where: str, name: str, value: Any, *, positive: bool) -> None:
    ok = not isinstance(value, bool) and isinstance(value, (int, float))
    if ok and (value > 0 if positive else value >= 0):
        return
    bound = "> 0" if positive else ">= 0"
    raise PipelineDefinitionError(f"{where}: {name}={value!r} is invalid; use a number {bound}")


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
    if options.get("processes") is not None and options.get("max") is not None:
        raise PipelineDefinitionError(f"{where}: give processes= or its alias max=, not both")


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
        raise PipelineDefinitionError(f"environment: {name}={raw!r} is invalid; use a whole number")
    if value < 1:
        raise PipelineDefinitionError(f"environment: {name}={raw!r} is invalid; use a number >= 1")
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
    processes = _env_int("MINIGUN_MAX_PROCESSES")
    if processes is None:
        processes = _env_int("MINIGUN_MAX_FORKS")
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
