"""Build and validate the stage graph of a pipeline.

Data flows one way: the declarations collected from the class become
:class:`StageNode` objects with resolved options, static edges, ranks (a
topological order with back edges ignored) and their executor. Every mistake is a
:class:`~minigun.PipelineDefinitionError` that names the stage and the fix, raised
before anything runs.

Option precedence and worker counts are resolved by :mod:`minigun.core.options`;
what each executor is, by :mod:`minigun.core.executors.registry`.

The default-edge rule: a stage S gets an edge to the next non-producer stage N in
definition order unless S declares ``to=``, S is named in some stage's ``from_=``, S
is a consumer, or N is a fan-out sibling of S (they share an upstream).
"""

from __future__ import annotations

import inspect
import os
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from minigun.core import options as opt
from minigun.core.dsl import HOOK_ATTR, HOOKS, STAGE_ATTR, Stage, StageDecl, batch, nested
from minigun.core.errors import PipelineDefinitionError
from minigun.core.executors.registry import kind_of

if TYPE_CHECKING:
    from minigun.core.pipeline import Pipeline

__all__ = ["StageGraph", "StageNode", "build_graph", "collect_hooks"]


@dataclass
class StageNode:
    """One stage as the engine runs it: what to call, how, and where its items go."""

    name: str
    kind: str  # producer | processor | consumer | batch | custom
    shape: str  # producer: iter|out; processor: value|gen|out; consumer: value; batch; custom
    func: Any  # bound method, custom Stage instance, or the batch declaration
    owner: Pipeline
    options: dict[str, Any]
    namespace: str = ""  # "outer." for stages of a nested pipeline
    upstream: list[str] = field(default_factory=list)
    downstream: list[str] = field(default_factory=list)
    back_edges: set[str] = field(default_factory=set)  # downstream names reached backwards
    routed_only: bool = False
    coroutine: bool = False  # an async def stage: it runs on the run's event loop
    rank: int = 0
    execution: str = "thread"
    workers: int = 1
    queue_size: int = opt.DEFAULT_QUEUE_SIZE
    address: str | None = None  # a dask stage's scheduler (None: a LocalCluster)

    @property
    def can_route(self) -> bool:
        """Whether this stage receives an ``out`` and so may use ``out.to(name)``."""
        return self.shape == "out" or self.kind == "custom"

    @property
    def on_error(self) -> str:
        return str(self.options.get("on_error") or "raise")

    @property
    def retries(self) -> int:
        return int(self.options.get("retries") or 0)

    @property
    def retry_delay(self) -> float:
        value = self.options.get("retry_delay")
        return 1.0 if value is None else float(value)

    @property
    def timeout(self) -> float | None:
        value = self.options.get("timeout")
        return None if value is None else float(value)

    def describe(self) -> dict[str, Any]:
        described = {
            "name": self.name,
            "kind": self.kind,
            "executor": self.execution,
            "workers": self.workers,
            "queue_size": self.queue_size,
            "upstream": list(self.upstream),
            "downstream": list(self.downstream),
            "routed_only": self.routed_only,
            # Takes an ``out``: may also send items to any stage with ``out.to(name)``,
            # a choice made per item at run time, so no edge can name it in advance.
            "routes": self.can_route,
        }
        if "address" in kind_of(self.execution).options.values():
            described["dask_address"] = self.address
        return described


