"""Text that is safe to echo on a terminal: one helper for every error presentation.

Anything a user or a file supplies -- a target path, a module or file name, a param
value, a click message quoting an argument -- may contain control characters. Echoed
raw into an error line, ESC (``\\x1b``) and the C1 CSI (``\\x9b``) start terminal
escape sequences (recolouring, cursor moves, retitling the window, on some terminals
worse), CR and BEL rewrite or hide what was printed, and NEL, U+2028/U+2029 or a bare
``\\n`` split the one line a log reader expects into several. Bidi overrides
(U+202E) make text read differently from what it is.

:func:`escape_controls` leaves printable text alone and replaces every character
that ``str.isprintable`` rejects (C0 and C1 controls, DEL, format characters such as
bidi overrides and zero-width joiners, line and paragraph separators, lone
surrogates from undecodable file names) with the escape Python's ``repr`` would use
(``\\x1b``, ``\\n``, ``\\u202e``, ``\\udcff``). It imports nothing, so the runner, the
child and the CLI can all use it.
"""

from __future__ import annotations

__all__ = ["escape_controls"]


def escape_controls(text: str) -> str:
    """``text`` with every non-printable character escaped as ``repr`` would."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)
