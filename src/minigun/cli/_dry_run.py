"""``--dry-run`` of ``minigun run`` and ``minigun worker``: check everything, run nothing.

What deployment templates are checked with (``tests/deploy``), so it validates what a
real run would reject before its first item, with the same one-line error and exit
code 2: the runner options (a ``RunSpec`` is built), the target (imported, as the
run's child imports it), the params (converted by the ``__init__`` type hints and
passed to the constructor: **the pipeline's ``__init__`` runs**, because that is the
only way to know the constructor accepts them) and the graph with the run's overrides
(stage options, executors, routing). Nothing else of the pipeline runs: no
``before_run`` hook, no stage, no thread, no fork, no child process; the dead-letter
directory and the result file are not touched. The module-level code of the target
runs, as ``minigun inspect`` runs it.

Not checked, because only running finds them: whether a dask executor's package is
installed and its scheduler answers, and whether the metrics sinks can be reached.
"""

from __future__ import annotations

import os
from typing import Any

import click

from minigun.cli._errors import BadInput
from minigun.cli._params import instantiate

__all__ = ["DRY_RUN_HELP", "dry_run"]

DRY_RUN_HELP = (
    "Check without running: import TARGET, build the pipeline with its params (its"
    " __init__ runs; no hook, stage, thread or fork does), validate the graph and the"
    " options, print the resource plan. Exit 0 when valid, 2 otherwise."
)


def dry_run(
    target: str,
    params: dict[str, Any],
    overrides: dict[str, Any],
    runner_options: dict[str, Any],
) -> int:
    """Validate a run of ``target`` as :func:`minigun.runner.run_isolated` would start it,
    print ``target``'s resource plan under ``overrides``, return 0; raise a usage error
    (exit 2) for the first thing that is wrong."""
    from minigun.cli._plan import render_plan
    from minigun.cli.inspect import resource_plan
    from minigun.core.graph import build_graph
    from minigun.runner import RunSpec
    from minigun.targets import add_import_path, load_pipeline_class

    try:
        RunSpec(pipeline=target, params=params, **runner_options)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    add_import_path(os.getcwd())  # where the run's child finds a module target
    cls = load_pipeline_class(target)
    pipeline = instantiate(cls, params)
    graph = build_graph(pipeline, **{k: v for k, v in overrides.items() if v is not None})
    plan = resource_plan(graph)
    click.echo(f"dry run of {graph.pipeline}: target, params and graph are valid; nothing ran")
    click.echo("\n".join(render_plan(plan)))
    return 0