@dataclass
class StageGraph:
    """The validated graph: nodes in definition order plus the derived orders."""

    pipeline: str
    nodes: dict[str, StageNode]
    order: list[str]  # topological, from the producers, back edges ignored
    hooks: dict[str, list[Callable[..., Any]]]
    settings: dict[str, Any]

    @property
    def edges(self) -> list[tuple[str, str]]:
        return [(n.name, d) for n in self.nodes.values() for d in n.downstream]

    def resolve(self, source: StageNode, target: str) -> StageNode:
        """Find the stage ``out.to(target)`` means, seen from ``source``'s namespace."""
        node = self.nodes.get(source.namespace + target) or self.nodes.get(target)
        if node is None:
            raise PipelineDefinitionError(
                f"stage {source.name!r}: out.to({target!r}) names no stage; "
                f"stages are {', '.join(self.nodes)}"
            )
        if node.kind == "producer":
            raise PipelineDefinitionError(
                f"stage {source.name!r}: out.to({target!r}) targets a producer; "
                "producers take no input, route to a processor or consumer"
            )
        return node

    def plan(self) -> dict[str, Any]:
        """Processes, threads and cores this run wants, with warnings (``minigun inspect``).

        ``cores`` is what a deployment should request: one for the parent process, which
        runs every thread, inline and async stage (they share one interpreter and its
        GIL, so more threads do not need more cores), plus one per fork process (each a
        separate interpreter that can keep a core busy). Dask stages feed a cluster from
        one thread of the parent; a LocalCluster's workers are added by the caller that
        knows the cluster (``minigun inspect``). ``machine_cores`` is this machine's, for
        the oversubscription warning.
        """
        machine_cores = os.cpu_count() or 1
        kinds = [(n.workers, kind_of(n.execution)) for n in self.nodes.values()]
        processes = sum(workers for workers, kind in kinds if kind.forks)
        threads = sum(workers for workers, kind in kinds if kind.local)
        # Items in flight on the run's event loop: one thread for all of them, no core each.
        coroutines = sum(workers for workers, kind in kinds if kind.loop)
        warnings = []
        if processes > machine_cores:
            warnings.append(
                f"fork stages want {processes} processes but this machine has"
                f" {machine_cores} cores; lower processes= or set MINIGUN_MAX_PROCESSES"
            )
        return {
            "processes": processes,
            "threads": threads,
            "coroutines": coroutines,
            "cores": processes + 1,
            "machine_cores": machine_cores,
            "warnings": warnings,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "stages": [self.nodes[name].describe() for name in self.nodes],
            "edges": [list(e) for e in self.edges],
            "plan": self.plan(),
        }


# --------------------------------------------------------------------------- collection


def _declarations(cls: type) -> dict[str, StageDecl]:
    """Stage declarations in definition order; a subclass override keeps the position."""
    found: dict[str, StageDecl] = {}
    for klass in reversed(cls.__mro__):
        for name, attr in vars(klass).items():
            decl = attr if isinstance(attr, StageDecl) else getattr(attr, STAGE_ATTR, None)
            if isinstance(decl, StageDecl):
                found[name] = decl
            elif name in found:
                del found[name]  # overridden by something that is not a stage
    return found


def collect_hooks(instance: Pipeline) -> dict[str, list[Callable[..., Any]]]:
    """Bound hook methods by hook name, in definition order."""
    names: dict[str, str] = {}
    for klass in reversed(type(instance).__mro__):
        for name, attr in vars(klass).items():
            hook = getattr(attr, HOOK_ATTR, None)
            if hook in HOOKS:
                names[name] = hook
            elif name in names:
                del names[name]
    hooks: dict[str, list[Callable[..., Any]]] = {h: [] for h in HOOKS}
    for name, hook in names.items():
        hooks[hook].append(getattr(instance, name))
    return hooks


def _positional_arity(func: Callable[..., Any]) -> int:
    params = inspect.signature(func).parameters.values()
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(1 for p in params if p.kind in kinds and p.default is inspect.Parameter.empty)


_SHAPES = {
    "producer": ({0: "iter", 1: "out"}, "(self) returning an iterable, or (self, out)"),
    "processor": ({1: "value", 2: "out"}, "(self, item) or (self, item, out)"),
    "consumer": ({1: "value"}, "(self, item)"),
}


def _shape(where: str, kind: str, func: Callable[..., Any]) -> str:
    shapes, expected = _SHAPES[kind]
    try:
        arity = _positional_arity(func)
    except (TypeError, ValueError):
        return next(iter(shapes.values()))
    shape = shapes.get(arity)
    if shape is None:
        hint = " (consumers have no outputs: drop the out parameter)" if kind == "consumer" else ""
        raise PipelineDefinitionError(
            f"{where}: a {kind} takes {expected}; this one takes {arity} "
            f"argument(s) besides self{hint}"
        )
    if kind == "processor" and shape == "value" and inspect.isgeneratorfunction(func):
        return "gen"
    return shape


