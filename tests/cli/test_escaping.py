"""Control characters in anything an error line echoes are escaped (issue 10, finding 14).

A target path holding ``ESC [ 2 J`` used to reach the terminal raw: whoever could name
a file could clear the screen, retitle the window or hide the error. Every usage
error goes out through ``_usage_error``, which escapes whatever it is given.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from minigun._text import escape_controls
from minigun.cli import run_cli as run_cli_in_process
from support import run_cli, target

ESCAPES = [
    ("\x1b[31mred", "\\x1b[31mred"),  # ESC: a CSI sequence
    ("a\rb", "a\\rb"),  # CR rewrites the line
    ("bell\x07", "bell\\x07"),  # BEL
    ("\x9b2J", "\\x9b2J"),  # C1 CSI
    ("nel\x85x", "nel\\x85x"),  # C1 NEL: a newline to some readers
    ("del\x7f", "del\\x7f"),
    ("a\nb", "a\\nb"),
    ("tab\there", "tab\\there"),
    ("sep\u2028x", "sep\\u2028x"),  # line separator
    ("\u202egnp.exe", "\\u202egnp.exe"),  # right-to-left override
    ("undecodable\udcff", "undecodable\\udcff"),  # a surrogate-escaped file name byte
    ("café/naïve ☃ C:\\path", "café/naïve ☃ C:\\path"),  # printable text is left alone
]


@pytest.mark.parametrize(("raw", "shown"), ESCAPES, ids=[repr(r) for r, _ in ESCAPES])
def test_escape_controls(raw: str, shown: str) -> None:
    assert escape_controls(raw) == shown
    assert escape_controls(raw).isprintable()


def usage_line(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert run_cli_in_process(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.endswith("\n"), repr(err)
    line = err[:-1]
    assert line.startswith("minigun: error: ")
    assert line.isprintable(), repr(line)
    return line


def test_a_target_path_with_an_escape_sequence_is_escaped(
    capsys: pytest.CaptureFixture[str],
) -> None:
    line = usage_line(["run", "--in-process", "/tmp/\x1b[2J\x1b]0;pwned\x07x.py"], capsys)
    assert line == "minigun: error: no such file: /tmp/\\x1b[2J\\x1b]0;pwned\\x07x.py"


def test_a_carriage_return_cannot_hide_the_start_of_the_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    line = usage_line(["inspect", "missing\rall good.py"], capsys)
    assert line == "minigun: error: no such file: missing\\rall good.py"


def test_a_file_that_fails_to_import_with_controls_in_its_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "noisy\x1b[5m.py"
    bad.write_text("raise RuntimeError('boom\\x1b[31m\\nsecond line')\n")
    line = usage_line(["run", "--in-process", str(bad)], capsys)
    assert "noisy\\x1b[5m.py failed: RuntimeError: boom\\x1b[31m\\nsecond line" in line


def test_a_click_message_quoting_an_argument_is_escaped(
    capsys: pytest.CaptureFixture[str],
) -> None:
    line = usage_line(["run", target("Succeed"), "--\x1b[2J"], capsys)
    assert "No such option '--\\x1b[2J'" in line


def test_a_param_value_is_escaped(capsys: pytest.CaptureFixture[str]) -> None:
    line = usage_line(["run", "--in-process", target("Succeed"), "-p", "n=\x1b[2J\x9b"], capsys)
    assert line == "minigun: error: bad params for Succeed: n='\\x1b[2J\\x9b' is not an int"


def test_a_result_file_name_is_escaped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    odd = tmp_path / "dir\x1b[8m"
    odd.mkdir()
    line = usage_line(["replay", "x.jsonl", target("Succeed"), "--result-file", str(odd)], capsys)
    assert "dir\\x1b[8m" in line and "\x1b" not in line


def test_through_the_runner_the_line_is_escaped_end_to_end() -> None:
    proc = run_cli("run", "/tmp/\x1b]0;pwned\x07\x1b[2Jmissing.py")
    assert proc.returncode == 2, proc.stderr
    assert "\x1b" not in proc.stderr and "\x07" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "minigun: error: no such file: /tmp/\\x1b]0;pwned\\x07\\x1b[2Jmissing.py"
    ]
