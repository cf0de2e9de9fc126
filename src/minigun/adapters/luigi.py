"""Luigi adapter: :class:`MinigunTask`, a ``luigi.Task`` base that runs a pipeline in isolation.

.. code-block:: python

    import luigi
    from minigun.adapters.luigi import MinigunTask

    class NightlySync(MinigunTask):
        pipeline = "etl.pipelines:NightlySync"
        dataset_id = luigi.Parameter()       # becomes the pipeline param dataset_id
        timeout = 3600

    luigi.build([NightlySync(dataset_id="2026-11-28")], local_scheduler=True)

The pipeline runs in a child process group started by :mod:`minigun.runner`, never in
the Luigi worker. ``output()`` defaults to ``<result_dir>/<task_id>.json`` holding the
result JSON; it is written atomically, and only when the run succeeded or was skipped
(exit 99, result ``"status": "skipped"``), so a skipped task counts as complete. A
failure raises :class:`~minigun.adapters._common.PipelineRunFailed`, which carries the
exit code. SIGTERM to the task process (Luigi's ``worker_timeout``, a supervisor,
``kill``) cancels the runner, which stops the whole process group before the task ends.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

import luigi

from minigun.adapters._common import (
    PipelineRunFailed,
    Verdict,
    describe_outcome,
    run_announced,
    spec_from_settings,
    verdict,
)
from minigun.exit_codes import ExitCode

__all__ = ["MinigunTask", "PipelineRunFailed"]

logger = logging.getLogger("luigi-interface")

_JSON_SCALARS = (str, int, float, bool, type(None), list, dict)


@contextlib.contextmanager
def _sigterm_sets(event: threading.Event) -> Iterator[None]:
    """While the block runs, SIGTERM sets ``event`` instead of killing the process.

    The runner then stops the pipeline's process group (SIGTERM, grace, SIGKILL), the
    task fails, and the process exits as Luigi expects. Signal handlers can only be
    installed from the main thread; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_sigterm(signum: int, frame: Any) -> None:
        logger.info("minigun: SIGTERM received, stopping the pipeline")
        event.set()

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class MinigunTask(luigi.Task):
    """Base class: set ``pipeline = "pkg.mod:Cls"``; Luigi Parameters become pipeline params.

    Runner settings are plain class attributes (override them in the subclass):
    ``python``, ``env``, ``cwd``, ``timeout``, ``runner_retries``,
    ``runner_retry_delay``, ``grace``, ``execution``, ``max_processes``,
    ``max_threads``, and ``result_dir`` for the default ``output()``.
    """

    pipeline: str = ""
    python: str | None = None
    env: dict[str, str] | None = None
    cwd: str | None = None
    timeout: float | None = None
    runner_retries: int = 0
    runner_retry_delay: float = 1.0
    grace: float = 30.0
    execution: str | None = None
    max_processes: int | None = None
    max_threads: int | None = None
    result_dir: str = "minigun-results"

    def pipeline_params(self) -> dict[str, Any]:
        """Params for the pipeline: every Luigi Parameter of this task, by name.

        Values JSON cannot carry (dates, enums, ...) are sent as the Parameter's own
        string serialisation. Override to rename, drop or compute params.
        """
        params: dict[str, Any] = {}
        for name, parameter in self.get_params():
            value = getattr(self, name)
            params[name] = value if isinstance(value, _JSON_SCALARS) else parameter.serialize(value)
        return params

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget(os.path.join(self.result_dir, f"{self.task_id}.json"))

    def run(self) -> None:
        if not self.pipeline:
            raise TypeError(f"{type(self).__name__} must set pipeline = 'pkg.module:Class'")
        spec = spec_from_settings(self.pipeline, self.pipeline_params(), self)
        cancel = threading.Event()
        with _sigterm_sets(cancel):
            outcome = run_announced(spec, logger.info, cancel_event=cancel)
        self._status(describe_outcome(self.pipeline, outcome))

        if verdict(outcome) not in (Verdict.SUCCEEDED, Verdict.SKIPPED):
            raise PipelineRunFailed(self.pipeline, outcome)
        result = outcome.result
        if result is None:  # the child wrote nothing, yet its exit code is definite
            status = "skipped" if outcome.exit_code == ExitCode.SKIPPED else "succeeded"
            code = int(outcome.exit_code)
            result = {"status": status, "exit_code": code, "ok": code == ExitCode.OK}
        with self.output().open("w") as target:  # LocalTarget: temp file, then rename
            json.dump(result, target, indent=2)

    def _status(self, message: str) -> None:
        # Set by Luigi's worker when the task runs under a scheduler; None otherwise.
        set_status_message = getattr(self, "set_status_message", None)
        if callable(set_status_message):
            set_status_message(message)
