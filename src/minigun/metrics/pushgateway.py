"""``--pushgateway URL``: the run's metrics pushed to a Prometheus Pushgateway at its end.

A batch job ends before Prometheus could scrape it; the Pushgateway keeps what the job
pushed for Prometheus to scrape later. That is what it is for, so this sink pushes
once, at the end (the same families as the textfile, :mod:`minigun.metrics._prometheus`),
under the grouping key ``job="minigun"``, ``pipeline="<Class>"``.

It pushes with POST (``pushadd_to_gateway``), which replaces the families it sends and
keeps the others of the group: ``minigun_run_last_success_timestamp_seconds`` is sent
only by a successful run, so after a failure the Pushgateway still says when the
pipeline last succeeded (the pattern Prometheus documents for batch jobs).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from minigun.metrics import MetricsConfigError, Warn, pipeline_label, require

__all__ = ["JOB", "PushgatewaySink", "check_url"]

#: The ``job`` of the grouping key; the pipeline's class name is the ``pipeline`` key.
JOB = "minigun"

#: Seconds to wait for the Pushgateway before giving up (and saying so).
TIMEOUT = 10.0


def check_url(url: str) -> str:
    """The Pushgateway URL with a scheme (``http://`` when none is given), or raise."""
    text = url.strip()
    if not text:
        raise MetricsConfigError("--pushgateway needs a URL, e.g. http://pushgateway:9091")
    if "://" not in text:
        text = f"http://{text}"
    try:
        parts = urlsplit(text)
        port = parts.port  # raises ValueError when out of range or not a number
    except ValueError as exc:
        raise MetricsConfigError(f"--pushgateway {url!r} is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise MetricsConfigError(f"--pushgateway {url!r}: the scheme must be http or https")
    if not parts.hostname:
        raise MetricsConfigError(f"--pushgateway {url!r} has no host")
    if parts.username is not None or parts.password is not None:
        raise MetricsConfigError(f"--pushgateway {url!r}: credentials in the URL are not supported")
    if parts.query or parts.fragment:
        raise MetricsConfigError(f"--pushgateway {url!r}: a query or fragment is not expected")
    del port
    return text


class PushgatewaySink:
    """Pushes the final figures; ignores live snapshots (a push per snapshot would
    make the Pushgateway the run's live view, which it is not meant to be)."""

    def __init__(
        self, url: str, *, fallback_label: str, warn: Warn, timeout: float = TIMEOUT
    ) -> None:
        require("prometheus_client", "--pushgateway", "prometheus_client")
        self.url = check_url(url)
        self.fallback_label = fallback_label
        self.warn = warn
        self.timeout = timeout
        self._label: str | None = None
        #: True once the Pushgateway accepted the push.
        self.pushed = False

    def update(self, snapshot: Mapping[str, Any]) -> None:
        if self._label is None and snapshot.get("pipeline"):
            self._label = pipeline_label(snapshot, self.fallback_label)

    def finish(self, result: Mapping[str, Any]) -> None:
        from prometheus_client import pushadd_to_gateway

        from minigun.metrics._prometheus import RunFamilies

        label = pipeline_label(result, self._label or self.fallback_label)
        try:
            pushadd_to_gateway(
                self.url,
                job=JOB,
                registry=RunFamilies(result, pipeline=label, final=True),
                grouping_key={"pipeline": label},
                timeout=self.timeout,
            )
        except Exception as exc:  # URLError, HTTPError, timeouts: say it, keep the exit code
            self.warn(f"cannot push metrics to {self.url}: {_reason(exc)}")
            return
        self.pushed = True


def _reason(exc: Exception) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason if reason is not None else exc)
