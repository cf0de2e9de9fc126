"""Every executor, described once: what the rest of the engine needs to know about it.

Options validation, the CLI's ``--execution`` choices, the graph's worker counts, the
resource plan and a stage's inbox all read an executor's :class:`ExecutorKind` here
instead of naming executors themselves, so adding an executor means one entry below and
one new module holding its class. This module imports no executor: a kind names its
class by module path, loaded only when a stage uses it (a thread-only run never pays for
the fork machinery, the CLI never pays for any of it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

__all__ = [
    "EXECUTORS",
    "ExecutorKind",
    "WorkerRule",
    "executor_names",
    "fork_names",
    "kind_of",
    "loop_name",
]

#: How a stage's worker count is found (see :func:`minigun.core.options.resolve_stage`):
#: ``"one"``: always one; ``"threads"``: ``threads=`` (default 1), capped by
#: ``max_threads``; ``"processes"``: ``processes=``/``max=`` (default: the number of
#: cores), capped by ``max_processes``; ``"concurrency"``: ``concurrency=``, the items in
#: flight at once (a count, not a cap: run override > stage > pipeline attribute > default).
WorkerRule = Literal["one", "threads", "processes", "concurrency"]

#: What a stage option value must be (checked by :mod:`minigun.core.options`).
OptionType = Literal["count", "address"]


@dataclass(frozen=True)
class ExecutorKind:
    """One executor as the engine sees it.

    ``forks``: its workers are child processes forked from this one (they count as
    processes in the resource plan; ``before_fork``/``after_fork`` hooks apply).
    ``local``: its workers are threads of this process (they count as threads in the
    plan, and a stage with one such worker has a single-getter inbox). ``loop``: its
    stages are ``async def`` coroutines on the run's one event loop; its "workers" are
    items in flight, which cost no thread, process or core of their own. ``workers``: the
    :data:`WorkerRule`. ``options``: the stage options it adds to the common ones, with
    the type each value must have. ``runs_custom``: whether it can run a custom
    ``mg.Stage`` object (one that may keep state across items in this process).
    """

    name: str
    module: str
    cls: str
    workers: WorkerRule
    forks: bool = False
    local: bool = False
    loop: bool = False
    runs_custom: bool = True
    requires: tuple[str, ...] = ()
    extra: str | None = None
    options: MappingProxyType[str, OptionType] = field(default_factory=lambda: MappingProxyType({}))


def _options(**types: OptionType) -> MappingProxyType[str, OptionType]:
    return MappingProxyType(types)


_FORK_OPTIONS = _options(processes="count", max="count", chunk="count")

#: The executors, in the order ``--help`` and error messages list them.
EXECUTORS: MappingProxyType[str, ExecutorKind] = MappingProxyType(
    {
        kind.name: kind
        for kind in (
            ExecutorKind(
                "inline", "minigun.core.executors.inline", "InlineExecutor", "one", local=True
            ),
            ExecutorKind(
                "thread",
                "minigun.core.executors.thread",
                "ThreadExecutor",
                "threads",
                local=True,
                options=_options(threads="count"),
            ),
            ExecutorKind(
                "cow_fork",
                "minigun.core.executors.cow_fork",
                "CowForkExecutor",
                "processes",
                forks=True,
                options=_FORK_OPTIONS,
            ),
            ExecutorKind(
                "ipc_fork",
                "minigun.core.executors.ipc_fork",
                "IpcForkExecutor",
                "processes",
                forks=True,
                options=_FORK_OPTIONS,
            ),
            ExecutorKind(
                "async",
                "minigun.core.executors.async_",
                "AsyncExecutor",
                "concurrency",
                loop=True,
                runs_custom=False,  # a custom Stage's process() and flush() are plain calls
                options=_options(concurrency="count"),
            ),
            ExecutorKind(
                "dask",
                "minigun.core.executors.dask",
                "DaskExecutor",
                "one",  # one local thread feeds the cluster; the cluster's workers are not ours
                runs_custom=False,
                requires=("distributed",),
                extra="dask",
                options=_options(chunk="count", dask_address="address", max_in_flight="count"),
            ),
        )
    }
)


def executor_names() -> tuple[str, ...]:
    """Every valid ``execution=`` value."""
    return tuple(EXECUTORS)


def fork_names() -> tuple[str, ...]:
    """The executors whose workers are forked processes."""
    return tuple(name for name, kind in EXECUTORS.items() if kind.forks)


def loop_name() -> str:
    """The executor that runs ``async def`` stages on the run's event loop."""
    return next(name for name, kind in EXECUTORS.items() if kind.loop)


def kind_of(name: str) -> ExecutorKind:
    """The kind called ``name``; ``KeyError`` for an unknown one (validated earlier)."""
    return EXECUTORS[name]
