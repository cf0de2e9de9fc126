"""Every way a caller can ask the runner to stop, folded into one object.

A run is cancelled by ``cancel_event.set()`` (an adapter's ``on_kill``) or by SIGTERM
or SIGINT delivered to the process that called the runner (the orchestrator killing
its task process, Ctrl-C). Both lead to the same tear-down; they differ only in the
exit code recorded (143, or 130 after SIGINT) and in the signal forwarded to the
child's process group, so the pipeline records the same reason.

Signal handlers can only be installed from the main thread; elsewhere (an
orchestrator worker thread) the event is the only way in. Handlers are installed
for the duration of the run and the previous ones restored afterwards. A signal
whose disposition is "ignore" (``nohup``, a background job) stays ignored. A signal
that arrives too late to cut the run short is re-raised once the caller's handlers are
back, so it is never swallowed.
"""

from __future__ import annotations

import signal
import threading
import time
from types import FrameType, TracebackType
from typing import Any

from minigun._signals import install_stop_handlers, restore_handlers
from minigun.exit_codes import ExitCode

__all__ = ["Cancellation"]

#: How often a waiting runner looks at ``cancel_event`` (it cannot be selected on).
POLL_INTERVAL = 0.05


class Cancellation:
    """Tracks whether, why and how urgently the current run should end."""

    def __init__(self, event: threading.Event | None = None) -> None:
        self._event = event
        self.signum: int | None = None
        self.signals = 0
        self.consumed = False
        self._previous: dict[int, Any] = {}

    # -- state ---------------------------------------------------------------------

    @property
    def requested(self) -> bool:
        """True once the event is set or a signal arrived."""
        return self.signum is not None or (self._event is not None and self._event.is_set())

    @property
    def urgent(self) -> bool:
        """A second signal: skip the grace period and kill now."""
        return self.signals >= 2

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.INTERRUPTED if self.signum == signal.SIGINT else ExitCode.TERMINATED

    @property
    def forward_signal(self) -> int:
        """The signal to send the child's group: SIGINT after Ctrl-C, else SIGTERM."""
        return signal.SIGINT if self.signum == signal.SIGINT else signal.SIGTERM

    def consume(self) -> None:
        """Mark the cancellation as acted upon (the run was cut short because of it)."""
        self.consumed = True

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; return True early if cancellation is requested."""
        deadline = time.monotonic() + seconds
        while not self.requested:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if self._event is not None:
                self._event.wait(min(POLL_INTERVAL, remaining))
            else:
                time.sleep(min(POLL_INTERVAL, remaining))
        return True

    # -- signal handlers -----------------------------------------------------------

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
        self.signals += 1

    def __enter__(self) -> Cancellation:
        self._previous = install_stop_handlers(self._handle)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        restore_handlers(self._previous)
        installed, self._previous = self._previous, {}
        # A signal that arrived after the last attempt had already ended changed
        # nothing here; it was meant for the caller, so hand it on now that the
        # caller's own handler is back (a worker loop must still see its SIGTERM).
        if self.signum is not None and not self.consumed and self.signum in installed:
            signal.raise_signal(self.signum)
