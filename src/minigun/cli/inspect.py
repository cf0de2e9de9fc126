"""``minigun inspect``: the stage graph, each stage's executor, and the resource plan."""

from __future__ import annotations

import json
from typing import Any

import click

__all__ = ["inspect_command", "render_mermaid", "render_text"]


@click.command("inspect")
@click.argument("target")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "mermaid", "json"]),
    default="text",
    show_default=True,
)
def inspect_command(target: str, fmt: str) -> int:
    """Show the stage graph of TARGET without running it."""
    from minigun.core.graph import build_graph
    from minigun.targets import load_pipeline_class

    cls = load_pipeline_class(target)
    built = build_graph(_bare_instance(cls))
    graph = built.to_dict()
    clusters = _clusters(graph, built.settings.get("max_processes"))
    if clusters:
        plan = graph["plan"]
        plan["dask"] = clusters
        local = sum(c["workers"] for c in clusters if c.get("local"))
        if local and plan.get("processes"):
            plan["warnings"].append(
                f"the LocalCluster's {local} worker processes and the fork stages'"
                f" {plan['processes']} processes share {plan.get('cores')} cores; give the"
                " dask stages a dask_address or lower max_processes"
            )
    if fmt == "text":
        click.echo(render_text(graph))  # warnings are part of the text
        return 0
    click.echo(json.dumps(graph, indent=2) if fmt == "json" else render_mermaid(graph))
    # Machine formats keep stdout parseable; the resource warnings still reach a human.
    for warning in (graph.get("plan") or {}).get("warnings") or []:
        click.echo(f"minigun: warning: {warning}", err=True)
    return 0


def _bare_instance(cls: type[Any]) -> Any:
    """An instance to build the graph from, without needing constructor params.

    The graph depends on the class (its decorated stages and options), not on the
    params of a run, so when the constructor needs arguments we skip it rather than
    ask for them.
    """
    try:
        return cls()
    except TypeError:
        return object.__new__(cls)


def _clusters(graph: dict[str, Any], max_processes: int | None) -> list[dict[str, Any]]:
    """The Dask clusters the graph's dask stages use, with their size: a LocalCluster's
    as it would be started, a running scheduler's as it answers (or why it does not).
    ``distributed`` is imported only when there is a dask stage with an address."""
    by_address: dict[str | None, list[str]] = {}
    for stage in graph.get("stages", []):
        if "dask_address" in stage:
            by_address.setdefault(stage["dask_address"], []).append(stage["name"])
    if not by_address:
        return []
    from minigun.core.executors.dask import describe_cluster

    return [
        {**describe_cluster(address, max_processes), "stages": stages}
        for address, stages in by_address.items()
    ]


def _cluster_line(cluster: dict[str, Any]) -> str:
    stages = ", ".join(cluster.get("stages") or [])
    if cluster.get("local"):
        where = (
            f"a LocalCluster started for the run: {cluster.get('workers')} worker processes,"
            f" {cluster.get('threads')} threads"
        )
    elif "error" in cluster:
        where = f"{cluster.get('address')}: unreachable now ({cluster['error']})"
    else:
        where = (
            f"{cluster.get('address')}: {cluster.get('workers')} workers,"
            f" {cluster.get('threads')} threads"
        )
    return f"dask: {stages} -> {where}"


def _concurrency(stage: dict[str, Any]) -> str:
    """``thread x4``: four threads; ``async x200``: 200 items in flight on the loop;
    ``dask @ ADDRESS``: the cluster's workers (see the plan)."""
    if "dask_address" in stage:
        return f"dask @ {stage['dask_address'] or 'local'}"
    workers = stage.get("workers")
    return f"{stage.get('executor', '?')} x{workers}" if workers else str(stage.get("executor"))


def render_text(graph: dict[str, Any]) -> str:
    stages = graph.get("stages", [])
    width = max((len(s["name"]) for s in stages), default=5)
    lines = [f"pipeline {graph.get('pipeline', '?')}", ""]
    for stage in stages:
        downstream = ", ".join(stage.get("downstream") or []) or "-"
        note = "  (receives routed items only)" if stage.get("routed_only") else ""
        queue = stage.get("queue_size")
        lines.append(
            f"  {stage['name']:<{width}}  {stage.get('kind', '?'):<9}  {_concurrency(stage):<14}"
            f"  queue {queue if queue is not None else '-':<6}  -> {downstream}{note}"
        )
    plan = graph.get("plan") or {}
    # Coroutines of async stages share one event loop thread and need no core each.
    coroutines = plan.get("coroutines") or 0
    on_loop = f" (+{coroutines} coroutines on 1 event loop)" if coroutines else ""
    lines += [
        "",
        f"plan: {plan.get('processes', 0)} processes, {plan.get('threads', 0)} threads{on_loop},"
        f" {plan.get('cores', '?')} cores",
    ]
    lines += [_cluster_line(cluster) for cluster in plan.get("dask") or []]
    lines += [f"warning: {w}" for w in plan.get("warnings") or []]
    return "\n".join(lines)


def _mermaid_id(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in name)


def render_mermaid(graph: dict[str, Any]) -> str:
    lines = ["flowchart LR"]
    for stage in graph.get("stages", []):
        label = f"{stage['name']}<br/>{stage.get('kind', '')} · {_concurrency(stage)}"
        if stage.get("kind") == "producer":
            shape = f'(["{label}"])'
        elif stage.get("kind") == "consumer":
            shape = f'[("{label}")]'
        else:
            shape = f'["{label}"]'
        lines.append(f"    {_mermaid_id(stage['name'])}{shape}")
    for upstream, downstream in graph.get("edges", []):
        lines.append(f"    {_mermaid_id(upstream)} --> {_mermaid_id(downstream)}")
    for stage in graph.get("stages", []):
        if stage.get("routed_only"):
            lines.append(f"    %% {stage['name']} receives routed items only")
    return "\n".join(lines)
