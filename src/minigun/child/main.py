"""The runner's child: the lean entry point that runs one pipeline under a runner.

Started by :func:`minigun.runner.run_isolated` as ``python -c <bootstrap>`` in a new
session (see :data:`minigun.runner.spec.CHILD_BOOTSTRAP`). In order:

1. take the control channel (stdin) and arm the lifetime guard on it, before anything
   else is imported -- a runner that dies while this process imports the target or
   runs its ``__init__`` still takes the group down with it;
2. read the spec (target, params, options, grace) from it and open the record channel;
3. route ``logging`` and uncaught exceptions to the record channel;
4. import the target, build the pipeline with typed params, drive the run, send the
   result, exit.

It imports neither click nor rich. It exits only with codes of the contract
(:class:`~minigun.ExitCode`): bad target, params or definition are 2; a target that
calls ``sys.exit()`` while importing or building, or anything unexpected, is 1 with an
ERROR record that says what happened.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from typing import Any

from minigun._signals import install_stop_handlers, restore_handlers
from minigun.child.channel import Channel, ChannelReporter, install_logging
from minigun.child.drive import DriveOptions, StopRequest, drive, stopped_result
from minigun.child.guard import LifetimeGuard, end_group
from minigun.exit_codes import ExitCode
from minigun.runner.protocol import RECORDS_FD_KEY, RUNNER_PID_ENV

__all__ = ["main"]

#: Seconds between progress lines in the orchestrator's log.
PROGRESS_LOG_INTERVAL = 5.0

_log = logging.getLogger("minigun.child")


class _ChannelOutput:
    """:class:`~minigun.child.drive.RunOutput` onto the record channel."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel

    def say(self, message: str, level: int = logging.INFO) -> None:
        self.channel.log(level, f"minigun: {message}", "minigun.run")

    def failure(self, text: str) -> None:
        self.channel.log(logging.ERROR, text, "minigun.run")

    def result(self, data: dict[str, Any]) -> None:
        self.channel.result(data)


def main() -> None:
    """Run the pipeline the runner describes on stdin; exit with the contract's code."""
    control = os.dup(0)  # not inheritable: exec'd grandchildren never hold it
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)  # the pipeline's own stdin is empty, as before
    os.close(devnull)
    raw_pid = os.environ.pop(RUNNER_PID_ENV, "")
    guard = LifetimeGuard(control, int(raw_pid) if raw_pid.isdigit() else None)
    _preload_engine()
    line = guard.read_spec()
    if line is None:  # the runner died before it told us anything
        end_group()
    stop = StopRequest(peek=guard.poll)

    def on_stop(reason: str) -> None:
        code = ExitCode.TIMEOUT if reason == "timeout" else ExitCode.TERMINATED
        stop.request(code, reason, announced=True)

    guard.arm(on_stop)
    spec = json.loads(line or b"{}")
    channel = Channel(int(spec[RECORDS_FD_KEY]))
    install_logging(channel)
    output = _ChannelOutput(channel)
    with _EarlyStop(stop) as early:
        code = _run(spec, output, channel, stop, early)
    _exit(code)


class _StoppedBeforeStart(BaseException):
    """Raised by a stop signal that arrives while the target is imported or built."""


