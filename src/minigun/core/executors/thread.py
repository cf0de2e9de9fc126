"""The thread executor: a pool of ``threads`` worker threads per stage (the default).

Each worker takes whatever is ready in the stage's inbox, up to the stage's
adaptive batch size (large for fast stages, 1 for slow ones so that every worker
of an I/O-bound stage gets work), processes it, and hands the outputs on.
"""

from __future__ import annotations

import threading

from minigun.core.executors.base import Executor

__all__ = ["ThreadExecutor"]


class ThreadExecutor(Executor):
    name = "thread"

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._threads: list[threading.Thread] = []

    def _work(self) -> None:
        runtime = self.runtime
        inbox = runtime.inbox
        while True:
            batch = inbox.get_batch(runtime.max_batch)
            if batch is None:
                return
            if batch:
                try:
                    runtime.run_batch(batch)
                except BaseException as exc:  # an engine bug must fail the run, not hang it
                    self.run.fail(exc, runtime.name)
                    self.run.deliver(runtime, [], [], len(batch))

    def start(self) -> None:
        for i in range(self.workers):
            thread = threading.Thread(
                target=self._work, name=f"minigun-{self.runtime.name}-{i}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def join(self) -> None:
        for thread in self._threads:
            thread.join()
