"""Find the runnable Python snippets of the documentation.

A snippet is runnable when the line just before its fence is the marker
``<!-- runnable -->`` (an HTML comment: invisible on GitHub and in the built site)::

    <!-- runnable -->
    ```python
    import minigun as mg
    ...
    ```

Only such snippets are collected; every other fence is left alone (snippets that need
an orchestrator, a network service or data that is not there stay unmarked). A marker
not followed by a ``python`` fence is an error, so a marker cannot silently stop
marking anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MARKER = "<!-- runnable -->"
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<ticks>`{3,}|~{3,})\s*(?P<lang>[\w+-]*)")


@dataclass(frozen=True)
class Snippet:
    path: Path
    line: int  # 1-based line of the opening fence
    code: str

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


class MarkerError(ValueError):
    pass


def snippets_in(path: Path) -> list[Snippet]:
    """The runnable snippets of one Markdown file, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Snippet] = []
    for number, text in enumerate(lines):
        if text.strip() != MARKER:
            continue
        fence = _FENCE.match(lines[number + 1]) if number + 1 < len(lines) else None
        if fence is None or fence["lang"] not in ("python", "py"):
            raise MarkerError(f"{path}:{number + 1}: {MARKER} is not followed by a python fence")
        indent, ticks = fence["indent"], fence["ticks"]
        body: list[str] = []
        for inner in lines[number + 2 :]:
            if inner.strip().startswith(ticks) and inner.strip().strip(ticks[0]) == "":
                break
            body.append(inner[len(indent) :] if inner.startswith(indent) else inner)
        else:
            raise MarkerError(f"{path}:{number + 2}: the fence is never closed")
        found.append(Snippet(path, number + 2, "\n".join(body) + "\n"))
    return found


def documents() -> list[Path]:
    """README.md and every Markdown page of the site."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def all_snippets() -> list[Snippet]:
    return [snippet for path in documents() for snippet in snippets_in(path)]
