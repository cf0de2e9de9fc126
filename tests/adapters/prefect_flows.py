"""A flow deployed and cancelled through Prefect's Runner, and a decorated pipeline class.

Loaded by Prefect from its file path (the deployment's entrypoint), so it imports
nothing from the tests package.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow

import minigun as mg
from minigun.adapters.prefect import minigun_task

HANGS = f"{Path(__file__).with_name('pipelines.py')}:Hangs"


@flow(name="minigun-cancel")
def hang(marker_dir: str, grace: float = 2.0) -> None:
    minigun_task(HANGS, grace=grace)(marker_dir=marker_dir)


@minigun_task(artifact_key="decorated-countdown")
class Countdown(mg.Pipeline):
    """Decorated: the name ``Countdown`` is now a Prefect task running this pipeline."""

    def __init__(self, n: int = 3) -> None:
        self.n = int(n)

    @mg.producer
    def numbers(self):
        yield from range(self.n, 0, -1)

    @mg.consumer
    def discard(self, x):
        pass
