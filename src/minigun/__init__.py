"""minigun: fast multi-stage data pipelines, run as isolated tasks.

This module only re-exports the public API, and lazily: ``import minigun`` (and so
``import minigun.runner`` in an orchestrator's worker, or the ``minigun run`` parent)
loads no engine module until a name such as ``mg.Pipeline`` is first used. No
orchestrator, no rich, no dask, no fork machinery is loaded until a run needs it.
"""

from __future__ import annotations

import importlib

from minigun._version import __version__

TYPE_CHECKING = False  # typing itself is not imported: `minigun run` starts its child first
if TYPE_CHECKING:
    from typing import Any

    from minigun import platform
    from minigun.core.dead_letters import DeadLetter, read_dead_letters
    from minigun.core.dsl import (
        Stage,
        after_fork,
        after_run,
        batch,
        before_fork,
        before_run,
        consumer,
        nested,
        processor,
        producer,
    )
    from minigun.core.engine import RunHandle
    from minigun.core.errors import (
        ChildDied,
        ItemTimeout,
        MinigunError,
        PipelineDefinitionError,
        RemoteError,
        Skip,
        TransientError,
    )
    from minigun.core.pipeline import Pipeline
    from minigun.core.result import RunResult
    from minigun.core.stage import Out
    from minigun.core.stats import RunStats
    from minigun.exit_codes import ExitCode

#: Where each public name lives; resolved on first use and then cached here.
_EXPORTS = {
    "ExitCode": "minigun.exit_codes",
    "ChildDied": "minigun.core.errors",
    "DeadLetter": "minigun.core.dead_letters",
    "ItemTimeout": "minigun.core.errors",
    "MinigunError": "minigun.core.errors",
    "Out": "minigun.core.stage",
    "Pipeline": "minigun.core.pipeline",
    "PipelineDefinitionError": "minigun.core.errors",
    "RemoteError": "minigun.core.errors",
    "RunHandle": "minigun.core.engine",
    "RunResult": "minigun.core.result",
    "RunStats": "minigun.core.stats",
    "Skip": "minigun.core.errors",
    "Stage": "minigun.core.dsl",
    "TransientError": "minigun.core.errors",
    "after_fork": "minigun.core.dsl",
    "after_run": "minigun.core.dsl",
    "batch": "minigun.core.dsl",
    "before_fork": "minigun.core.dsl",
    "before_run": "minigun.core.dsl",
    "consumer": "minigun.core.dsl",
    "nested": "minigun.core.dsl",
    "processor": "minigun.core.dsl",
    "producer": "minigun.core.dsl",
    "read_dead_letters": "minigun.core.dead_letters",
}

__all__ = [
    "ChildDied",
    "DeadLetter",
    "ExitCode",
    "ItemTimeout",
    "MinigunError",
    "Out",
    "Pipeline",
    "PipelineDefinitionError",
    "RemoteError",
    "RunHandle",
    "RunResult",
    "RunStats",
    "Skip",
    "Stage",
    "TransientError",
    "__version__",
    "after_fork",
    "after_run",
    "batch",
    "before_fork",
    "before_run",
    "consumer",
    "nested",
    "platform",
    "processor",
    "producer",
    "read_dead_letters",
]


def __getattr__(name: str) -> Any:
    if name == "platform":
        value: Any = importlib.import_module("minigun.platform")
    elif name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    else:
        raise AttributeError(f"module 'minigun' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
