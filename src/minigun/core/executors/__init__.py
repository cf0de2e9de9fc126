"""Executors, one module each; :func:`make_executor` picks one for a stage.

Fork executors are imported only when a stage uses them, so a thread-only run
never pays for them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from minigun.core.executors.base import Executor

if TYPE_CHECKING:
    from minigun.core.engine import Run
    from minigun.core.stage import StageRuntime

__all__ = ["Executor", "make_executor"]

_EXECUTORS = {
    "inline": ("minigun.core.executors.inline", "InlineExecutor"),
    "thread": ("minigun.core.executors.thread", "ThreadExecutor"),
    "cow_fork": ("minigun.core.executors.cow_fork", "CowForkExecutor"),
    "ipc_fork": ("minigun.core.executors.ipc_fork", "IpcForkExecutor"),
}


def make_executor(runtime: StageRuntime, run: Run) -> Executor:
    module_name, class_name = _EXECUTORS[runtime.node.execution]
    cls = getattr(importlib.import_module(module_name), class_name)
    executor: Executor = cls(runtime, run)
    return executor
