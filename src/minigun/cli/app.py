"""The ``minigun`` command group (click) and its error presentation.

``run_cli`` owns error presentation for every command: bad
input -- a click usage error, a bad target, bad params, an invalid pipeline
definition, anything else that carries ``exit_code == ExitCode.USAGE`` -- becomes one
line, ``minigun: error: …``, on stderr and exit status 2, with the traceback only
under ``--debug`` (or ``MINIGUN_DEBUG=1``). Control characters in that line are
escaped (``\x1b``), whatever the message echoes (see ``minigun._text``). Commands
return their exit code.

Only click is imported here; the engine, rich and the runner are imported by the
command that needs them, so ``minigun --help`` and the runner's parent stay fast. The
console script itself is :func:`minigun.cli.main`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import click

from minigun._text import escape_controls
from minigun._version import __version__
from minigun.cli._errors import BadInput
from minigun.cli._logging import LOG_FORMATS, configure
from minigun.cli._output import state
from minigun.cli.inspect import inspect_command
from minigun.cli.replay import replay_command
from minigun.cli.report import report_command
from minigun.cli.run import run_command
from minigun.cli.worker import worker_command
from minigun.exit_codes import ExitCode

if TYPE_CHECKING:
    from minigun.runner.warm import WarmChild

__all__ = ["BadInput", "cli", "run_cli"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="minigun", message="%(prog)s %(version)s")
@click.option(
    "--debug",
    is_flag=True,
    envvar="MINIGUN_DEBUG",
    help="Show tracebacks for errors (also MINIGUN_DEBUG=1).",
)
@click.option(
    "--log-format",
    type=click.Choice(LOG_FORMATS),
    default="text",
    show_default=True,
    envvar="MINIGUN_LOG_FORMAT",
    help="'json': one JSON object per line (time, level, logger, message, run_id,"
    " pipeline), for log routers (also MINIGUN_LOG_FORMAT).",
)
def cli(debug: bool, log_format: str) -> None:
    """Run minigun pipelines as isolated tasks."""
    state.debug = debug
    configure(log_format, debug=debug)


cli.add_command(run_command)
cli.add_command(inspect_command)
cli.add_command(replay_command)
cli.add_command(report_command)
cli.add_command(worker_command)


def run_cli(argv: Sequence[str] | None = None, *, warm: WarmChild | None = None) -> int:
    """Run the CLI and return its exit status instead of exiting (for embedding).

    ``warm`` is a child started ahead for ``minigun run`` (see :func:`minigun.cli.main`);
    it is the context's ``obj``, and whoever passed it discards it if unused.
    """
    try:
        rv = cli.main(
            args=list(argv) if argv is not None else None,
            prog_name="minigun",
            standalone_mode=False,
            obj=warm,
        )
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.format_message(), err=True)
        return int(ExitCode.USAGE)
    except click.ClickException as exc:
        return _usage_error(exc.format_message(), exc, hint=_help_hint(exc))
    except click.exceptions.Abort:
        return int(ExitCode.INTERRUPTED)
    except KeyboardInterrupt:
        return int(ExitCode.INTERRUPTED)
    except Exception as exc:
        if getattr(exc, "exit_code", None) == ExitCode.USAGE:
            return _usage_error(str(exc), exc)
        raise
    return rv if isinstance(rv, int) else 0


def _help_hint(exc: click.ClickException) -> str:
    ctx = getattr(exc, "ctx", None)
    if isinstance(exc, click.UsageError) and ctx is not None:
        return f" (see '{ctx.command_path} --help')"
    return ""


def _usage_error(message: str, exc: BaseException, hint: str = "") -> int:
    """The one exit point for usage errors: ``minigun: error: <first line>``, exit 2.

    Whatever the message holds, what reaches the terminal is one line of printable
    text: the first line (split at a real newline only, so a CR or U+2028 inside a
    value cannot hide what precedes it) with every control character escaped by
    :func:`minigun._text.escape_controls`.
    """
    if state.debug:
        import traceback

        traceback.print_exception(type(exc), exc, exc.__traceback__)
    text = message.strip()
    first_line = text.split("\n", 1)[0] if text else type(exc).__name__
    sys.stderr.write(f"minigun: error: {escape_controls(first_line)}{escape_controls(hint)}\n")
    sys.stderr.flush()
    return int(ExitCode.USAGE)