def _async_shape(where: str, kind: str, shape: str, func: Callable[..., Any]) -> tuple[str, bool]:
    """``(shape, coroutine)``: an ``async def`` stage's shape, or a plain one unchanged.

    The async shapes mirror the plain ones: a producer is an async generator, a
    processor a coroutine returning a value, an async generator of values, or a
    coroutine taking ``out``; a consumer a coroutine. Anything else has no meaning the
    engine could give it, so it is refused here with the shape that would work.
    """
    agen = inspect.isasyncgenfunction(func)
    if not agen and not inspect.iscoroutinefunction(func):
        return shape, False
    if kind == "producer":
        if agen and shape == "iter":
            return shape, True
        raise PipelineDefinitionError(
            f"{where}: an async producer is an async generator taking (self) that yields"
            " its items (async def ...(self): ... yield item); make it one, or a plain def"
        )
    if kind == "consumer" and agen:
        raise PipelineDefinitionError(
            f"{where}: a consumer has no outputs, so it cannot be an async generator;"
            " drop the yield (async def ...(self, item))"
        )
    if agen and shape == "out":
        raise PipelineDefinitionError(
            f"{where}: an async generator cannot also take out; yield values (no out"
            " parameter), or drop the yield and call out.emit(x)"
        )
    return ("gen" if agen else shape), True


# --------------------------------------------------------------------------- building


@dataclass
class _Slot:
    """One declaration at one nesting level (a nested pipeline is one slot)."""

    name: str
    kind: str
    to: tuple[str, ...]
    from_: tuple[str, ...]
    node: StageNode | None = None
    inner: list[_Slot] | None = None


def _where(instance: Pipeline, name: str) -> str:
    return f"stage {name!r} of {type(instance).__name__}"


def _build_level(
    instance: Pipeline, prefix: str, nodes: dict[str, StageNode], stack: tuple[type, ...]
) -> list[_Slot]:
    cls = type(instance)
    if cls in stack:
        raise PipelineDefinitionError(
            f"{cls.__name__} nests itself (through {' -> '.join(c.__name__ for c in stack)}); "
            "nesting must not be recursive"
        )
    slots: list[_Slot] = []
    seen_custom: dict[int, str] = {}
    for local, decl in _declarations(cls).items():
        name = prefix + local
        where = _where(instance, local)
        if isinstance(decl, nested):
            if not (isinstance(decl.pipeline_cls, type) and hasattr(decl.pipeline_cls, "run")):
                raise PipelineDefinitionError(
                    f"{where}: mg.nested() takes a Pipeline class, got {decl.pipeline_cls!r}"
                )
            try:
                inner_instance = decl.pipeline_cls(**decl.params)
            except TypeError as exc:
                raise PipelineDefinitionError(f"{where}: bad params for nested pipeline: {exc}")
            inner = _build_level(inner_instance, name + ".", nodes, (*stack, cls))
            if not [s for s in inner if s.kind != "producer"]:
                raise PipelineDefinitionError(
                    f"{where}: nested pipeline {decl.pipeline_cls.__name__} has no "
                    "processor or consumer to feed; give it at least one"
                )
            slots.append(_Slot(name, "nested", (), (), inner=inner))
            continue
        options = dict(decl.options)
        opt.validate_stage_options(where, options)
        kind = decl.kind
        if isinstance(decl, batch):
            opt._check_int(where, "size", decl.size, 1)
            if decl.timeout is not None:
                opt._check_number(where, "timeout", decl.timeout, positive=True)
            func: Any = decl
            shape = "batch"
        elif isinstance(decl, Stage):
            if any(
                inspect.iscoroutinefunction(f) or inspect.isasyncgenfunction(f)
                for f in (decl.process, decl.flush)
            ):
                raise PipelineDefinitionError(
                    f"{where}: a custom mg.Stage runs process() and flush() as plain calls;"
                    " make them plain def, or use an async def processor taking"
                    " (self, item, out)"
                )
            if id(decl) in seen_custom:
                raise PipelineDefinitionError(
                    f"{where}: the same Stage object is also stage {seen_custom[id(decl)]!r}; "
                    "give each stage its own instance"
                )
            seen_custom[id(decl)] = local
            func, shape, kind = decl, "custom", "custom"
        else:
            func = getattr(instance, local)
            if getattr(func, STAGE_ATTR, None) is not decl:
                raise PipelineDefinitionError(
                    f"{where}: the instance attribute {local!r} hides the stage method; "
                    "rename the attribute or the stage"
                )
            shape = _shape(where, kind, func)
        coroutine = False
        if shape not in ("batch", "custom"):
            shape, coroutine = _async_shape(where, kind, shape, func)
        if name in nodes:
            raise PipelineDefinitionError(f"{where}: duplicate stage name {name!r}; rename one")
        node = StageNode(name, kind, shape, func, instance, options, namespace=prefix)
        node.coroutine = coroutine
        nodes[name] = node
        to = opt.as_name_list(where, "to", options.get("to"))
        from_ = opt.as_name_list(where, "from_", options.get("from_"))
        slots.append(
            _Slot(name, kind, tuple(prefix + t for t in to), tuple(prefix + f for f in from_), node)
        )
    _check_level(instance, prefix, slots)
    return slots


