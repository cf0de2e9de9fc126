"""Pipeline constructor params from ``-p key=value`` and ``--params-json``.

``-p`` values are kept as the strings the user typed: only the child that runs the
pipeline knows its class, and :func:`minigun.params.coerce_params` converts each
value there by the type hints of the pipeline's ``__init__`` (``-p day=2026`` stays
``"2026"`` for ``day: str``, becomes ``2026`` for ``day: int``; an unannotated param
keeps the old rule, JSON if it parses, else the string). ``--params-json`` values keep
their JSON types (and are checked against the same hints). ``-p`` wins over
``--params-json`` for the same key.

:func:`instantiate` is :func:`minigun.params.instantiate`; its
:class:`~minigun.params.ParamError` carries ``exit_code == USAGE``, which is how
``main`` turns it into one ``minigun: error:`` line and exit 2.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from minigun.cli._errors import BadInput
from minigun.params import instantiate

__all__ = ["instantiate", "parse_params"]


def parse_params(pairs: Iterable[str], params_json: str | None) -> dict[str, Any]:
    """``--params-json`` (a JSON object) updated by each ``-p key=value`` (raw strings)."""
    params: dict[str, Any] = {}
    if params_json is not None:
        try:
            loaded = json.loads(params_json)
        except RecursionError:
            raise BadInput("--params-json is nested too deeply to read") from None
        except ValueError as exc:
            raise BadInput(f"--params-json is not valid JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise BadInput(f"--params-json must be a JSON object, got {type(loaded).__name__}")
        params.update(loaded)
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise BadInput(f"bad -p {pair!r}: expected key=value")
        if not key.isidentifier():
            raise BadInput(f"bad -p {pair!r}: {key!r} is not a valid parameter name")
        params[key] = raw
    return params
