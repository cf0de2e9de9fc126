"""Provider metadata for Airflow's ``apache_airflow_provider`` entry point.

Kept apart from :mod:`minigun.adapters.airflow` so that Airflow's provider discovery
(which runs in every Airflow process) does not import the operator module.
"""

from __future__ import annotations

from typing import Any

from minigun._version import __version__


def get_provider_info() -> dict[str, Any]:
    """Describe minigun to ``airflow providers list``.

    ``package-name`` must equal the distribution name: Airflow refuses a provider
    whose metadata and packaging disagree.
    """
    return {
        "package-name": "minigun-pipelines",
        "name": "minigun",
        "description": (
            "Run minigun pipelines as isolated Airflow tasks "
            "(`minigun.adapters.airflow.MinigunOperator`)."
        ),
        "versions": [__version__],
        "task-decorators": [
            {"name": "minigun", "class-name": "minigun.adapters.airflow.minigun_task"}
        ],
    }
