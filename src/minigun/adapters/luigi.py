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
exit code.

Stopping. SIGTERM to the task process (Luigi's ``worker_timeout``, a supervisor,
``kill``) cancels the runner, which stops the whole process group (SIGTERM, ``grace``,
SIGKILL) before the task ends; Luigi then waits for the task process without a SIGKILL
of its own, so no grace is cut short. With ``--workers N`` (N > 1, or any
``worker_timeout``) each task runs in a process forked by the worker, and SIGTERM to
the *worker* kills only the worker (it has no handler): the task process notices that
its worker is gone (its parent changes) and cancels the runner the same way. luigid
then marks the task FAILED once it drops the silent worker (its
``worker_disconnect_delay``, 60 s by default).

``worker_timeout`` is the whole budget of the task: the runner's ``timeout`` is
shortened so that the run and its drain (``grace``, plus a second for the tear-down)
end within it, and Luigi's own SIGTERM never has to come. A ``grace`` that leaves the
pipeline no time to run is logged as a warning; lengthen ``worker_timeout`` together
with ``grace``. (With ``runner_retries`` the budget is per attempt.)
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import luigi
from luigi.worker import TaskProcess

from minigun._signals import install_stop_handlers, restore_handlers
from minigun.adapters._common import (
    RUNNER_SETTINGS,
    PipelineRunFailed,
    RunnerSettings,
    Verdict,
    build_spec,
    describe_outcome,
    relay_to,
    run_announced,
    verdict,
)
from minigun.adapters._kill_windows import LUIGI
from minigun.exit_codes import ExitCode
from minigun.runner import RunSpec

__all__ = ["MinigunTask", "PipelineRunFailed"]

logger = logging.getLogger("luigi-interface")

_JSON_SCALARS = (str, int, float, bool, type(None), list, dict)


@contextlib.contextmanager
def _sigterm_sets(event: threading.Event) -> Iterator[None]:
    """While the block runs, SIGTERM sets ``event`` instead of killing the process.

    The runner then stops the pipeline's process group (SIGTERM, grace, SIGKILL), the
    task fails, and the process exits as Luigi expects. (The runner works on a helper
    thread, where it cannot install handlers itself.) Handlers can only be installed
    from the main thread; elsewhere this does nothing (see :mod:`minigun._signals`).
    """

    def on_sigterm(signum: int, frame: Any) -> None:
        logger.info("minigun: SIGTERM received, stopping the pipeline")
        event.set()

    previous = install_stop_handlers(on_sigterm, (signal.SIGTERM,))
    try:
        yield
    finally:
        restore_handlers(previous)


#: How often a forked task process checks that its worker is still there (seconds).
_WORKER_POLL = 0.2
#: What a ``worker_timeout`` budget keeps free beyond ``grace``: the runner's SIGKILL,
#: reaping the group, and writing the outcome.
_TEAR_DOWN = 1.0


def _task_process() -> TaskProcess | None:
    """The Luigi ``TaskProcess`` this code runs in, when the worker forked one for it."""
    process = multiprocessing.current_process()
    return process if isinstance(process, TaskProcess) else None


@contextlib.contextmanager
def _worker_gone_sets(event: threading.Event) -> Iterator[None]:
    """While the block runs in a forked task process, the worker's death sets ``event``.

    A Luigi worker has no SIGTERM handler: ``kill`` on it (a supervisor stopping it,
    an operator) ends it at once, and its forked task processes are re-parented and
    keep running unsupervised, with nobody to report their end to luigid. The worker
    is the only process that would stop them, so its disappearance is this attempt's
    end. Polling the parent PID needs no cooperation from the worker and works
    wherever ``os.getppid`` does (``PR_SET_PDEATHSIG`` would be Linux-only and follows
    the forking thread, not the process).
    """
    if _task_process() is None:
        yield
        return
    worker = os.getppid()
    done = threading.Event()

    def watch() -> None:
        while not done.wait(_WORKER_POLL):
            if os.getppid() != worker:
                logger.error(
                    "minigun: the Luigi worker (pid %d) running this task is gone; "
                    "stopping the pipeline",
                    worker,
                )
                event.set()
                return

    watcher = threading.Thread(target=watch, name="minigun-luigi-worker-watch", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()


class MinigunTask(RunnerSettings, luigi.Task):
    """Base class: set ``pipeline = "pkg.mod:Cls"``; Luigi Parameters become pipeline params.

    Runner settings are plain class attributes inherited from
    :class:`~minigun.adapters._common.RunnerSettings` (override them in the subclass):
    ``python``, ``env``, ``cwd``, ``timeout``, ``runner_retries``,
    ``runner_retry_delay``, ``grace``, ``execution``, ``max_processes``,
    ``max_threads``; and ``result_dir`` for the default ``output()``.

    ``grace`` defaults to 30 s: Luigi never SIGKILLs a task process it terminated (it
    waits for it), so any grace fits; under ``worker_timeout`` it comes out of the
    timeout's budget (see the module docs).
    """

    pipeline: str = ""
    grace: float = LUIGI.default_grace
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
        spec = self._spec()
        cancel = threading.Event()
        with _sigterm_sets(cancel), _worker_gone_sets(cancel):
            outcome = run_announced(spec, relay_to(logger), cancel_event=cancel)
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

    def _spec(self) -> RunSpec:
        settings = {name: getattr(self, name) for name in RUNNER_SETTINGS}
        budget = self._worker_timeout_left()
        if budget is not None:
            run_for = budget - float(self.grace) - _TEAR_DOWN
            if run_for > 0:
                if settings["timeout"] is None or settings["timeout"] > run_for:
                    settings["timeout"] = run_for
                    logger.info(
                        "minigun: Luigi's worker_timeout leaves %.1fs: the pipeline runs "
                        "for at most %.1fs, then drains for up to %ss",
                        budget,
                        run_for,
                        self.grace,
                    )
            else:
                logger.warning(
                    "minigun: grace=%ss does not fit Luigi's worker_timeout (%.1fs left): "
                    "the task will run until Luigi's SIGTERM and then drain for %ss more; "
                    "lengthen worker_timeout together with grace",
                    self.grace,
                    budget,
                    self.grace,
                )
        return build_spec(self.pipeline, self.pipeline_params(), **settings)

    @staticmethod
    def _worker_timeout_left() -> float | None:
        """Seconds until Luigi's ``worker_timeout`` expires for this task, if one is set.

        A task with a ``worker_timeout`` always runs in a forked ``TaskProcess``
        (Luigi needs a process to terminate), which knows its deadline."""
        process = _task_process()
        deadline = getattr(process, "timeout_time", None)
        return None if deadline is None else float(deadline) - time.time()

    def _status(self, message: str) -> None:
        # Set by Luigi's worker when the task runs under a scheduler; None otherwise.
        set_status_message = getattr(self, "set_status_message", None)
        if callable(set_status_message):
            set_status_message(message)
