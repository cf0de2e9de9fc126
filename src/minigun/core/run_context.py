"""What a stage, a producer or an executor may ask of the run it belongs to.

:class:`~minigun.core.engine.Run` holds the whole state of a run: inboxes, counters,
the dead-letter writer, the stop machinery. Stages and executors need a small part of
it, and only through the calls below: hand outputs on, report failures, skips and dead
letters, know whether the run is stopping, call hooks. Typing them against this
protocol instead of ``Run`` keeps that surface visible and small, so a new executor
(or a worker-side stand-in for a run, where user code executes away from the engine)
knows exactly what it must provide.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from minigun.core.errors import Skip
    from minigun.core.executors.async_ import EventLoop
    from minigun.core.producer import ProducerRuntime
    from minigun.core.stage import StageRuntime

__all__ = ["RunContext"]


class RunContext(Protocol):
    """The run as stages, producers and executors see it (implemented by ``Run``)."""

    #: Whether per-stage timings and latencies are recorded (``stats=False`` turns off).
    timing: bool
    #: The run is stopping: producers stop, items going back up a cycle are discarded.
    stopping: bool
    #: The run is ending now: no more retries.
    stopping_now: bool

    def deliver(
        self, source: StageRuntime, outs: list[Any], routed: list[tuple[str, Any]], consumed: int
    ) -> None:
        """Hand a finished batch's outputs on, then retire its ``consumed`` input items."""

    def deliver_produced(
        self,
        producer: ProducerRuntime,
        outs: list[Any],
        routed: list[tuple[str, Any]],
        block: bool = True,
    ) -> bool:
        """Hand a producer's items on; False when the run no longer accepts them."""

    def fail(self, exc: BaseException, stage: str | None, tb: str | None = None) -> None:
        """End the run as failed because ``stage`` raised ``exc``."""

    def skip(self, exc: Skip, stage: str | None) -> None:
        """End the run as skipped (``mg.Skip`` raised in ``stage``)."""

    def dead_letter(
        self, stage: str, item: Any, exc: BaseException, tb: str, attempts: int
    ) -> None:
        """Record ``item`` as a dead letter of ``stage`` after ``attempts`` attempts."""

    def producer_error(self, producer: ProducerRuntime, exc: BaseException) -> None:
        """A producer raised: the run fails (or skips, for ``mg.Skip``)."""

    def producer_done(self, producer: ProducerRuntime) -> None:
        """A producer is exhausted."""

    def call_hooks(self, name: str, *args: Any) -> None:
        """Call the pipeline's ``name`` hooks (``before_fork``, ``after_fork``, ...)."""

    def event_loop(self) -> EventLoop:
        """The run's event loop (async stages, async producers and async hooks share it)."""