class _EarlyStop:
    """Stop signals before the pipeline starts: record the stop and abandon the start.

    Until the engine runs there is nothing to drain, so a SIGTERM (a timeout, a cancel)
    that arrives while the target imports or its ``__init__`` runs ends the attempt at
    once, with a result that says so, instead of killing the process without one (the
    default action). Once :func:`drive` takes over, its own handlers drain the run.
    """

    def __init__(self, stop: StopRequest) -> None:
        self.stop = stop
        self.started = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        self.stop._handle(signum, frame)
        if not self.started:
            raise _StoppedBeforeStart

    def __enter__(self) -> _EarlyStop:
        self._previous = install_stop_handlers(self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        restore_handlers(self._previous)


#: The modules every run imports (a thread-executed pipeline, its dead-letter writer).
_PRELOAD = (
    "pathlib",
    "minigun.targets",
    "minigun.params",
    "minigun.core.pipeline",
    "minigun.core.graph",
    "minigun.core.executors.thread",
    "minigun.core.dead_letters",
)


def _preload_engine() -> None:
    """Import what every run needs before the spec is read, not after.

    A runner may start this process before it knows the spec (see
    :mod:`minigun.runner.warm`); these imports then overlap the runner's own start-up
    instead of following it. They are minigun's modules only, never the target: a
    runner that dies meanwhile is noticed when the spec is read.
    """
    import importlib

    for name in _PRELOAD:
        importlib.import_module(name)


def _run(
    spec: dict[str, Any],
    output: _ChannelOutput,
    channel: Channel,
    stop: StopRequest,
    early: _EarlyStop,
) -> int:
    target = str(spec.get("target", ""))
    stage = "importing"
    label = target
    grace = float(spec.get("grace", 30.0))
    try:
        from minigun.targets import add_import_path, load_pipeline_class

        add_import_path(os.getcwd())
        cls = load_pipeline_class(target)
        label = cls.__name__
        stage = "building"
        pipeline = _instantiate(cls, spec.get("params") or {})
        options = dict(spec.get("options") or {})
        progress = options.pop("progress", None)
        options.pop("hud", None)  # drawn by the runner's caller from progress records
        drive_options = DriveOptions(
            label=cls.__name__, grace=grace, grace_margin=min(1.0, grace / 4)
        )
        reporter = ChannelReporter(
            channel, cls.__name__, lines=progress is not False, interval=PROGRESS_LOG_INTERVAL
        )
        stage = "running"
        from minigun.core.dead_letters import default_directory

        # Dead letters of a task are never only in memory: with no directory set
        # anywhere, they go to ./minigun-dead-letters in the run's working directory.
        options.setdefault("default_dead_letter_dir", default_directory())
        early.started = True  # from here on, drive()'s handlers drain the run
        if stop.code is not None:
            raise _StoppedBeforeStart
        return drive(
            lambda: pipeline.run(background=True, **options),
            drive_options,
            output=output,
            reporter=reporter,
            stop=stop,
        )
    except SystemExit as exc:
        output.say(
            f"error: {target} called sys.exit({exc.code!r}) while {stage}: the pipeline"
            f" did not run to its end (exit {int(ExitCode.FAILED)})",
            logging.ERROR,
        )
        return int(ExitCode.FAILED)
    except _StoppedBeforeStart:
        assert stop.code is not None
        options_ = DriveOptions(label=label, grace=grace)
        output.say(
            f"{stop.reason} while {stage} {target}: stopped before the pipeline started"
            f" (exit {int(stop.code)})",
            logging.WARNING,
        )
        output.result(stopped_result(stop, options_, {}, drained=True))
        return int(stop.code)
    except KeyboardInterrupt:
        return int(ExitCode.INTERRUPTED)
    except Exception as exc:
        if getattr(exc, "exit_code", None) == ExitCode.USAGE:
            if os.environ.get("MINIGUN_DEBUG"):
                _log.error("minigun: %s %s failed", stage, target, exc_info=exc)
            output.say(f"error: {_one_line(exc)}", logging.ERROR)
            return int(ExitCode.USAGE)
        _log.exception("minigun: %s %s failed", stage, target)
        return int(ExitCode.FAILED)


def _instantiate(cls: type[Any], params: dict[str, Any]) -> Any:
    from minigun.params import instantiate

    return instantiate(cls, params)


def _one_line(exc: BaseException) -> str:
    from minigun._text import escape_controls

    text = str(getattr(exc, "message", None) or exc).strip() or type(exc).__name__
    return escape_controls(text.splitlines()[0])


def _exit(code: int) -> None:
    """Exit with ``code``; never hang on a thread the pipeline left running."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    lingering = [
        t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon
    ]
    if lingering:
        names = ", ".join(sorted(t.name for t in lingering))
        _log.warning("minigun: exiting without waiting for thread(s) still running: %s", names)
        logging.shutdown()
        os._exit(code)
    sys.exit(code)
