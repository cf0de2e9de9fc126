"""``minigun report RESULT.json``: a finished run as tables, markdown or one HTML page.

The rendering lives in :mod:`minigun.report` (imported only when this command runs);
here are the command line and its errors: a missing, unreadable or malformed result
file is one ``minigun: error: …`` line and exit 2, like every bad input.
"""

from __future__ import annotations

import json
import os
import sys

import click

from minigun._text import escape_controls
from minigun.cli._errors import BadInput

__all__ = ["report_command"]

FORMATS = ("text", "markdown", "html")


@click.command("report", short_help="Summarise a run from its result JSON.")
@click.argument("result_file", metavar="RESULT.json")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="text",
    show_default=True,
    help="text: tables for a terminal; markdown: for a ticket; html: one self-contained"
    " page with charts (no network assets).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    help="Write the report to this file instead of stdout.",
)
@click.option(
    "--width",
    type=click.IntRange(min=40),
    help="Text width of the text format (default: the terminal's; off a terminal, the"
    " tables' natural width). A narrow width leaves out latency and queue columns first.",
)
def report_command(result_file: str, fmt: str, output: str | None, width: int | None) -> int:
    """Show the run recorded in RESULT.json (minigun run --result-file, or an
    orchestrator's copy of the result JSON): stages, bottleneck, dead letters by stage
    and error type, runner attempts."""
    from minigun.report.render import build_report, check_result

    shown = escape_controls(result_file)
    try:
        with open(result_file, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise BadInput(f"no such result file: {shown}") from None
    except IsADirectoryError:
        raise BadInput(f"{shown} is a directory, not a result file") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise BadInput(f"cannot read result file {shown}: {reason}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise BadInput(f"{shown} is not JSON: {exc}") from None
    try:
        result = check_result(data)
    except ValueError as exc:
        raise BadInput(f"{shown} {exc}") from None
    report = build_report(result, base_dir=os.path.dirname(os.path.abspath(result_file)))

    if output is not None:
        from minigun.cli._output import not_a_regular_file

        problem = not_a_regular_file(output)
        if problem is not None:
            raise BadInput(f"--output {escape_controls(output)} is {problem}, not a regular file")
    if fmt == "text":
        import io

        from minigun.report.render import render_text

        if output is None and sys.stdout.isatty():  # rich sizes and colours it
            render_text(report, sys.stdout, width=width)
            return 0
        buffer = io.StringIO()
        # A file or a pipe is not wrapped: the tables take their natural width.
        render_text(report, buffer, width=width or 1000)
        page = "".join(line.rstrip() + "\n" for line in buffer.getvalue().splitlines())
    elif fmt == "markdown":
        from minigun.report.render import render_markdown

        page = render_markdown(report)
    else:
        from minigun.report.html import render_html

        page = render_html(report)
    if output is None:
        click.echo(page, nl=False)
        return 0
    try:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(page)
    except OSError as exc:
        raise BadInput(f"cannot write {escape_controls(output)}: {exc.strerror or exc}") from None
    return 0
