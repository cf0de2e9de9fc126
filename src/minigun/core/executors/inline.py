"""The inline executor.

When every stage of a run is inline, the engine runs the whole pipeline on the
calling thread (see ``Run._run_inline``): items are processed in arrival order,
deterministically, which is what tests and debuggers want. In a run that mixes
executors, an inline stage gets exactly one worker thread, so its items are still
handled one at a time in arrival order.
"""

from __future__ import annotations

from minigun.core.executors.thread import ThreadExecutor

__all__ = ["InlineExecutor"]


class InlineExecutor(ThreadExecutor):
    name = "inline"

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.workers = 1
