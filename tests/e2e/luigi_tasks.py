"""Luigi tasks for the e2e env, loaded by ``luigi --module luigi_tasks`` (on PYTHONPATH)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import luigi

from minigun.adapters.luigi import MinigunTask

PIPELINES = Path(__file__).with_name("pipelines.py")


class E2ETask(MinigunTask):
    """Results next to the pgid file; ``run_name`` only makes each run a distinct task."""

    pgid_file = luigi.Parameter()
    run_name = luigi.Parameter()

    def pipeline_params(self) -> dict[str, Any]:
        params = super().pipeline_params()
        params.pop("run_name")
        return params

    @property
    def result_dir(self) -> str:  # type: ignore[override]
        return str(Path(self.pgid_file).parent / "results")


class SucceedsTask(E2ETask):
    pipeline = f"{PIPELINES}:Succeeds"


class SkipsTask(E2ETask):
    pipeline = f"{PIPELINES}:Skips"


class FailsTask(E2ETask):
    pipeline = f"{PIPELINES}:Fails"


class DrainsTask(E2ETask):
    """Stopped by SIGTERM to its worker (``--workers 2``)."""

    pipeline = f"{PIPELINES}:Drains"
    grace = 10.0
    item_seconds = luigi.FloatParameter(default=25.0)


class WorkerTimeoutTask(E2ETask):
    """Stopped by Luigi's ``worker_timeout``."""

    pipeline = f"{PIPELINES}:Drains"
    worker_timeout = 20
    grace = 5.0
    item_seconds = luigi.FloatParameter(default=25.0)
