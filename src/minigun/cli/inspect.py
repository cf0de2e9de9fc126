"""``minigun inspect``: the stage graph, each stage's executor, and the resource plan."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from minigun.cli._errors import BadInput
from minigun.cli._output import echo_line, say
from minigun.cli._params import instantiate, parse_params
from minigun.cli._plan import complete_plan, current_rss, render_plan
from minigun.cli.run import param_options
from minigun.exit_codes import ExitCode

if TYPE_CHECKING:
    from minigun.core.graph import StageGraph
    from minigun.runner import LogLine

__all__ = ["estimated_memory", "inspect_command", "render_mermaid", "render_text", "resource_plan"]


#: Seconds a stopped sample run may drain before SIGKILL.
SAMPLE_GRACE = 10.0


@click.command("inspect", short_help="Show a pipeline's graph and resource plan.")
@click.argument("target")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "mermaid", "json"]),
    default="text",
    show_default=True,
)
@click.option(
    "--plan",
    "plan_only",
    is_flag=True,
    help="Print only the resource plan: cores, memory and the recommended CPU request and"
    " memory limit (what the templates in examples/deploy use).",
)
@click.option(
    "--sample",
    type=click.FloatRange(min=0, min_open=True, max=3600),
    metavar="SECONDS",
    help="Measure memory: run the pipeline for real (side effects included: point -p at"
    " scratch data) in the isolated runner for at most SECONDS, reading the RSS/USS of"
    " its process and its forks from /proc. Implies --plan. Without it memory is"
    " estimated, and labelled so.",
)
@param_options
def inspect_command(
    target: str,
    fmt: str,
    plan_only: bool,
    sample: float | None,
    param_pairs: tuple[str, ...],
    params_json: str | None,
) -> int:
    """Show the stage graph of TARGET and its resource plan without running it
    (unless --sample asks for a short measured run)."""
    from minigun.core.graph import build_graph
    from minigun.targets import load_pipeline_class

    plan_only = plan_only or sample is not None
    if plan_only and fmt == "mermaid":
        raise BadInput("--plan and --sample print a plan: use --format text or json")
    params = parse_params(param_pairs, params_json)
    cls = load_pipeline_class(target)
    built = build_graph(instantiate(cls, params) if params else _bare_instance(cls))
    graph = built.to_dict()
    memory = None if sample is None else _measure(target, params, sample)
    if sample is not None and memory is None:
        return int(ExitCode.USAGE)  # the child's "minigun: error:" line says why
    graph["plan"] = resource_plan(built, memory)
    if plan_only:
        if fmt == "json":
            click.echo(json.dumps({"pipeline": graph["pipeline"], "plan": graph["plan"]}, indent=2))
        else:
            click.echo("\n".join([f"pipeline {graph['pipeline']}", *render_plan(graph["plan"])]))
            return 0
    elif fmt == "text":
        click.echo(render_text(graph))  # warnings are part of the text
        return 0
    else:
        click.echo(json.dumps(graph, indent=2) if fmt == "json" else render_mermaid(graph))
    # Machine formats keep stdout parseable; the resource warnings still reach a human.
    for warning in (graph.get("plan") or {}).get("warnings") or []:
        click.echo(f"minigun: warning: {warning}", err=True)
    return 0


def resource_plan(built: StageGraph, memory: dict[str, Any] | None = None) -> dict[str, Any]:
    """The complete plan of a built graph: its counts, any dask cluster, memory (
    ``memory`` when measured, else estimated) and the recommendation."""
    graph = built.to_dict()
    plan: dict[str, Any] = graph["plan"]
    _add_clusters(plan, graph, built.settings.get("max_processes"))
    return complete_plan(plan, memory or estimated_memory())


def _add_clusters(plan: dict[str, Any], graph: dict[str, Any], max_processes: int | None) -> None:
    """The dask clusters into ``plan``; a LocalCluster's workers are local processes,
    so they add to the cores (a remote cluster's do not)."""
    clusters = _clusters(graph, max_processes)
    if not clusters:
        return
    plan["dask"] = clusters
    local = sum(c["workers"] for c in clusters if c.get("local"))
    plan["cores"] = plan.get("cores", 1) + local
    if local and plan.get("processes"):
        plan["warnings"].append(
            f"the LocalCluster's {local} worker processes and the fork stages'"
            f" {plan['processes']} processes share {plan.get('machine_cores')} cores; give"
            " the dask stages a dask_address or lower max_processes"
        )


def estimated_memory() -> dict[str, Any]:
    """Memory without a sample: this interpreter (target imported, graph built) as the
    base, and a child that copies all of it (see :mod:`minigun.cli._plan`)."""
    rss = current_rss()
    return {"source": "estimated", "runner_bytes": rss, "base_bytes": rss, "child_bytes": rss}


def _measure(target: str, params: dict[str, Any], seconds: float) -> dict[str, Any] | None:
    """Memory from a sample run; None when the run was a usage error (bad params)."""
    from minigun.runner import RunSpec
    from minigun.runner.sample import sample_run

    try:
        spec = RunSpec(
            pipeline=target, params=params, grace=SAMPLE_GRACE, options={"progress": False}
        )
        measured = sample_run(spec, seconds, on_log=lambda line: _relay(line))
    except (ValueError, RuntimeError) as exc:
        raise BadInput(str(exc)) from None
    outcome = measured.outcome
    if outcome is not None and outcome.exit_code == ExitCode.USAGE:
        return None
    if not measured.readings:
        say("the sample run ended before its memory could be read; memory is estimated")
        return estimated_memory()
    return {
        "source": "measured",
        "runner_bytes": current_rss(),
        "base_bytes": measured.parent_rss,
        "child_bytes": measured.child_uss,
        "peak_bytes": measured.peak_total,
        "child_rss_bytes": measured.child_rss,
        "children_seen": measured.children_seen,
        "children_at_once": measured.children_at_once,
        "readings": measured.readings,
        # a run that ends by itself is sampled for as long as it ran
        "sample_seconds": round(min(seconds, outcome.duration), 2) if outcome else seconds,
        "sample_status": outcome.status if outcome is not None else None,
    }


def _relay(line: LogLine) -> None:
    # Everything the sample run prints goes to stderr: stdout is the plan.
    echo_line(line, "stderr")


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
        if stage.get("routes"):
            downstream += " (+ out.to)"
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
    lines += render_plan(plan)  # cores, memory, recommendation, warnings
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
