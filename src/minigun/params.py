"""Pipeline constructor params, converted by the type hints of the pipeline's ``__init__``.

Params reach a pipeline as text (``minigun run -p key=value``) or as JSON values
(``--params-json``, an adapter's ``pipeline_params``, a ``RunSpec``). Only the child
that runs the pipeline knows its class, so the conversion happens here, just before
the constructor is called, not where the params were parsed. The rule, per
parameter, by its annotation:

==========================  =============================================================
annotation                  a string value (``-p``)            /  a JSON value
==========================  =============================================================
``str``                     kept verbatim (``-p day=2026`` is  /  must be a string
                            ``"2026"``)
``int``                     base-10 integer text               /  an int (never a bool)
``float``                   ``float()`` text                   /  an int or a float
``bool``                    true/false, 1/0, yes/no, on/off    /  a bool
                            (any case)
``date``, ``datetime``      ISO 8601 (a trailing ``Z`` is UTC)
``Path`` (any PurePath)     the path text (not empty)
an ``Enum``                 a member's name, else its value    /  a member's value
``Literal[...]``            one of the listed values, by text  /  one of them exactly
``X | None``, ``Optional``  ``none``/``null`` (any case) give None, else as ``X``
other unions                the first member type that accepts the value
``list``/``tuple``/``set``  JSON text of an array (``dict``: of an object); the elements
/``dict`` (bare or          are checked against simple element types: JSON numbers and
parameterised)              bools must already be the right type, strings are parsed
                            only for types JSON has no literal for (date, datetime,
                            Path, Enum); dict keys, always strings in JSON, are parsed
                            as text
no annotation, ``Any``,     the legacy rule: JSON if it parses, else the string
``object``
anything else               passed through unchanged (the constructor decides)
==========================  =============================================================

A value of the wrong JSON type is a :class:`ParamError`; so is a missing or unknown
param (the message lists the accepted names), and a ``TypeError``/``ValueError`` that
the constructor itself raises, because that is how constructors reject values.
``ParamError`` carries the contract's ``USAGE`` exit code: the CLI prints it as one
line and exits 2, and the runner never retries it.

String annotations (``from __future__ import annotations``) are resolved with
``typing.get_type_hints``; when that fails (a name only imported under
``TYPE_CHECKING``), each annotation is resolved on its own and one that cannot be
is treated as absent.

This module imports neither click nor rich: it runs in the runner's lean child.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from minigun.exit_codes import ExitCode

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = ["ParamError", "coerce_params", "instantiate"]

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})
_NONE = frozenset({"none", "null"})
_TOO_DEEP = "is JSON nested too deeply to read"


class ParamError(ValueError):
    """A constructor param is missing, unknown, or of the wrong type (a usage error, exit 2)."""

    exit_code = ExitCode.USAGE


class _Mismatch(Exception):
    """Internal: the value does not fit the annotation.

    ``expected`` says what would fit ("an int"); ``reason`` is the predicate of the
    user's message ("is not an int").
    """

    def __init__(self, expected: str, reason: str | None = None) -> None:
        super().__init__(expected)
        self.expected = expected
        self.reason = reason if reason is not None else f"is not {expected}"


_MISSING: Any = object()


def show(value: Any, limit: int = 60) -> str:
    """A short, one-line, control-character-free ``repr`` of a param value.

    ``reprlib`` keeps a value nested thousands deep from raising ``RecursionError``.
    """
    import reprlib

    shower = reprlib.Repr()
    shower.maxstring = limit
    shower.maxother = limit
    shower.maxlevel = 3
    return shower.repr(value)


def coerce_params(cls: type[Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` converted by the annotations of ``cls.__init__`` (see the module doc).

    Raises :class:`ParamError` naming the class, the param, the value and the type
    expected, or, for a missing or unknown param, the names the class accepts.
    """
    if not params and cls.__init__ is object.__init__ and cls.__new__ is object.__new__:
        # Nothing to convert or check; inspect would parse object's text signature.
        return {}
    import inspect

    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):
        return dict(params)
    _check_names(cls, signature, params)
    hints = _type_hints(cls, signature)
    var_keyword = next(
        (p.name for p in signature.parameters.values() if p.kind is p.VAR_KEYWORD), None
    )
    converted: dict[str, Any] = {}
    for key, value in params.items():
        name = key if key in signature.parameters else var_keyword
        annotation = hints.get(name, _MISSING) if name is not None else _MISSING
        try:
            converted[key] = _convert(value, annotation, text=isinstance(value, str))
        except _Mismatch as exc:
            raise ParamError(
                f"bad params for {cls.__name__}: {key}={show(value)} {exc.reason}"
            ) from None
    return converted


