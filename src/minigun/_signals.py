"""Installing and restoring stop-signal handlers: one way, for the runner, the child and the CLI.

Every place that turns SIGTERM/SIGINT into "stop this run" has the same rules: handlers
can only be installed from the main thread (elsewhere, e.g. an orchestrator's worker
thread, the caller must use an event instead); a signal whose disposition is "ignore"
(``nohup``, a background job) stays ignored; a handler installed from C (``None``)
cannot be restored and is left alone; and the previous handlers come back afterwards.
It imports nothing from the engine.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

__all__ = ["STOP_SIGNALS", "install_stop_handlers", "restore_handlers"]

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

Handler = Callable[[int, FrameType | None], Any]


def install_stop_handlers(
    handler: Handler, signals: tuple[int, ...] = STOP_SIGNALS
) -> dict[int, Any]:
    """Point ``signals`` at ``handler``; return what to give :func:`restore_handlers`."""
    previous: dict[int, Any] = {}
    if threading.current_thread() is not threading.main_thread():
        return previous
    for sig in signals:
        current = signal.getsignal(sig)
        if current is None or current == signal.SIG_IGN:
            continue
        previous[sig] = current
        signal.signal(sig, handler)
    return previous


def restore_handlers(previous: dict[int, Any]) -> None:
    """Put back the handlers :func:`install_stop_handlers` replaced."""
    for sig, handler in previous.items():
        signal.signal(sig, handler)
