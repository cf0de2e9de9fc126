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
