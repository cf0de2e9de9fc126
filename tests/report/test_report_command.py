"""``minigun report`` on result files of real runs: text, markdown, HTML, bad input.

The runs are real ``minigun run --result-file`` subprocesses (through the isolated
runner, so the files carry the runner's attempts and a timeline); the report itself
is run in this process (:func:`support.invoke_cli`), since it only reads a file.
"""

from __future__ import annotations

import json
import os
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from minigun.report.table import STAGE_COLUMNS
from pipelines.observed import Shop
from support import invoke_cli, run_cli

SHOP = "pipelines.observed:Shop"
# Read at import: the autouse fixture clears every MINIGUN_* variable before a test runs.
KEEP_SCREENSHOT_DIR = os.environ.get("MINIGUN_SCREENSHOT_DIR")
N = 3000


@pytest.fixture(scope="module")
def shop_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real isolated run of Shop with dead letters; its result file."""
    work = tmp_path_factory.mktemp("shop")
    result = work / "result.json"
    proc = run_cli("run", SHOP, "-p", f"n={N}", "--result-file", str(result), cwd=str(work))
    assert proc.returncode == 0, proc.stderr
    return result


@pytest.fixture(scope="module")
def retried_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run that fails once and succeeds on the runner's retry."""
    work = tmp_path_factory.mktemp("flaky")
    result = work / "result.json"
    proc = run_cli(
        "run",
        "pipelines.contract:FlakyOnce",
        "-p",
        f"marker={work / 'marker'}",
        "--retries",
        "1",
        "--retry-delay",
        "0",
        "--result-file",
        str(result),
        cwd=str(work),
    )
    assert proc.returncode == 0, proc.stderr
    return result


def report(*args: str) -> str:
    proc = invoke_cli("report", *args)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return proc.stdout


def test_the_result_file_carries_the_runner_and_a_timeline(shop_run: Path) -> None:
    data = json.loads(shop_run.read_text())
    assert data["runner"]["attempts"] == 1
    assert data["runner"]["history"][0]["exit_code"] == 0
    timeline = data["timeline"]
    assert len(timeline["t"]) >= 1
    assert set(timeline["stages"]) == {"orders", "price", "rows", "save"}
    assert timeline["queue_capacity"]["price"] == 64
    # the last sample is the end of the run
    assert timeline["total_produced"][-1] == N


def test_text_report_shows_every_section(shop_run: Path) -> None:
    out = report(str(shop_run))
    expected = Shop.expected(N)
    assert out.startswith("minigun report: Shop\n")
    assert re.search(r"status\s+succeeded \(exit 0: ok\)", out)
    assert f"produced {N:,}" in out
    header = next(line for line in out.splitlines() if "executor" in line)
    for column in STAGE_COLUMNS:
        assert column.label in header
    for stage in ("orders", "price", "rows", "save"):
        assert re.search(rf"│ {stage}\b", out), stage
    assert "◀" in out  # the bottleneck is marked
    dead = out[out.index("Dead letters by stage and error type") :]
    assert re.search(rf"│ price\s+│ ValueError\s+│\s+{expected['ValueError']} │", dead)
    assert re.search(rf"│ price\s+│ KeyError\s+│\s+{expected['KeyError']} │", dead)
    total = expected["ValueError"] + expected["KeyError"]
    assert f"Counted over all {total} records of " in dead  # read from the JSONL file
    attempts = out[out.index("Runner attempts") :]
    assert re.search(r"│\s+1 │\s+0 │ succeeded", attempts)


@pytest.mark.parametrize("width", [80, 100])
def test_a_narrow_report_leaves_columns_out_instead_of_squeezing_them(
    shop_run: Path, width: int
) -> None:
    out = report(str(shop_run), "--width", str(width))
    data = json.loads(shop_run.read_text())
    stages = out[out.index("Stages (◀ bottleneck)") : out.index("Bottleneck\n")]
    assert "…" not in stages  # no cell or header cut
    assert max(len(line) for line in stages.splitlines()) <= width
    header = next(line for line in stages.splitlines() if "processed" in line)
    for label in ("stage", "kind", "in", "out", "processed", "errors", "items/s"):
        assert re.search(rf"┃ +{re.escape(label)} +┃", header), label
    assert "p99" not in header  # the latency percentiles go first
    assert re.search(rf"Left out at width {width}: .*p99", stages, re.S)  # and said so
    for name, figures in data["stats"]["stages"].items():
        row = next(line for line in stages.splitlines() if re.match(rf"│ {name}\b", line))
        for key in ("items_in", "items_out", "processed", "errors"):
            assert f"{figures[key]:,}" in row, (name, key)


def test_runner_attempts_list_the_retried_failure(retried_run: Path) -> None:
    out = report(str(retried_run))
    attempts = out[out.index("Runner attempts") :]
    assert re.search(r"│\s+1 │\s+1 │ failed\s+│ failed", attempts)
    assert re.search(r"│\s+2 │\s+0 │ succeeded │ ok", attempts)


def test_markdown_is_tables_for_a_ticket(shop_run: Path) -> None:
    out = report(str(shop_run), "--format", "markdown")
    assert out.startswith("## minigun report: Shop\n")
    for heading in (
        "### Stages",
        "### Bottleneck",
        "### Dead letters by stage and error type",
        "### Runner attempts",
    ):
        assert f"\n{heading}\n" in out
    header = "| " + " | ".join(c.label for c in STAGE_COLUMNS) + " |"
    assert header in out
    lines = out.splitlines()
    align = lines[lines.index(header) + 1]
    assert align.count("|") == len(STAGE_COLUMNS) + 1 and align.startswith("|---|")
    rows = [line for line in lines if line.startswith("| price")]
    assert rows and rows[0].count("|") == len(STAGE_COLUMNS) + 1
    assert f"| price | ValueError | {Shop.expected(N)['ValueError']} |" in out


