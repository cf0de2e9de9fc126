"""Flows served by ``python prefect_serve.py`` (``prefect.serve``) for the e2e env.

Loaded by Prefect from this file's path as each deployment's entrypoint, so it imports
nothing from the tests package.
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, serve

from minigun.adapters.prefect import minigun_task

PIPELINES = Path(__file__).with_name("pipelines.py")


@flow(name="mg-success")
def success(pgid_file: str) -> str:
    return minigun_task(f"{PIPELINES}:Succeeds")(pgid_file=pgid_file)["status"]


@flow(name="mg-skip")
def skip(pgid_file: str) -> str:
    # A flow reads the result JSON of a skipped run like any other (issue 9, item 6).
    return minigun_task(f"{PIPELINES}:Skips")(pgid_file=pgid_file)["status"]


@flow(name="mg-failure")
def failure(pgid_file: str) -> None:
    minigun_task(f"{PIPELINES}:Fails")(pgid_file=pgid_file)


@flow(name="mg-drain")
def drain(pgid_file: str, item_seconds: float = 25.0, grace: float | None = None) -> None:
    options = {} if grace is None else {"grace": grace}
    minigun_task(f"{PIPELINES}:Drains", **options)(pgid_file=pgid_file, item_seconds=item_seconds)


if __name__ == "__main__":
    serve(
        success.to_deployment("e2e"),
        skip.to_deployment("e2e"),
        failure.to_deployment("e2e"),
        drain.to_deployment("e2e"),
        limit=4,
        query_seconds=1,
        print_starting_message=True,
    )
