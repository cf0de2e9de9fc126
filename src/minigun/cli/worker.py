"""``minigun worker``: run a pipeline again and again, as a long-running service.

Each run goes through the isolated runner, so a leak or crash in one run never
accumulates in the worker. After a success (or a skip) the worker waits
``--interval``; after a failure it backs off from ``--restart-delay``, doubling up to
five minutes with the runner's jitter (half fixed, half random, so workers that failed
together do not restart in lock step), and resets after the next success. A usage
error (exit 2) ends the worker at once: running a broken target again cannot fix it.
SIGTERM or SIGINT stops the current run through the runner's graceful tear-down and
then the worker, with exit status 0: for a service manager that is a clean stop.
``--timeout`` bounds each run: a run that hangs is stopped like any timed-out run
(drained within ``--grace``, then killed) and counts as a failure, so a service never
waits forever on one stuck run.
"""

from __future__ import annotations

import threading
from types import FrameType

import click

from minigun._signals import install_stop_handlers, restore_handlers
from minigun.cli._dry_run import DRY_RUN_HELP
from minigun.cli._errors import BadInput
from minigun.cli._logging import new_run
from minigun.cli._output import echo_line, say, state
from minigun.cli._params import parse_params
from minigun.cli.run import param_options
from minigun.exit_codes import ExitCode

__all__ = ["MAX_RESTART_DELAY", "worker_command"]

MAX_RESTART_DELAY = 300.0


@click.command("worker")
@click.argument("target")
@param_options
@click.option(
    "--interval",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Seconds to wait after a successful run before the next.",
)
@click.option(
    "--restart-delay",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="Seconds to wait after the first failure; doubles per failure (max 300).",
)
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Seconds a stopped run may drain before SIGKILL.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True, max=1e9),
    help="Seconds one run may take; a run stopped for it (exit 124) counts as a failure"
    " and the worker restarts after the backoff. Default: no limit.",
)
@click.option("--dry-run", is_flag=True, help=DRY_RUN_HELP)
def worker_command(
    target: str,
    param_pairs: tuple[str, ...],
    params_json: str | None,
    interval: float,
    restart_delay: float,
    grace: float,
    timeout: float | None,
    dry_run: bool,
) -> int:
    """Run TARGET in a loop until SIGTERM."""
    from minigun.runner import LogLine, RunSpec, run_isolated
    from minigun.runner.retry import backoff_delay

    params = parse_params(param_pairs, params_json)
    if dry_run:
        from minigun.cli._dry_run import dry_run as check

        return check(target, params, {}, {"grace": grace, "timeout": timeout})
    try:
        spec = RunSpec(
            pipeline=target,
            params=params,
            grace=grace,
            timeout=timeout,
            options={"progress": False},
            env={"MINIGUN_DEBUG": "1"} if state.debug else None,
        )
    except ValueError as exc:
        raise BadInput(str(exc)) from None

    def relay(line: LogLine) -> None:
        # The worker reports each run itself (below); the runner's per-attempt line
        # would say the same thing twice.
        if line.stream == "runner" and line.startswith("minigun: attempt "):
            return
        echo_line(line, line.stream)

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = install_stop_handlers(on_signal)
    failures = 0
    runs = 0
    try:
        while not stop.is_set():
            runs += 1
            new_run(target)  # each run its own run_id in the log lines
            outcome = run_isolated(spec, on_log=relay, cancel_event=stop)
            if outcome.cancelled or stop.is_set():
                break
            if outcome.exit_code == ExitCode.USAGE:
                return int(ExitCode.USAGE)  # the child's "minigun: error:" line says why
            if outcome.exit_code in (ExitCode.OK, ExitCode.SKIPPED):
                failures = 0
                delay = interval
                say(f"worker: run {runs} {outcome.status} in {outcome.duration:.2f}s")
            else:
                failures += 1
                delay = backoff_delay(
                    failures, delay=restart_delay, backoff=2.0, max_delay=MAX_RESTART_DELAY
                )
                say(
                    f"worker: run {runs} ended {outcome.status} (exit {int(outcome.exit_code)});"
                    f" {failures} failure(s) in a row, restarting in {delay:.2f}s"
                )
            if delay and stop.wait(delay):
                break
    finally:
        restore_handlers(previous)
    say(f"worker: stopped after {runs} run(s)")
    return 0