def instantiate(cls: type[Any], params: Mapping[str, Any]) -> Any:
    """``cls(**coerce_params(cls, params))``, every bad param reported as :class:`ParamError`."""
    kwargs = coerce_params(cls, params)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ParamError):
            raise
        raise ParamError(f"bad params for {cls.__name__}: {type(exc).__name__}: {exc}") from exc


# --------------------------------------------------------------------------- names


def _check_names(cls: type[Any], signature: Any, params: Mapping[str, Any]) -> None:
    try:
        signature.bind(**params)
    except TypeError as exc:
        accepted = ", ".join(
            p.name
            for p in signature.parameters.values()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        )
        raise ParamError(
            f"bad params for {cls.__name__}: {exc} (accepted: {accepted or 'none'})"
        ) from None


def _type_hints(cls: type[Any], signature: Any) -> dict[str, Any]:
    """Resolved annotations of the constructor's parameters (absent ones left out)."""
    import typing

    init = getattr(cls, "__init__", None)
    try:
        hints = typing.get_type_hints(init)
    except Exception:  # a name that only exists under TYPE_CHECKING, a typo, ...
        hints = {}
        namespace = getattr(init, "__globals__", {})
        for parameter in signature.parameters.values():
            annotation = parameter.annotation
            if annotation is parameter.empty:
                continue
            if isinstance(annotation, str):
                try:
                    annotation = typing.get_type_hints(
                        _Annotated(annotation), globalns=namespace, localns=vars(cls)
                    )["x"]
                except Exception:
                    continue  # unresolvable: treated as unannotated
            hints[parameter.name] = annotation
    hints.pop("return", None)
    return {name: hint for name, hint in hints.items() if name in signature.parameters}


class _Annotated:
    """An object whose only annotation is ``annotation``, so that ``get_type_hints``
    resolves one string at a time (with its own handling of ``X | None`` and friends)."""

    def __init__(self, annotation: str) -> None:
        self.__annotations__ = {"x": annotation}


# --------------------------------------------------------------------------- conversion


def _convert(value: Any, annotation: Any, *, text: bool) -> Any:
    """Convert ``value`` to ``annotation``.

    ``text`` says the value is text to be parsed (a ``-p`` value, or a string for a
    typed param); inside a JSON document it is False and only strings for types JSON
    cannot express (date, Path, Enum, ...) are parsed.
    """
    import datetime as dt
    import enum
    import pathlib
    import typing

    if annotation is _MISSING or annotation is typing.Any or annotation is object:
        return _legacy(value) if text else value
    supertype = getattr(annotation, "__supertype__", None)  # typing.NewType
    if supertype is not None:
        return _convert(value, supertype, text=text)
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if _is_union(origin):
        return _union(value, args, text=text)
    if origin is typing.Literal:
        return _literal(value, args, text=text)
    if annotation is str:
        if isinstance(value, str):
            return value
        raise _Mismatch("a str")
    if annotation is bool:
        return _bool(value, text=text)
    if annotation is int:
        return _int(value, text=text)
    if annotation is float:
        return _float(value, text=text)
    if isinstance(annotation, type):
        if issubclass(annotation, dt.datetime):
            return _datetime(value, annotation)
        if issubclass(annotation, dt.date):
            return _date(value, annotation)
        if issubclass(annotation, pathlib.PurePath):
            if isinstance(value, pathlib.PurePath):
                return annotation(value)
            if isinstance(value, str) and value:
                return annotation(value)
            raise _Mismatch("a path")
        if issubclass(annotation, enum.Enum):
            return _enum(value, annotation)
    container = origin if origin is not None else annotation
    if container in (list, tuple, set, frozenset, dict):
        return _container(value, container, args, text=text)
    return value  # an annotation we do not know: the constructor decides


def _legacy(value: str) -> Any:
    """Unannotated text: JSON when it parses, else the string itself."""
    try:
        return json.loads(value)
    except RecursionError:
        raise _Mismatch("JSON", _TOO_DEEP) from None
    except ValueError:
        return value


def _is_union(origin: Any) -> bool:
    import types
    import typing

    return origin is typing.Union or origin is getattr(types, "UnionType", None)


def _union(value: Any, args: tuple[Any, ...], *, text: bool) -> Any:
    optional = type(None) in args
    if optional and (value is None or (text and value.strip().lower() in _NONE)):
        return None
    failures: list[_Mismatch] = []
    for member in args:
        if member is type(None):
            continue
        try:
            return _convert(value, member, text=text)
        except _Mismatch as exc:
            failures.append(exc)
    if len(failures) == 1 and failures[0].reason != f"is not {failures[0].expected}":
        raise failures[0]  # a specific reason ("has an element ...") says more
    expected = [failure.expected for failure in failures]
    if optional:
        expected.append("none")
    raise _Mismatch(" or ".join(expected))


