"""``minigun run``: through the isolated runner, or ``--in-process``.

``--in-process`` is both a debugging aid and what the runner's child runs.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

import click

from minigun._text import escape_controls
from minigun.cli._dry_run import DRY_RUN_HELP
from minigun.cli._errors import BadInput
from minigun.cli._logging import new_run
from minigun.cli._observe import RunObserver, make_observer
from minigun.cli._output import discard_stale, echo_line, say, state, write_json_atomic
from minigun.cli._params import parse_params
from minigun.core.executors.registry import executor_names
from minigun.exit_codes import ExitCode

__all__ = ["EXECUTIONS", "ConsoleOutput", "drive_here", "param_options", "run_command"]

EXECUTIONS = executor_names()


def param_options(func: Any) -> Any:
    """``-p key=value`` (repeatable) and ``--params-json``: the pipeline's constructor args."""
    func = click.option(
        "--params-json",
        metavar="JSON",
        help="Constructor params as a JSON object; -p wins for the same key.",
    )(func)
    func = click.option(
        "-p",
        "--param",
        "param_pairs",
        multiple=True,
        metavar="KEY=VALUE",
        help="A constructor param; VALUE is converted by the type hints of the pipeline's"
        " __init__ (JSON when it has none and VALUE parses, else a string).",
    )(func)
    return func


@click.command("run", short_help="Run a pipeline as an isolated task.")
@click.argument("target")
@param_options
@click.option(
    "--execution", type=click.Choice(EXECUTIONS), help="Force one strategy on every stage."
)
@click.option("--max-threads", type=click.IntRange(min=1), help="Cap on threads per stage.")
@click.option(
    "--max-processes", type=click.IntRange(min=1), help="Cap on processes per fork stage."
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1, max=2**31 - 1),
    help="Items in flight per async def stage (overrides the stages' own).",
)
@click.option(
    "--dask-address",
    metavar="ADDRESS",
    help="Dask scheduler for execution='dask' stages (tcp://host:8786); default: a"
    " LocalCluster started for the run. Overrides MINIGUN_DASK_ADDRESS.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True, max=1e9),
    help="Seconds per attempt before the run is stopped (exit 124).",
)
@click.option(
    "--retries",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Extra attempts for retryable exit codes (1, 75, 124, 137).",
)
@click.option(
    "--retry-delay",
    type=click.FloatRange(min=0, max=1e9),
    default=1.0,
    show_default=True,
    help="Seconds before the first retry; doubles each time, with jitter.",
)
@click.option(
    "--grace",
    type=click.FloatRange(min=0, max=1e9),
    default=30.0,
    show_default=True,
    help="Seconds to drain after SIGTERM/timeout before SIGKILL.",
)
@click.option("--result-file", type=click.Path(dir_okay=False), help="Write the result JSON here.")
@click.option(
    "--dead-letter-dir",
    type=click.Path(file_okay=False),
    help="Write dead letters (JSON Lines) into this directory.",
)
@click.option(
    "--max-dead-letters",
    type=click.IntRange(min=0),
    help="More dead letters than this makes the run partial (exit 3).",
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress bar on a terminal, a log line every few seconds otherwise.",
)
@click.option("--hud", is_flag=True, help="Live table of every stage (rich).")
@click.option(
    "--metrics-textfile",
    metavar="PATH",
    help="Write Prometheus metrics to PATH (*.prom) during and after the run, for"
    " node_exporter's textfile collector (extra: metrics).",
)
@click.option(
    "--pushgateway",
    metavar="URL",
    help="Push Prometheus metrics to this Pushgateway at the end (extra: metrics).",
)
@click.option(
    "--statsd",
    metavar="HOST:PORT",
    help="Send duration, throughput, items and per-stage counts to StatsD at the end.",
)
@click.option(
    "--otel",
    is_flag=True,
    help="Record the run as OpenTelemetry spans (OTEL_* environment; extra: metrics).",
)
@click.option(
    "--in-process",
    is_flag=True,
    help="Run in this process, not an isolated child (debugging; the runner's child).",
)
@click.option("--dry-run", is_flag=True, help=DRY_RUN_HELP)
def run_command(
    target: str,
    param_pairs: tuple[str, ...],
    params_json: str | None,
    execution: str | None,
    max_threads: int | None,
    max_processes: int | None,
    concurrency: int | None,
    dask_address: str | None,
    timeout: float | None,
    retries: int,
    retry_delay: float,
    grace: float,
    result_file: str | None,
    dead_letter_dir: str | None,
    max_dead_letters: int | None,
    progress: bool | None,
    hud: bool,
    metrics_textfile: str | None,
    pushgateway: str | None,
    statsd: str | None,
    otel: bool,
    in_process: bool,
    dry_run: bool,
) -> int:
    """Run the pipeline TARGET (pkg.mod:Class, path/file.py:Class or path/file.py).

    The exit status is the contract: 0 ok, 1 failed, 2 usage, 3 partial, 75 temporary
    failure, 99 skipped, 124 timeout, 130 interrupted, 137 killed, 143 terminated.
    """
    params = parse_params(param_pairs, params_json)
    overrides: dict[str, Any] = {
        "execution": execution,
        "max_threads": max_threads,
        "max_processes": max_processes,
        "concurrency": concurrency,
        "dask_address": dask_address,
        "dead_letter_dir": dead_letter_dir,
        "max_dead_letters": max_dead_letters,
    }
    if dry_run:  # before anything is touched: the result file, the observers
        from minigun.cli._dry_run import dry_run as check

        runner_options = {"timeout": timeout, "retries": retries, "retry_delay": retry_delay}
        return check(target, params, overrides, {**runner_options, "grace": grace})
    new_run(target)
    if result_file:
        discard_stale(result_file)
    observer = make_observer(
        target,
        result_file=result_file,
        textfile=metrics_textfile,
        pushgateway=pushgateway,
        statsd=statsd,
        otel=otel,
    )
    if in_process:
        if retries:
            say("--retries applies only through the runner; ignored with --in-process")
        return _run_in_process(
            target,
            params,
            overrides,
            timeout=timeout,
            grace=grace,
            result_file=result_file,
            progress=progress,
            hud=hud,
            observer=observer,
        )
    return _run_isolated(
        target,
        params,
        overrides,
        timeout=timeout,
        retries=retries,
        retry_delay=retry_delay,
        grace=grace,
        result_file=result_file,
        progress=progress,
        hud=hud,
        observer=observer,
    )


