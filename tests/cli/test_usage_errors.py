"""The catalogue of bad input: each is one ``minigun: error:`` line on stderr and exit 2,
without a traceback (unless ``--debug``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from support import TESTS_DIR, invoke_cli, run_cli, target

TWO = """
import minigun as mg
class A(mg.Pipeline):
    @mg.producer
    def p(self):
        yield 1
    @mg.consumer
    def c(self, x):
        pass
class B(A):
    pass
"""

NONE = "x = 1\n"

BROKEN = "import definitely_not_installed_module\n"


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "two.py").write_text(TWO)
    (tmp_path / "none.py").write_text(NONE)
    (tmp_path / "broken.py").write_text(BROKEN)
    (tmp_path / "letters.jsonl").write_text("this is not json\n")
    return tmp_path


CATALOGUE = [
    ("unknown-module", ["run", "no_such_pkg.mod:X"], "no module named 'no_such_pkg'"),
    ("unknown-class", ["run", target("Nope")], "has no attribute 'Nope'"),
    ("not-a-pipeline", ["run", "pipelines.contract:_announce"], "not a minigun Pipeline"),
    ("pipeline-base", ["run", "minigun:Pipeline"], "mg.Pipeline itself"),
    ("no-class-named", ["run", "pipelines.contract"], "ClassName"),
    ("missing-file", ["run", "{tmp}/missing.py"], "no such file"),
    ("two-pipelines", ["run", "{tmp}/two.py"], "defines 2 Pipeline classes (A, B)"),
    ("no-pipeline", ["run", "{tmp}/none.py"], "defines no minigun Pipeline"),
    ("import-fails", ["run", "{tmp}/broken.py"], "ModuleNotFoundError"),
    ("unknown-param", ["run", target("Succeed"), "-p", "m=1"], "bad params for Succeed"),
    ("bad-param-type", ["run", target("Succeed"), "-p", "n=abc"], "n='abc' is not an int"),
    (
        "deep-params-json",
        ["run", target("Succeed"), "--params-json", "[" * 50_000],
        "nested too deeply",
    ),
    ("bad-definition", ["run", target("BadDefinition")], "unknown stage 'nowhere'"),
    (
        "unreadable-dead-letters",
        ["replay", "{tmp}/missing.jsonl", target("Succeed")],
        "cannot read dead letters",
    ),
    (
        "malformed-dead-letters",
        ["replay", "{tmp}/letters.jsonl", target("Succeed")],
        "cannot read dead letters",
    ),
    ("inspect-unknown-class", ["inspect", target("Nope")], "has no attribute"),
    ("worker-bad-target", ["worker", "pipelines.nonexistent:X"], "no module named"),
]


# Rejected while the command line is parsed, before any target is loaded: run in
# this process through click's CliRunner (same entry point, same error presentation).
PARSE_ERRORS = [
    ("bad-p", ["run", target("Succeed"), "-p", "novalue"], "expected key=value"),
    ("bad-p-key", ["run", target("Succeed"), "-p", "not a name=1"], "not a valid parameter"),
    ("bad-json", ["run", target("Succeed"), "--params-json", "{nope"], "not valid JSON"),
    ("json-not-object", ["run", target("Succeed"), "--params-json", "[1]"], "JSON object"),
    ("bad-execution", ["run", target("Succeed"), "--execution", "warp"], "'warp' is not one of"),
    ("bad-threads", ["run", target("Succeed"), "--max-threads", "0"], "--max-threads"),
    ("bad-timeout", ["run", target("Succeed"), "--timeout", "-1"], "--timeout"),
    ("unknown-flag", ["run", target("Succeed"), "--bogus"], "No such option"),
    ("unknown-command", ["frobnicate"], "No such command"),
    ("missing-argument", ["run"], "Missing argument"),
    ("inspect-bad-format", ["inspect", target("Succeed"), "--format", "svg"], "'svg' is not"),
]


def _one_error_line(returncode: int, stderr: str, message: str) -> None:
    assert returncode == 2, (returncode, stderr)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("minigun: error: ")
    assert message in lines[0]
    assert "Traceback" not in stderr


@pytest.mark.parametrize(
    ("args", "message"), [c[1:] for c in PARSE_ERRORS], ids=[c[0] for c in PARSE_ERRORS]
)
def test_bad_command_line_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    result = invoke_cli(*args)
    _one_error_line(result.returncode, result.stderr, message)


@pytest.mark.parametrize(
    ("args", "message"), [c[1:] for c in CATALOGUE], ids=[c[0] for c in CATALOGUE]
)
def test_bad_input_is_one_line_and_exit_2(files: Path, args: list[str], message: str) -> None:
    argv = [a.replace("{tmp}", str(files)) for a in args]
    proc = run_cli(*argv, cwd=str(TESTS_DIR))
    _one_error_line(proc.returncode, proc.stderr, message)


@pytest.mark.parametrize("mode", [[], ["--in-process"]], ids=["runner", "in-process"])
def test_bad_target_is_exit_2_in_both_modes(mode: list[str]) -> None:
    proc = run_cli("run", *mode, "pipelines.contract:Nope")
    assert proc.returncode == 2
    assert proc.stderr.count("minigun: error:") == 1


def test_debug_shows_the_traceback() -> None:
    proc = run_cli("--debug", "run", "--in-process", "no_such_pkg.mod:X")
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr
    assert "minigun: error: no module named" in proc.stderr


def test_debug_reaches_the_runners_child() -> None:
    proc = run_cli("--debug", "run", "no_such_pkg.mod:X")
    assert proc.returncode == 2
    assert "Traceback" in proc.stderr


def test_no_command_prints_help_and_exits_2() -> None:
    result = invoke_cli()
    assert result.returncode == 2
    assert "Usage:" in result.stderr


def test_version() -> None:
    from minigun._version import __version__

    proc = invoke_cli("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"minigun {__version__}"