def _literal(value: Any, args: tuple[Any, ...], *, text: bool) -> Any:
    for allowed in args:
        if type(value) is type(allowed) and value == allowed:
            return allowed
    if text:
        for allowed in args:
            if isinstance(allowed, str):
                continue
            try:
                if _convert(value, type(allowed), text=True) == allowed:
                    return allowed
            except _Mismatch:
                pass
    raise _Mismatch("one of " + ", ".join(show(a) for a in args))


def _bool(value: Any, *, text: bool) -> bool:
    if isinstance(value, bool):
        return value
    if text and isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE:
            return True
        if word in _FALSE:
            return False
    raise _Mismatch("a bool (true/false, 1/0, yes/no, on/off)")


def _int(value: Any, *, text: bool) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if text and isinstance(value, str):
        try:
            return int(value.strip(), 10)
        except ValueError:
            pass
    raise _Mismatch("an int")


def _float(value: Any, *, text: bool) -> float:
    try:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if text and isinstance(value, str):
            return float(value.strip())
    except (ValueError, OverflowError):
        pass
    raise _Mismatch("a float")


def _datetime(value: Any, annotation: Any) -> Any:
    if isinstance(value, annotation):
        return value
    if isinstance(value, str):
        raw = value.strip()
        if raw[-1:] in ("Z", "z"):
            raw = raw[:-1] + "+00:00"  # fromisoformat accepts "Z" only from 3.11
        try:
            return annotation.fromisoformat(raw)
        except ValueError:
            pass
    raise _Mismatch("a datetime (ISO 8601, e.g. 2026-11-28T02:00:00)")


def _date(value: Any, annotation: Any) -> Any:
    import datetime as dt

    if isinstance(value, annotation) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, str):
        try:
            return annotation.fromisoformat(value.strip())
        except ValueError:
            pass
    raise _Mismatch("a date (ISO 8601, e.g. 2026-11-28)")


def _enum(value: Any, annotation: Any) -> Any:
    if isinstance(value, annotation):
        return value
    members = list(annotation)
    if isinstance(value, str):
        for member in members:
            if member.name == value:
                return member
        for member in members:
            if isinstance(member.value, str) and member.value == value:
                return member
        for member in members:
            if not isinstance(member.value, str) and str(member.value) == value.strip():
                return member
    elif not isinstance(value, (list, dict)):
        for member in members:
            if type(member.value) is type(value) and member.value == value:
                return member
    names = ", ".join(member.name for member in members)
    raise _Mismatch(f"a {annotation.__name__} (one of {names})")


_CONTAINER_WORDS = {
    list: "a list (a JSON array)",
    tuple: "a tuple (a JSON array)",
    set: "a set (a JSON array)",
    frozenset: "a frozenset (a JSON array)",
    dict: "a dict (a JSON object)",
}


def _container(value: Any, container: Any, args: tuple[Any, ...], *, text: bool) -> Any:
    expected = _CONTAINER_WORDS[container]
    if text and isinstance(value, str):
        try:
            value = json.loads(value)
        except RecursionError:
            raise _Mismatch(expected, _TOO_DEEP) from None
        except ValueError:
            raise _Mismatch(expected) from None
    if container is dict:
        if not isinstance(value, dict):
            raise _Mismatch(expected)
        if len(args) != 2:
            return dict(value)
        key_type, value_type = args
        return {
            _element(k, key_type, text=isinstance(k, str)): _element(v, value_type, text=False)
            for k, v in value.items()
        }
    if not isinstance(value, (list, tuple, set, frozenset)):
        raise _Mismatch(expected)
    items = list(value)
    convert: Callable[[int, Any], Any]
    if container is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        if args == ((),):  # tuple[()]
            args = ()
        if len(items) != len(args):
            raise _Mismatch(f"a tuple of {len(args)} (a JSON array)")

        def convert(i: int, item: Any) -> Any:
            return _element(item, args[i], text=False)

    elif args:
        element = args[0]

        def convert(i: int, item: Any) -> Any:
            return _element(item, element, text=False)

    else:

        def convert(i: int, item: Any) -> Any:
            return item

    converted = [convert(i, item) for i, item in enumerate(items)]
    if container is list:
        return converted
    try:
        return container(converted)
    except TypeError:  # an unhashable element for a set
        raise _Mismatch(f"{expected} of hashable values") from None


def _element(item: Any, annotation: Any, *, text: bool) -> Any:
    try:
        return _convert(item, annotation, text=text)
    except _Mismatch as exc:
        raise _Mismatch(exc.expected, f"has an element {show(item)} that {exc.reason}") from None