def test_a_result_from_elsewhere_says_what_it_lacks(shop_run: Path, tmp_path: Path) -> None:
    """An adapter's result JSON has no runner record and no timeline."""
    data = json.loads(shop_run.read_text())
    del data["runner"], data["timeline"]
    data["dead_letter_file"] = str(tmp_path / "gone.jsonl")  # not on this machine
    plain = tmp_path / "xcom.json"
    plain.write_text(json.dumps(data))
    out = report(str(plain))
    assert "Not recorded: the runner's attempts" in out
    assert "Counted over the " in out and "record(s) kept in the result" in out
    page = report(str(plain), "--format", "html")
    assert "No timeline in this result" in page


def test_a_torn_dead_letter_file_beside_the_result(shop_run: Path, tmp_path: Path) -> None:
    """A killed writer leaves a torn last record; a copied run keeps its relative path."""
    data = json.loads(shop_run.read_text())
    records = Path(data["dead_letter_file"]).read_text()
    (tmp_path / "dead.jsonl").write_text(records + '{"stage": "price", "error": "ValueE')
    data["dead_letter_file"] = "dead.jsonl"  # relative: found beside the result file
    path = tmp_path / "copied.json"
    path.write_text(json.dumps(data))
    out = report(str(path))
    expected = Shop.expected(N)
    assert f"Counted over all {expected['ValueError'] + expected['KeyError']} records" in out


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, Any]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def test_html_is_one_self_contained_page_with_charts(shop_run: Path, tmp_path: Path) -> None:
    page_path = tmp_path / "run.html"
    report(str(shop_run), "--format", "html", "--output", str(page_path))
    page = page_path.read_text()
    parser = _Tags()
    parser.feed(page)
    tags = parser.tags
    # nothing is fetched: no scripts, stylesheets, images, frames, fonts or URLs
    assert not [t for t, _ in tags if t in ("script", "link", "img", "iframe", "object")]
    assert not [a for _, a in tags if "src" in a or "href" in a]
    assert "url(" not in page and "@import" not in page
    assert re.findall(r"https?://[^\"' ]+", page) == ["http://www.w3.org/2000/svg"] * 4
    csp = [a for t, a in tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"]
    assert csp and "default-src 'none'" in csp[0]["content"]
    # the four charts, each a well-formed SVG with something drawn in it
    svgs = re.findall(r"<svg.*?</svg>", page, re.S)
    assert len(svgs) == 4
    for svg in svgs:
        root = ET.fromstring(svg)
        assert root.findall(".//{http://www.w3.org/2000/svg}polyline") or root.findall(
            ".//{http://www.w3.org/2000/svg}rect"
        )
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", page)
    assert captions[0].startswith("Stage throughput over the run")
    assert captions[1].startswith("Queue fill over the run")
    assert captions[2].startswith("Service time per item")
    assert len(page) < 100_000


def test_html_escapes_what_the_result_says(shop_run: Path, tmp_path: Path) -> None:
    data = json.loads(shop_run.read_text())
    data["pipeline"] = "evil:<script>alert(1)</script>"
    data["stats"]["stages"]["<img src=x>"] = data["stats"]["stages"].pop("save")
    path = tmp_path / "evil.json"
    path.write_text(json.dumps(data))
    page = report(str(path), "--format", "html")
    assert "<script>" not in page and "<img" not in page
    assert "&lt;img src=x&gt;" in page


def chromium() -> str | None:
    import shutil

    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.mark.skipif(
    chromium() is None,
    reason="headless Chromium is not installed (Debian package 'chromium'); the page's"
    " structure is still checked by test_html_is_one_self_contained_page_with_charts",
)
def test_html_renders_in_headless_chromium(shop_run: Path, tmp_path: Path) -> None:
    import shutil
    import subprocess

    page = tmp_path / "run.html"
    report(str(shop_run), "--format", "html", "--output", str(page))
    shot = tmp_path / "run.png"
    browser = chromium()
    assert browser is not None
    proc = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            # this machine's network is closed: no background fetches to wait on
            "--disable-quic",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1280,2400",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1280, 2400)
    assert len(data) > 20_000  # charts and tables, not a blank page
    if KEEP_SCREENSHOT_DIR:
        os.makedirs(KEEP_SCREENSHOT_DIR, exist_ok=True)
        shutil.copy(shot, os.path.join(KEEP_SCREENSHOT_DIR, "minigun-report.png"))
    print(f"screenshot: {shot}")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such result file"),
        ("{not json", "is not JSON"),
        ("[1, 2]", "is not a minigun result"),
        ('{"status": "ok"}', 'is not a minigun result (it has no "schema")'),
        ('{"schema": "minigun.result/9"}', "this minigun reads minigun.result/1"),
        ('{"schema": "minigun.result/1", "stats": 3}', '"stats" is not an object'),
    ],
    ids=["missing", "malformed", "not-an-object", "no-schema", "other-schema", "bad-stats"],
)
def test_bad_result_files_are_one_usage_line(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "result.json"
    if content is not None:
        path.write_text(content)
    proc = invoke_cli("report", str(path))
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("minigun: error: "), proc.stderr
    assert message in lines[0]
    assert proc.stdout == ""


def test_a_directory_is_not_a_result_file(tmp_path: Path) -> None:
    proc = invoke_cli("report", str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.startswith("minigun: error: ") and "is a directory" in proc.stderr


def test_unknown_format_is_a_usage_error(shop_run: Path) -> None:
    proc = invoke_cli("report", str(shop_run), "--format", "pdf")
    assert proc.returncode == 2 and proc.stderr.startswith("minigun: error: ")
