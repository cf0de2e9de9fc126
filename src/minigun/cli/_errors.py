"""The CLI's usage error: one line on stderr, exit 2 (the contract's USAGE)."""

from __future__ import annotations

import click

from minigun.exit_codes import ExitCode

__all__ = ["BadInput"]


class BadInput(click.ClickException):
    """Bad input from the user; presented as ``minigun: error: <message>``."""

    exit_code = int(ExitCode.USAGE)
