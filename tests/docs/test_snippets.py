"""Every snippet of README.md and docs/ marked ``<!-- runnable -->`` runs (issue 14).

Each runs as a script in a fresh interpreter (``python -c``), in a temporary working
directory (a snippet that writes a file or dead letters leaves nothing in the
repository), with a timeout; a non-zero exit fails the test with the snippet's
location and output. The number run is printed in the terminal summary:
``runnable snippets executed: N``. Run with ``tox -e docs``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .snippets import MARKER, all_snippets, documents, snippets_in

SNIPPETS = all_snippets()


def test_snippets_are_found() -> None:
    assert SNIPPETS, f"no snippet marked {MARKER} in {[str(p) for p in documents()]}"


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[s.id for s in SNIPPETS])
def test_snippet_runs(snippet, tmp_path: Path, executed_snippets: list[str]) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", snippet.code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, (
        f"{snippet.id} exited {proc.returncode}\n--- stdout\n{proc.stdout}"
        f"\n--- stderr\n{proc.stderr}"
    )
    executed_snippets.append(snippet.id)


def test_marker_parsing(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "text\n\n<!-- runnable -->\n```python\nprint(1)\n```\n\n```python\nnot_marked()\n```\n"
        "1. item\n\n    <!-- runnable -->\n    ```python\n    print(2)\n    ```\n"
    )
    found = snippets_in(page)
    assert [s.code for s in found] == ["print(1)\n", "print(2)\n"]
    assert [s.line for s in found] == [4, 14]
