"""What this platform can do (``mg.platform.fork_supported()``)."""

from __future__ import annotations

import os
import sys

__all__ = ["fork_supported"]


def fork_supported() -> bool:
    """True where ``os.fork`` exists and is usable (POSIX; not Windows, not WASM)."""
    return hasattr(os, "fork") and sys.platform != "win32" and sys.platform != "emscripten"
