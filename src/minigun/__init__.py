"""minigun: fast multi-stage data pipelines, run as isolated tasks.

This module only re-exports the public API. It stays cheap to import: no
orchestrator, no rich, no dask, no fork machinery until a run needs it.
"""

from minigun import platform
from minigun._version import __version__
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