class ConsoleOutput:
    """Where an in-process run (``--in-process``, ``replay``) reports: stderr and a file."""

    def __init__(self, result_file: str | None, observer: RunObserver | None = None) -> None:
        self.result_file = result_file
        self.written = True
        self.observer = observer
        #: The result as recorded (with the observer's timeline), once the run ended.
        self.data: dict[str, Any] | None = None

    def say(self, message: str, level: int = 20) -> None:
        say(message)

    def failure(self, text: str) -> None:
        try:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass

    def result(self, data: dict[str, Any]) -> None:
        if self.observer is not None:
            data = self.observer.complete(data) or data
        self.data = data
        if self.result_file:
            self.written = write_result_file(self.result_file, data)


def drive_here(
    start: Any,
    label: str,
    *,
    grace: float,
    timeout: float | None,
    result_file: str | None,
    progress: bool | None,
    hud: bool,
    observer: RunObserver | None = None,
) -> int:
    """Drive a run in this process, reporting to the terminal and ``result_file``
    (and to ``observer``: the timeline and the metrics, from this process)."""
    from minigun.child.drive import DriveOptions, StopRequest, drive
    from minigun.cli._progress import make_reporter

    stop = StopRequest()
    reporter = make_reporter(
        label,
        progress=progress,
        hud=hud,
        on_quit=lambda: stop.request(ExitCode.TERMINATED, "q key"),
    )
    if observer is not None:
        reporter = observer.tee(reporter, label)
    options = DriveOptions(label=label, grace=grace, timeout=timeout)
    output = ConsoleOutput(result_file, observer)
    code = drive(start, options, output=output, reporter=reporter, stop=stop)
    if observer is not None:
        observer.finish(output.data, {"pipeline": label, "exit_code": code})
    return code if output.written else failed_to_record(code)


