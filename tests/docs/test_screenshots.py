"""``docs/screenshots.py`` builds the site, serves it on 127.0.0.1 and screenshots the
home page, the CLI reference and the deployment page with headless Chromium: three PNGs,
not empty.

``MINIGUN_DOCS_SCREENSHOT_DIR`` keeps them (default: a temporary directory).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
SCRIPT = Path(__file__).resolve().parents[2] / "docs" / "screenshots.py"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Read at import: the session's autouse fixture removes every MINIGUN_* variable
# before a test runs (tests/conftest.py).
KEEP_DIR = os.environ.get("MINIGUN_DOCS_SCREENSHOT_DIR")


@pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK),
    reason=f"{CHROMIUM} is not installed (Debian's chromium package): no screenshots",
)
def test_screenshots(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("docs_screenshots", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    out = Path(KEEP_DIR) if KEEP_DIR else tmp_path / "shots"
    written = module.take(out, chromium=CHROMIUM)

    assert sorted(p.name for p in written) == ["cli-reference.png", "deployment.png", "home.png"]
    for png in written:
        data = png.read_bytes()
        assert data.startswith(PNG_SIGNATURE), f"{png} is not a PNG"
        assert len(data) > 10_000, f"{png} is only {len(data)} bytes: a blank page?"
        print(f"screenshot: {png}")
