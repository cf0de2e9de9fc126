"""The executor interface: how a stage's items get processed.

An executor owns the workers of one stage for one run. It pulls micro-batches
from ``runtime.inbox`` (``get_batch`` returns ``None`` once the run has closed the
inbox), gets them processed, and reports each batch through the runtime
(``run_batch`` locally; ``apply`` in a child plus ``complete``/``settle_failure``
in the parent for fork executors). ``join`` returns once every worker has exited:
no worker outlives the run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from minigun.core.run_context import RunContext
    from minigun.core.stage import StageRuntime

__all__ = ["Executor"]


class Executor:
    """Base class: subclasses implement ``start`` and ``join``."""

    name = "base"

    def __init__(self, runtime: StageRuntime, run: RunContext) -> None:
        self.runtime = runtime
        self.run = run
        self.workers = max(1, runtime.node.workers)

    def start(self) -> None:
        raise NotImplementedError

    def join(self) -> None:
        raise NotImplementedError
