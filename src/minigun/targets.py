"""Resolving a target string to a Pipeline class.

Targets are ``package.module:ClassName``, ``path/to/file.py:ClassName``, or
``path/to/file.py`` when that file defines exactly one Pipeline subclass. Every way a
target can be wrong raises :class:`TargetError` with one line that says what to fix;
the CLI prints it and exits 2. Paths, names and import errors are echoed with their
control characters escaped (``minigun._text.escape_controls``), so a file name holding
an escape sequence or a newline cannot drive the terminal or split the line.

A file target is imported under its own stem as module name (as ``python file.py``
would see its siblings) and registered in ``sys.modules``, because fork executors
pickle classes by module and name.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from types import ModuleType
from typing import Any

from minigun._text import escape_controls as _shown
from minigun.exit_codes import ExitCode

__all__ = ["TargetError", "add_import_path", "load_pipeline_class", "split_target"]


class TargetError(ValueError):
    """The target cannot be resolved to a Pipeline class (a usage error, exit 2)."""

    exit_code = ExitCode.USAGE


def split_target(target: str) -> tuple[str, str | None]:
    """``"a.b:C"`` -> ``("a.b", "C")``; ``"f.py"`` -> ``("f.py", None)``."""
    target = target.strip()
    location, sep, name = target.rpartition(":")
    if not sep:
        location, name = target, ""
    if not location:
        raise TargetError(
            f"bad target {target!r}: expected 'package.module:ClassName',"
            " 'path/to/file.py:ClassName' or 'path/to/file.py'"
        )
    if not name:
        if not location.endswith(".py"):
            raise TargetError(
                f"bad target {target!r}: name the class, as in '{_shown(location)}:ClassName'"
            )
        return location, None
    return location, name


def load_pipeline_class(target: str) -> type[Any]:
    """Import the target and return its Pipeline subclass (not an instance)."""
    import minigun as mg  # the engine: only the child and in-process commands get here

    location, name = split_target(target)
    is_file = location.endswith(".py") or os.sep in location
    module = _import_file(location) if is_file else _import_module(location)
    if name is None:
        return _only_pipeline(module, location, mg.Pipeline)
    obj: Any = module
    for part in name.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise TargetError(f"{_shown(location)} has no attribute {name!r}") from None
    shown = _shown(f"{location}:{name}")
    if not (isinstance(obj, type) and issubclass(obj, mg.Pipeline)):
        kind = "class" if isinstance(obj, type) else type(obj).__name__
        raise TargetError(f"{shown} is a {kind}, not a minigun Pipeline subclass")
    if obj is mg.Pipeline:
        raise TargetError(f"{shown} is mg.Pipeline itself; name your subclass")
    return obj


def _import_module(name: str) -> ModuleType:
    if not all(part.isidentifier() for part in name.split(".")):
        raise TargetError(f"bad module name {name!r} in target")
    # The console script does not put the cwd on sys.path; the runner's child removes
    # it from the front. Either way a module next to where the user stands is found,
    # without shadowing the standard library.
    if "" not in sys.path:
        add_import_path(os.getcwd())
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            raise TargetError(f"no module named {exc.name!r} (target module {name!r})") from exc
        raise TargetError(f"importing {name} failed: {_shown_exc(exc)}") from exc
    except Exception as exc:
        raise TargetError(f"importing {name} failed: {_shown_exc(exc)}") from exc


def _import_file(path: str) -> ModuleType:
    full = os.path.abspath(path)
    shown = _shown(path)
    if not os.path.isfile(full):
        raise TargetError(f"no such file: {shown}")
    if not full.endswith(".py"):
        raise TargetError(f"{shown} is not a .py file")
    stem = os.path.splitext(os.path.basename(full))[0]
    existing = sys.modules.get(stem)
    if existing is not None and getattr(existing, "__file__", None) == full:
        return existing
    module_name = stem if stem.isidentifier() and existing is None else "_minigun_target_"
    spec = importlib.util.spec_from_file_location(module_name, full)
    if spec is None or spec.loader is None:
        raise TargetError(f"cannot import {shown}")
    module = importlib.util.module_from_spec(spec)
    add_import_path(os.path.dirname(full))  # so the file can import its siblings
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        raise TargetError(f"importing {shown} failed: {_shown_exc(exc)}") from exc
    return module


def add_import_path(directory: str) -> None:
    """Put ``directory`` on ``sys.path`` after the standard library, before site-packages.

    A user's ``types.py`` or ``json.py`` next to the pipeline must not shadow the
    standard library (``python -m`` and ``python file.py`` put their directory first,
    which breaks exactly that), while the user's own modules still win over installed
    packages of the same name, as they would for ``python file.py``.
    """
    if directory in sys.path:
        return
    for index, entry in enumerate(sys.path):
        if "site-packages" in entry or "dist-packages" in entry:
            sys.path.insert(index, directory)
            return
    sys.path.append(directory)


def _only_pipeline(module: ModuleType, location: str, base: type[Any]) -> type[Any]:
    found = [
        obj
        for obj in vars(module).values()
        if isinstance(obj, type)
        and issubclass(obj, base)
        and obj is not base
        and obj.__module__ == module.__name__
    ]
    shown = _shown(location)
    if not found:
        raise TargetError(f"{shown} defines no minigun Pipeline subclass")
    if len(found) > 1:
        names = ", ".join(sorted(cls.__name__ for cls in found))
        raise TargetError(
            f"{shown} defines {len(found)} Pipeline classes ({names});"
            f" name one, as in '{shown}:{found[0].__name__}'"
        )
    return found[0]


def _shown_exc(exc: BaseException) -> str:
    """``Type: message`` of an import failure, escaped, on one line."""
    return _shown(f"{type(exc).__name__}: {exc}")
