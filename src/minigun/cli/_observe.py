"""What ``minigun run`` does with a run besides showing it: the timeline and the metrics.

The CLI parent (not the run's child, which stays lean) receives the run's live
snapshots -- from the child's progress records on the isolated path, from the engine on
``--in-process`` -- and its result. A :class:`RunObserver` feeds both to

- a :class:`~minigun.report.timeline.Timeline`, stored with the runner's record of the
  attempts in ``--result-file`` (``"timeline"``, ``"runner"``) for ``minigun report``;
- the metrics sinks the flags ask for (``--metrics-textfile``, ``--pushgateway``,
  ``--statsd``, ``--otel``), whose modules are imported only then, so a plain
  ``minigun run`` pays nothing for them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from minigun._text import escape_controls
from minigun.cli._errors import BadInput
from minigun.cli._output import say

if TYPE_CHECKING:
    from minigun.metrics import MetricsSink
    from minigun.report.timeline import Timeline

__all__ = ["RunObserver", "make_observer"]


def make_observer(
    target: str,
    *,
    result_file: str | None,
    textfile: str | None,
    pushgateway: str | None,
    statsd: str | None,
    otel: bool,
) -> RunObserver | None:
    """The observer the options ask for, or None when they ask for nothing.

    A bad metrics setting (an address, a missing package) is a usage error here,
    before the run starts.
    """
    if not (result_file or textfile or pushgateway or statsd or otel):
        return None
    fallback = _label_of(target)
    sinks: list[MetricsSink] = []
    try:
        if textfile:
            from minigun.metrics.textfile import TextfileSink

            sinks.append(TextfileSink(textfile, fallback_label=fallback, warn=_warn))
        if pushgateway:
            from minigun.metrics.pushgateway import PushgatewaySink

            sinks.append(PushgatewaySink(pushgateway, fallback_label=fallback, warn=_warn))
        if statsd:
            from minigun.metrics.statsd import StatsdSink

            sinks.append(StatsdSink(statsd, fallback_label=fallback, warn=_warn))
        if otel:
            from minigun.metrics.otel import OtelSink

            sinks.append(OtelSink(fallback_label=fallback, warn=_warn))
    except ValueError as exc:  # MetricsConfigError
        raise BadInput(str(exc)) from None
    # The timeline is for the result file and for placing the OTel stage spans.
    timeline = None
    if result_file or otel:
        from minigun.report.timeline import Timeline

        timeline = Timeline()
    return RunObserver(sinks, timeline)


def _label_of(target: str) -> str:
    """A name for the pipeline until the run names it: the class of ``pkg.mod:Class``
    or ``file.py:Class``, else the file's or module's last part."""
    _, sep, tail = target.rpartition(":")
    if sep and tail.isidentifier():
        return tail
    base = target.replace("\\", "/").rsplit("/", 1)[-1]
    return base.removesuffix(".py").rpartition(".")[2] or base or "pipeline"


def _warn(message: str) -> None:
    say(f"warning: {escape_controls(message)}")


class RunObserver:
    """Feeds live snapshots and the final result to the timeline and the sinks.

    Never raises into the run: a sink that breaks is reported once and dropped.
    """

    def __init__(self, sinks: list[MetricsSink], timeline: Timeline | None) -> None:
        self.sinks = sinks
        self.timeline = timeline

    def update(self, snapshot: Mapping[str, Any]) -> None:
        if self.timeline is not None:
            self.timeline.add(snapshot)
        for sink in list(self.sinks):
            try:
                sink.update(snapshot)
            except Exception as exc:
                self._drop(sink, exc)

    def complete(
        self, result: Mapping[str, Any] | None, runner: Mapping[str, Any] | None = None
    ) -> dict[str, Any] | None:
        """The result to record: the child's, plus ``runner`` and ``timeline``."""
        if result is None:
            return None
        data = dict(result)
        if runner is not None:
            data["runner"] = dict(runner)
        if self.timeline is not None:
            timeline = self.timeline.to_dict()
            if timeline is not None:
                data["timeline"] = timeline
        return data

    def finish(self, result: Mapping[str, Any] | None, fallback: Mapping[str, Any]) -> None:
        """Hand the sinks the result; ``fallback`` (status, exit code, runner) when the
        run left none (killed, refused its target), so the end is still reported."""
        data = result if result is not None else fallback
        for sink in list(self.sinks):
            try:
                sink.finish(data)
            except Exception as exc:
                self._drop(sink, exc)

    def tee(self, reporter: Any, label: str) -> Any:
        """An in-process run's reporter that also feeds this observer; its snapshots
        are named ``label`` (the class name), as the runner's child names them."""
        return _Tee(reporter, self, label)

    def _drop(self, sink: MetricsSink, exc: Exception) -> None:
        self.sinks.remove(sink)
        _warn(f"{type(sink).__name__} stopped: {type(exc).__name__}: {exc}")


class _Tee:
    """The drive loop's reporter: the terminal's (bar, HUD or nothing) and the observer.

    Always active (the driver takes snapshots only for an active reporter); the
    terminal's reporter is fed only when it is active itself.
    """

    active = True

    def __init__(self, reporter: Any, observer: RunObserver, label: str) -> None:
        self.reporter = reporter
        self.observer = observer
        self.label = label

    def update(self, snapshot: dict[str, Any]) -> None:
        snapshot["pipeline"] = self.label  # a fresh dict from handle.snapshot()
        self.observer.update(snapshot)
        if self.reporter.active:
            self.reporter.update(snapshot)

    def final(self, snapshot: dict[str, Any]) -> None:
        snapshot["pipeline"] = self.label
        self.observer.update(snapshot)
        final = getattr(self.reporter, "final", None)
        if self.reporter.active and final is not None:
            final(snapshot)

    def close(self) -> None:
        self.reporter.close()