def _check_level(instance: Pipeline, prefix: str, slots: list[_Slot]) -> None:
    by_name = {s.name: s for s in slots}
    for s in slots:
        local = s.name[len(prefix) :]
        where = _where(instance, local)
        for ref, opt_name in [(t, "to") for t in s.to] + [(f, "from_") for f in s.from_]:
            if ref not in by_name:
                known = ", ".join(x.name[len(prefix) :] for x in slots)
                raise PipelineDefinitionError(
                    f"{where}: {opt_name}= names unknown stage {ref[len(prefix) :]!r}; "
                    f"stages here are {known}"
                )
        if s.kind == "producer" and s.from_:
            raise PipelineDefinitionError(
                f"{where}: a producer takes no input; remove from_= or make it a processor"
            )
        if s.kind == "consumer" and s.to:
            raise PipelineDefinitionError(
                f"{where}: a consumer has no outputs; remove to= or make it a processor"
            )
        for t in s.to:
            if by_name[t].kind == "producer":
                raise PipelineDefinitionError(
                    f"{where}: to= names producer {t[len(prefix) :]!r}; a producer takes no "
                    "input, route to a processor or consumer"
                )
        for f in s.from_:
            if by_name[f].kind == "consumer":
                raise PipelineDefinitionError(
                    f"{where}: from_= names consumer {f[len(prefix) :]!r}; a consumer has no "
                    "outputs, make it a processor"
                )


def _level_edges(slots: list[_Slot]) -> list[tuple[str, str]]:
    edges: list[tuple[str, str]] = []
    upstreams: dict[str, set[str]] = defaultdict(set)

    def add(a: str, b: str) -> None:
        if (a, b) not in edges:
            edges.append((a, b))
            upstreams[b].add(a)

    for s in slots:
        for t in s.to:
            add(s.name, t)
        for f in s.from_:
            add(f, s.name)
    named_in_from = {f for s in slots for f in s.from_}
    for i, s in enumerate(slots):
        if s.to or s.name in named_in_from or s.kind == "consumer":
            continue
        nxt = next((n for n in slots[i + 1 :] if n.kind != "producer"), None)
        if nxt is None or upstreams[s.name] & upstreams[nxt.name]:
            continue
        add(s.name, nxt.name)
    return edges


def _entry(slot: _Slot) -> str:
    if slot.inner is None:
        return slot.name
    first = next(s for s in slot.inner if s.kind != "producer")
    return _entry(first)


def _exit(slot: _Slot) -> str | None:
    if slot.inner is None:
        return slot.name if slot.kind != "consumer" else None
    return _exit(slot.inner[-1])


