"""``--metrics-textfile PATH``: Prometheus text format for node_exporter's textfile collector.

node_exporter (``--collector.textfile.directory``) reads every ``*.prom`` file of a
directory at each scrape, which suits a batch job: no port to open, nothing to keep
running after the job. The file is rewritten during the run (at most once a
``interval``, 1 s by default: scrapes are 15 s or more apart, and each write costs a
file and a rename) and once more at the end, each time atomically
(``prometheus_client.write_to_textfile``: a temporary file beside it, then a rename),
so the collector never reads half a file.

One file holds one pipeline's figures: point each job at its own file. A failed run
keeps the previous ``minigun_run_last_success_timestamp_seconds`` (read back from the
file), so an alert on "no success for a day" sees failures as they are.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

from minigun.metrics import MetricsConfigError, Warn, pipeline_label, require

__all__ = ["TextfileSink", "check_path"]


def check_path(path: str) -> str:
    """``path`` if node_exporter can read it and we can write beside it, else raise."""
    if not path.endswith(".prom"):
        raise MetricsConfigError(
            f"--metrics-textfile {path!r} must end in .prom"
            " (node_exporter's textfile collector reads only *.prom files)"
        )
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise MetricsConfigError(f"--metrics-textfile: no such directory {directory!r}")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise MetricsConfigError(f"--metrics-textfile: cannot write in {directory!r}")
    if os.path.isdir(path):
        raise MetricsConfigError(f"--metrics-textfile {path!r} is a directory")
    return path


class TextfileSink:
    """Writes the run's metrics to ``path`` during the run and at its end."""

    def __init__(
        self,
        path: str,
        *,
        fallback_label: str,
        warn: Warn,
        interval: float = 1.0,
    ) -> None:
        require("prometheus_client", "--metrics-textfile", "prometheus_client")
        self.path = check_path(path)
        self.fallback_label = fallback_label
        self.warn = warn
        self.interval = interval
        self._next_write = 0.0
        self._label: str | None = None
        self._last_success: float | None = None
        self._read_previous = False
        self._failed = False
        #: How many times the file was written (the tests and the overhead check read it).
        self.writes = 0

    def update(self, snapshot: Mapping[str, Any]) -> None:
        now = time.monotonic()
        if now < self._next_write or self._failed:
            return
        self._next_write = now + self.interval
        self._write(snapshot, final=False)

    def finish(self, result: Mapping[str, Any]) -> None:
        self._failed = False  # the end matters most: try again even after a failure
        self._write(result, final=True)

    def _write(self, data: Mapping[str, Any], *, final: bool) -> None:
        from prometheus_client import write_to_textfile

        from minigun.metrics._prometheus import RunFamilies

        label = pipeline_label(data, self._label or self.fallback_label)
        self._label = label
        if not self._read_previous:
            self._read_previous = True
            self._last_success = previous_last_success(self.path, label)
        families = RunFamilies(data, pipeline=label, final=final, last_success=self._last_success)
        try:
            write_to_textfile(self.path, families)
        except OSError as exc:
            self._failed = True
            self.warn(f"cannot write --metrics-textfile {self.path}: {exc.strerror or exc}")
            return
        self.writes += 1


def previous_last_success(path: str, pipeline: str) -> float | None:
    """``minigun_run_last_success_timestamp_seconds`` for ``pipeline`` in an earlier file."""
    from minigun.metrics._prometheus import LAST_SUCCESS

    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError):
        return None
    from prometheus_client.parser import text_string_to_metric_families

    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == LAST_SUCCESS and sample.labels.get("pipeline") == pipeline:
                    return float(sample.value)
    except ValueError:  # not a metrics file (any more): nothing to carry over
        return None
    return None
