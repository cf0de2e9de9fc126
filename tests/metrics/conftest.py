"""The metrics sinks need the ``metrics`` extra (in the ``test`` extra too)."""

from __future__ import annotations

import pytest

pytest.importorskip("prometheus_client")
pytest.importorskip("opentelemetry.sdk")