def _wire(slots: list[_Slot], nodes: dict[str, StageNode]) -> None:
    by_name = {s.name: s for s in slots}
    for a, b in _level_edges(slots):
        source = _exit(by_name[a])
        if source is None:
            continue  # a nested pipeline ending in a consumer emits nothing
        target = _entry(by_name[b])
        if target not in nodes[source].downstream:
            nodes[source].downstream.append(target)
            nodes[target].upstream.append(source)
    for s in slots:
        if s.inner is not None:
            _wire(s.inner, nodes)


def _rank(nodes: dict[str, StageNode]) -> list[str]:
    """Topological order from the producers; edges closing a cycle become back edges."""
    state: dict[str, int] = {}  # 1 = on stack, 2 = done
    post: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        for d in nodes[name].downstream:
            if state.get(d) == 1:
                nodes[name].back_edges.add(d)
            elif d not in state:
                visit(d)
        state[name] = 2
        post.append(name)

    for name, node in nodes.items():
        if node.kind == "producer" and name not in state:
            visit(name)
    for name in nodes:
        if name not in state:
            visit(name)
    order = list(reversed(post))
    for i, name in enumerate(order):
        nodes[name].rank = i
    return order


def _pipeline_name(instance: Pipeline) -> str:
    cls = type(instance)
    return f"{cls.__module__}:{cls.__qualname__}"


def build_graph(instance: Pipeline, **overrides: Any) -> StageGraph:
    """Collect, wire, validate and resolve a pipeline instance's stages.

    ``overrides`` are run-level settings (``execution``, ``max_threads``, ...); they
    take precedence over the environment, which takes precedence over stage options
    and class attributes.
    """
    seeded = bool(overrides.pop("_seeded", False))
    layers = opt.resolve_layers(type(instance), overrides)
    nodes: dict[str, StageNode] = {}
    slots = _build_level(instance, "", nodes, ())
    cls_name = type(instance).__name__
    if not any(n.kind == "producer" for n in nodes.values()) and not seeded:
        raise PipelineDefinitionError(
            f"pipeline {cls_name} has no producer; mark a generator method with @mg.producer"
        )
    _wire(slots, nodes)
    can_route = any(n.can_route for n in nodes.values())
    for node in nodes.values():
        if node.kind == "producer":
            if not node.downstream and node.shape == "iter":
                raise PipelineDefinitionError(
                    f"stage {node.name!r} of {cls_name}: this producer feeds no stage; "
                    "add a processor or consumer after it (or to=)"
                )
        elif not node.upstream:
            if not can_route and not seeded:
                raise PipelineDefinitionError(
                    f"stage {node.name!r} of {cls_name} is unreachable: no stage feeds it; "
                    "add from_=/to= or move it after the stage that should feed it"
                )
            node.routed_only = True
        placement = opt.resolve_stage(
            node.name, node.kind, node.options, type(node.owner), layers, node.coroutine
        )
        node.execution, node.workers = placement.execution, placement.workers
        node.queue_size, node.address = placement.queue_size, placement.address
    order = _rank(nodes)
    hooks: dict[str, list[Callable[..., Any]]] = {h: [] for h in HOOKS}
    owners: list[Pipeline] = [instance]
    for node in nodes.values():
        if all(node.owner is not o for o in owners):
            owners.append(node.owner)
    for owner in owners:  # the pipeline's own hooks first, then those of nested pipelines
        for hook, fns in collect_hooks(owner).items():
            hooks[hook].extend(fns)
    _check_async_hooks(cls_name, hooks)
    return StageGraph(_pipeline_name(instance), nodes, order, hooks, layers.settings())


def _check_async_hooks(cls_name: str, hooks: dict[str, list[Callable[..., Any]]]) -> None:
    """``before_run``/``after_run`` may be ``async def`` (awaited on the run's event loop,
    the one its async stages use); the fork hooks may not: ``after_fork`` runs in a
    forked child, which has no loop, and ``before_fork`` prepares for it."""
    for hook in ("before_fork", "after_fork"):
        for fn in hooks.get(hook, []):
            if inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
                name = getattr(fn, "__name__", repr(fn))
                raise PipelineDefinitionError(
                    f"pipeline {cls_name}: the @mg.{hook} hook {name!r} is async def, but"
                    " fork hooks run as plain calls (a forked child has no event loop);"
                    " make it a plain def"
                )
