"""Luigi tasks run by a real ``luigi`` worker process (``--module luigi_tasks``).

Loaded by Luigi from ``tests/adapters`` on ``PYTHONPATH``, so it imports nothing from
the tests package.
"""

from __future__ import annotations

from pathlib import Path

import luigi

from minigun.adapters.luigi import MinigunTask

HANGS = f"{Path(__file__).with_name('pipelines.py')}:Hangs"


class HangsTask(MinigunTask):
    """The ``Hangs`` pipeline (a cow_fork stage that sleeps); leaves PID markers."""

    pipeline = HANGS
    grace = 2.0
    marker_dir = luigi.Parameter()

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget(str(Path(self.marker_dir).parent / "out.json"))
