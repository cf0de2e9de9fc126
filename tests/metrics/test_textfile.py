"""``--metrics-textfile``: Prometheus text during and at the end of real runs, parsed back
by prometheus_client's own parser."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from minigun.metrics._prometheus import LAST_SUCCESS, STAGE_METRICS
from minigun.report.table import STAGE_COLUMNS, stage_table
from support import full_env, minigun_cli, run_cli, wait_until

from .helpers import samples, value


def _live(path: Path) -> dict[Any, float] | None:
    """The textfile's samples once it shows the run going on with items produced."""
    if not path.exists():
        return None
    parsed = samples(path.read_text())  # written atomically: never half a file
    running = parsed.get(("minigun_run_running", (("pipeline", "Gated"),)))
    produced = parsed.get(("minigun_run_items_produced_total", (("pipeline", "Gated"),)))
    return parsed if running == 1 and produced and produced >= 25 else None


def test_written_during_the_run_and_at_its_end(tmp_path: Path) -> None:
    prom, gate, result = tmp_path / "job.prom", tmp_path / "gate", tmp_path / "result.json"
    proc = subprocess.Popen(
        minigun_cli(
            "run",
            "pipelines.observed:Gated",
            "-p",
            f"gate={gate}",
            "--metrics-textfile",
            str(prom),
            "--result-file",
            str(result),
        ),
        env=full_env(),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        live = wait_until(lambda: _live(prom), what="the textfile of a running run")
        # half the items are out, the producer waits at the gate
        assert value(live, "minigun_run_items_produced_total", pipeline="Gated") == 25
        assert ("minigun_run_exit_code", (("pipeline", "Gated"),)) not in live
        assert value(live, "minigun_stage_workers", pipeline="Gated", stage="double") == 2
        gate.touch()
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    final = samples(prom.read_text())
    data = json.loads(result.read_text())
    assert value(final, "minigun_run_running", pipeline="Gated") == 0
    assert value(final, "minigun_run_succeeded", pipeline="Gated") == 1
    assert value(final, "minigun_run_exit_code", pipeline="Gated") == 0
    assert value(final, "minigun_run_status", pipeline="Gated", status="succeeded") == 1
    assert value(final, "minigun_run_attempts", pipeline="Gated") == 1
    assert value(final, "minigun_run_items_produced_total", pipeline="Gated") == 50
    assert value(final, "minigun_run_items_consumed_total", pipeline="Gated") == 50
    assert value(final, LAST_SUCCESS, pipeline="Gated") >= value(
        final, "minigun_run_start_timestamp_seconds", pipeline="Gated"
    )
    assert_stage_figures_match(final, data, "Gated")
    assert not list(tmp_path.glob("job.prom.*")), "a temporary file was left behind"


def assert_stage_figures_match(
    parsed: dict[Any, float], result: dict[str, Any], label: str
) -> None:
    """Every numeric column of the stage table is a metric with the result's value."""
    rows = stage_table(result)
    assert rows
    for row in rows:
        stage = row["stage"]
        info = value(
            parsed,
            "minigun_stage_info",
            pipeline=label,
            stage=stage,
            kind=row["kind"],
            executor=row["executor"],
        )
        assert info == 1
        for column in STAGE_COLUMNS:
            if column.type == "str":
                continue
            name, counter = STAGE_METRICS[column.key]  # every figure is exported
            if row[column.key] is None:
                continue
            labels = {"pipeline": label, "stage": stage}
            if column.key.startswith("latency_p"):
                labels["quantile"] = "0." + column.key.removeprefix("latency_p")
            got = value(parsed, name + ("_total" if counter else ""), **labels)
            assert got == float(row[column.key]), (stage, column.key)


def test_the_in_process_path_writes_it_too(tmp_path: Path) -> None:
    prom, result = tmp_path / "shop.prom", tmp_path / "result.json"
    proc = run_cli(
        "run",
        "--in-process",
        "pipelines.observed:Shop",
        "-p",
        "n=400",
        "--metrics-textfile",
        str(prom),
        "--result-file",
        str(result),
        cwd=str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    final = samples(prom.read_text())
    data = json.loads(result.read_text())
    assert value(final, "minigun_run_succeeded", pipeline="Shop") == 1
    assert value(final, "minigun_run_dead_letters", pipeline="Shop") == data["dead_letter_count"]
    assert ("minigun_run_attempts", (("pipeline", "Shop"),)) not in final  # no runner here
    assert_stage_figures_match(final, data, "Shop")


def test_a_failed_run_keeps_the_last_success(tmp_path: Path) -> None:
    prom = tmp_path / "shop.prom"
    shop = ("run", "pipelines.observed:Shop", "--metrics-textfile", str(prom))
    ok = run_cli(*shop, cwd=str(tmp_path))
    assert ok.returncode == 0, ok.stderr
    first = samples(prom.read_text())
    succeeded_at = value(first, LAST_SUCCESS, pipeline="Shop")
    bad = run_cli(*shop, "-p", "fail=true", cwd=str(tmp_path))
    assert bad.returncode == 1
    second = samples(prom.read_text())
    assert value(second, "minigun_run_succeeded", pipeline="Shop") == 0
    assert value(second, "minigun_run_exit_code", pipeline="Shop") == 1
    assert value(second, "minigun_run_status", pipeline="Shop", status="failed") == 1
    assert value(second, LAST_SUCCESS, pipeline="Shop") == succeeded_at
    assert value(second, "minigun_run_end_timestamp_seconds", pipeline="Shop") > succeeded_at


def test_a_textfile_that_cannot_be_written_is_one_warning(tmp_path: Path) -> None:
    from minigun.metrics.textfile import TextfileSink

    directory = tmp_path / "textfiles"
    directory.mkdir()
    warnings: list[str] = []
    sink = TextfileSink(str(directory / "x.prom"), fallback_label="X", warn=warnings.append)
    directory.rmdir()  # e.g. a volume unmounted under a running job
    snapshot = {"duration": 1.0, "total_produced": 1, "stages": {}}
    sink.update(snapshot)
    sink.update(snapshot)  # not retried during the run, so one warning
    sink.finish({"pipeline": "m:X", "exit_code": 0, "stats": snapshot})
    assert len(warnings) == 2 and all("cannot write --metrics-textfile" in w for w in warnings)
    assert sink.writes == 0
