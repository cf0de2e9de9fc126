"""Progress reporters: bar and HUD on a terminal, periodic lines or tables otherwise."""

from __future__ import annotations

import io

from minigun.cli._progress import make_reporter

SNAPSHOT = {
    "total_produced": 1200,
    "total_consumed": 1100,
    "duration": 2.0,
    "throughput": 550.0,
    "bottleneck": "enrich",
    "stages": {
        "fetch": {"items_in": 0, "items_out": 1200, "queued": 0, "throughput": 600.0},
        "enrich": {
            "items_in": 1200,
            "items_out": 1100,
            "queued": 100,
            "errors": 2,
            "throughput": 550.0,
            "latency_p50": 0.004,
            "latency_p99": 0.02,
            "utilisation": 0.97,
        },
    },
}


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_a_terminal_progress_is_a_periodic_line() -> None:
    stream = io.StringIO()
    reporter = make_reporter("Nightly", progress=None, hud=False, stream=stream, interval=0)
    reporter.update(SNAPSHOT)
    reporter.update(SNAPSHOT)
    reporter.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert "produced 1,200, consumed 1,100, 550.0 items/s, bottleneck enrich" in lines[0]


def test_lines_are_rate_limited() -> None:
    stream = io.StringIO()
    reporter = make_reporter("Nightly", progress=True, hud=False, stream=stream, interval=60)
    for _ in range(10):
        reporter.update(SNAPSHOT)
    assert stream.getvalue() == ""


def test_no_progress_is_silent() -> None:
    stream = FakeTerminal()
    reporter = make_reporter("Nightly", progress=False, hud=False, stream=stream)
    reporter.update(SNAPSHOT)
    reporter.close()
    assert stream.getvalue() == ""


def test_terminal_gets_a_live_bar() -> None:
    stream = FakeTerminal()
    reporter = make_reporter("Nightly", progress=None, hud=False, stream=stream)
    reporter.update(SNAPSHOT)
    reporter.close()
    assert "Nightly" in stream.getvalue()
    assert "consumed 1,100" in stream.getvalue()


def test_hud_off_a_terminal_prints_the_stage_table() -> None:
    stream = io.StringIO()
    reporter = make_reporter("Nightly", progress=None, hud=True, stream=stream, interval=0)
    reporter.update(SNAPSHOT)
    out = stream.getvalue()
    assert "enrich ◀ bottleneck" in out
    assert "4.0ms" in out and "97%" in out


def test_hud_on_a_terminal_is_live() -> None:
    stream = FakeTerminal()
    reporter = make_reporter("Nightly", progress=None, hud=True, stream=stream)
    reporter.update(SNAPSHOT)
    reporter.close()
    assert "bottleneck" in stream.getvalue()


def _run_on_a_terminal(*args: str) -> tuple[int, str]:
    """Run ``minigun`` with stdout and stderr on a pseudo-terminal; return code and text."""
    import os
    import pty
    import subprocess
    import sys

    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "minigun", *args],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        env={**os.environ, "COLUMNS": "160"},
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(timeout=60), b"".join(chunks).decode(errors="replace")


def test_isolated_run_on_a_terminal_draws_the_childs_live_progress() -> None:
    from pathlib import Path

    etl = Path(__file__).resolve().parents[2] / "examples" / "etl.py"
    code, text = _run_on_a_terminal("run", str(etl), "-p", "rows=3000", "-p", "db=:memory:")
    assert code == 0
    # The bar is drawn by the parent from the child's snapshots: only it says "items/s".
    assert "items/s" in text and "produced 3,000" in text


def test_isolated_hud_on_a_terminal_shows_every_stage() -> None:
    from pathlib import Path

    etl = Path(__file__).resolve().parents[2] / "examples" / "etl.py"
    code, text = _run_on_a_terminal(
        "run", str(etl), "-p", "rows=3000", "-p", "db=:memory:", "--hud"
    )
    assert code == 0
    for stage in ("extract", "transform", "batch", "load", "bottleneck"):
        assert stage in text


def test_on_a_terminal_the_bar_gives_way_to_the_stage_table() -> None:
    stream = FakeTerminal()
    reporter = make_reporter("Nightly", progress=None, hud=False, stream=stream)
    reporter.update(SNAPSHOT)
    final = getattr(reporter, "final")  # noqa: B009 - only terminal reporters have one
    final(SNAPSHOT)
    reporter.close()
    text = stream.getvalue()
    table = text[text.rindex("Nightly —") :]  # the table printed after the bar stopped
    assert "enrich ◀" in table
    assert "1,200" in table and "1,100" in table and "97%" in table
