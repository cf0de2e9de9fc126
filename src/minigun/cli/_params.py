"""Pipeline constructor params from ``-p key=value`` and ``--params-json``.

``-p`` values are parsed as JSON when they parse (``-p n=3`` is an int, ``-p
on=true`` a bool, ``-p ids=[1,2]`` a list) and kept as strings otherwise (``-p
day=2026-11-28``); quote a JSON string to force a string (``-p n='"3"'``). ``-p``
wins over ``--params-json`` for the same key.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from minigun.cli._errors import BadInput

__all__ = ["instantiate", "parse_params"]


def parse_params(pairs: Iterable[str], params_json: str | None) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if params_json is not None:
        try:
            loaded = json.loads(params_json)
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
        try:
            params[key] = json.loads(raw)
        except ValueError:
            params[key] = raw
    return params


def instantiate(cls: type[Any], params: dict[str, Any]) -> Any:
    """``cls(**params)``, with a wrong parameter reported as a usage error.

    The signature is checked first so the message can name the class and the
    accepted parameters. A ``TypeError`` or ``ValueError`` raised by the constructor
    itself is treated the same way: that is how constructors reject bad values.
    """
    import inspect  # only the in-process side needs it; keep the runner's parent lean

    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):
        signature = None
    if signature is not None:
        try:
            signature.bind(**params)
        except TypeError as exc:
            accepted = ", ".join(
                p.name
                for p in signature.parameters.values()
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            )
            raise BadInput(
                f"bad params for {cls.__name__}: {exc} (accepted: {accepted or 'none'})"
            ) from None
    try:
        return cls(**params)
    except (TypeError, ValueError) as exc:
        raise BadInput(f"bad params for {cls.__name__}: {type(exc).__name__}: {exc}") from exc