def write_result_file(path: str, data: dict[str, Any]) -> bool:
    """Write the result JSON; on failure (a full disk) say so in one line, return False.

    The file is replaced atomically or not at all, so a reader never sees a torn one.
    """
    try:
        write_json_atomic(path, data)
    except OSError as exc:
        say(f"error: cannot write the result file {escape_controls(path)}: {exc.strerror or exc}")
        return False
    return True


def failed_to_record(code: int) -> int:
    """A run whose result could not be recorded did not succeed: 0 becomes 1 (failed)."""
    return int(ExitCode.FAILED) if code == ExitCode.OK else code


def _run_in_process(
    target: str,
    params: dict[str, Any],
    overrides: dict[str, Any],
    *,
    timeout: float | None,
    grace: float,
    result_file: str | None,
    progress: bool | None,
    hud: bool,
    observer: RunObserver | None,
) -> int:
    from minigun.cli._params import instantiate
    from minigun.core.dead_letters import default_directory
    from minigun.targets import load_pipeline_class

    cls = load_pipeline_class(target)
    pipeline = instantiate(cls, params)
    overrides = {**overrides, "default_dead_letter_dir": default_directory()}
    return drive_here(
        lambda: pipeline.run(background=True, **overrides),
        cls.__name__,
        grace=grace,
        timeout=timeout,
        result_file=result_file,
        progress=progress,
        hud=hud,
        observer=observer,
    )


def _run_isolated(
    target: str,
    params: dict[str, Any],
    overrides: dict[str, Any],
    *,
    timeout: float | None,
    retries: int,
    retry_delay: float,
    grace: float,
    result_file: str | None,
    progress: bool | None,
    hud: bool,
    observer: RunObserver | None,
) -> int:
    from minigun.cli._progress import make_reporter
    from minigun.runner import LogLine, RunSpec, run_isolated
    from minigun.runner.warm import WarmChild

    options = {key: value for key, value in overrides.items() if value is not None}
    if progress is not None:
        options["progress"] = progress
    if hud:
        options["hud"] = True
    env: dict[str, str] = {"MINIGUN_DEBUG": "1"} if state.debug else {}
    try:
        spec = RunSpec(
            pipeline=target,
            params=params,
            timeout=timeout,
            retries=retries,
            retry_delay=retry_delay,
            grace=grace,
            options=options,
            env=env or None,
        )
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    quiet_attempts = retries == 0 and not state.debug
    # The child's output is a pipe: on a terminal, this process draws its progress
    # from the snapshots the child sends; elsewhere the child's progress lines say it.
    draw = sys.stderr.isatty() and (hud or progress is not False)
    quit_pressed = threading.Event()  # q in the HUD: the runner stops the group as on SIGTERM
    reporter = (
        make_reporter(target, progress=progress, hud=hud, on_quit=quit_pressed.set)
        if draw
        else None
    )

    def relay(line: LogLine) -> None:
        # With a single attempt the child's own lines say it all; the runner's
        # "attempt 1/1 exited 0" would only add noise (and a second line to a usage error).
        if line.stream == "runner" and quiet_attempts and line.startswith("minigun: attempt "):
            return
        if reporter is not None and line.logger == "minigun.progress":
            return  # the bar shows it
        echo_line(line, line.stream)

    def on_progress(snapshot: dict[str, Any]) -> None:
        if observer is not None:
            observer.update(snapshot)
        if reporter is not None:
            reporter.update(snapshot)

    try:
        outcome = run_isolated(
            spec,
            on_log=relay,
            on_progress=on_progress if reporter is not None or observer is not None else None,
            cancel_event=quit_pressed,
            warm=click.get_current_context().find_object(WarmChild),
        )
        final = getattr(reporter, "final", None)
        stats = (outcome.result or {}).get("stats")
        if final is not None and isinstance(stats, dict) and stats.get("stages"):
            final(stats)
    finally:
        if reporter is not None:
            reporter.close()
    result = outcome.result
    if observer is not None:
        result = observer.complete(result, outcome.runner_record())
    written = not result_file or result is None or write_result_file(result_file, result)
    if observer is not None:
        end = {"pipeline": target, "status": outcome.status, "exit_code": int(outcome.exit_code)}
        observer.finish(result, {**end, "runner": outcome.runner_record()})
    return int(outcome.exit_code) if written else failed_to_record(outcome.exit_code)
