"""The pipeline DSL: stage decorators, ``mg.batch``, ``mg.nested``, ``mg.Stage`` and hooks.

Decorators only *mark* methods (they return the function unchanged, so a stage
method stays an ordinary method you can call in a test). Everything is checked
later, when :mod:`minigun.core.graph` builds the stage graph, so a mistake is
reported with the whole pipeline in view and before anything runs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, overload

if TYPE_CHECKING:
    from minigun.core.pipeline import Pipeline
    from minigun.core.stage import Out

__all__ = [
    "HOOKS",
    "Stage",
    "StageDecl",
    "after_fork",
    "after_run",
    "batch",
    "before_fork",
    "before_run",
    "consumer",
    "nested",
    "processor",
    "producer",
]

F = TypeVar("F", bound=Callable[..., Any])

STAGE_ATTR = "__minigun_stage__"
HOOK_ATTR = "__minigun_hook__"
HOOKS = ("before_run", "after_run", "before_fork", "after_fork")


class StageDecl:
    """What a decorator or a class attribute declared: a stage kind and its options."""

    kind: str  # "producer" | "processor" | "consumer" | "batch" | "nested" | "custom"

    def __init__(self, kind: str, options: dict[str, Any]) -> None:
        self.kind = kind
        self.options = options

    def __repr__(self) -> str:
        return f"StageDecl({self.kind!r}, {self.options!r})"


def _stage_decorator(kind: str, fn: Any, options: dict[str, Any]) -> Any:
    def mark(func: F) -> F:
        if not callable(func):
            raise TypeError(f"@mg.{kind} decorates a method, got {func!r}")
        setattr(func, STAGE_ATTR, StageDecl(kind, options))
        return func

    if fn is None:
        return mark
    if not callable(fn):
        raise TypeError(
            f"@mg.{kind} takes keyword options only, e.g. @mg.{kind}(threads=4); got {fn!r}"
        )
    return mark(fn)


@overload
def producer(fn: F) -> F: ...
@overload
def producer(fn: None = None, **options: Any) -> Callable[[F], F]: ...
def producer(fn: Any = None, **options: Any) -> Any:
    """Mark a method as a producer: ``(self)`` returning an iterable, or ``(self, out)``."""
    return _stage_decorator("producer", fn, options)


@overload
def processor(fn: F) -> F: ...
@overload
def processor(fn: None = None, **options: Any) -> Callable[[F], F]: ...
def processor(fn: Any = None, **options: Any) -> Any:
    """Mark a method as a processor: ``(self, item)`` or ``(self, item, out)``.

    A returned value is emitted (``None`` drops the item); a generator emits each
    value it yields. With an ``out`` parameter the method emits only through
    ``out.emit(x)`` / ``out.to("stage").emit(x)``.
    """
    return _stage_decorator("processor", fn, options)


@overload
def consumer(fn: F) -> F: ...
@overload
def consumer(fn: None = None, **options: Any) -> Callable[[F], F]: ...
def consumer(fn: Any = None, **options: Any) -> Any:
    """Mark a method as a consumer: ``(self, item)``, returning nothing."""
    return _stage_decorator("consumer", fn, options)


class batch(StageDecl):
    """``name = mg.batch(size, timeout=None)``: group items into lists of up to ``size``.

    There is one buffer per batch stage (not per worker), so 23 items in batches of
    5 come out as 5, 5, 5, 5, 3. A partial batch is emitted when ``timeout``
    seconds have passed since its first item arrived, and at end of stream.
    """

    def __init__(self, size: int, timeout: float | None = None, **options: Any) -> None:
        super().__init__("batch", options)
        self.size = size
        self.timeout = timeout


class nested(StageDecl):
    """``name = mg.nested(OtherPipeline, **params)``: another pipeline used as one stage.

    Items go into the nested pipeline's first non-producer stage and come out of
    its last stage. Its stages appear in stats as ``name.inner_stage``.
    """

    def __init__(self, pipeline_cls: type[Pipeline], **params: Any) -> None:
        super().__init__("nested", {})
        self.pipeline_cls = pipeline_cls
        self.params = params


class Stage(StageDecl):
    """Base class of custom stages: override ``process(item, out)`` and optionally ``flush(out)``.

    Use an instance as a class attribute of the pipeline: ``dedupe = Dedupe(threads=1)``.
    Keyword arguments are the usual stage options. ``flush`` is called once at end of
    stream (and again if more items arrive through a cycle before the run ends).
    """

    def __init__(self, **options: Any) -> None:
        super().__init__("custom", options)

    def process(self, item: Any, out: Out) -> None:
        raise NotImplementedError(f"{type(self).__name__}.process(item, out) is not defined")

    def flush(self, out: Out) -> None:
        """Emit whatever is buffered; called at end of stream."""


def _hook(name: str) -> Callable[[F], F]:
    def mark(func: F) -> F:
        setattr(func, HOOK_ATTR, name)
        return func

    mark.__name__ = name
    mark.__doc__ = f"Mark a method to be called as the pipeline's ``{name}`` hook."
    return mark


before_run = _hook("before_run")
after_run = _hook("after_run")
before_fork = _hook("before_fork")
after_fork = _hook("after_fork")
