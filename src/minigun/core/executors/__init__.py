"""Executors, one module each, described in :mod:`.registry`; :func:`make_executor`
builds a stage's.

Fork executors are imported only when a stage uses them, so a thread-only run
never pays for them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from minigun.core.executors.base import Executor
from minigun.core.executors.registry import kind_of

if TYPE_CHECKING:
    from minigun.core.run_context import RunContext
    from minigun.core.stage import StageRuntime

__all__ = ["Executor", "make_executor"]


def make_executor(runtime: StageRuntime, run: RunContext) -> Executor:
    """The executor of ``runtime``'s stage, its module imported on first use."""
    kind = kind_of(runtime.node.execution)
    cls = getattr(importlib.import_module(kind.module), kind.cls)
    executor: Executor = cls(runtime, run)
    return executor
