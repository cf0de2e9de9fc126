"""``mg.Pipeline``: the base class users subclass, and its ``run()``/``replay()``."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, Literal, overload

from minigun.core.dead_letters import DeadLetter, ReplayError, read_dead_letters
from minigun.core.engine import Run, RunHandle
from minigun.core.result import RunResult

__all__ = ["Pipeline"]


def _default_dead_letter_dir(overrides: dict[str, Any]) -> str | os.PathLike[str] | None:
    """Take ``default_dead_letter_dir`` out of the run overrides (it is no setting)."""
    from minigun.core.errors import PipelineDefinitionError

    value = overrides.pop("default_dead_letter_dir", None)
    if value is not None and not isinstance(value, (str, os.PathLike)):
        raise PipelineDefinitionError(
            f"run(): default_dead_letter_dir={value!r} is invalid; use a directory path"
        )
    return value


class Pipeline:
    """Subclass me and mark methods with ``@mg.producer``/``@mg.processor``/``@mg.consumer``.

    Pipeline-level settings are class attributes (None = not set), each overridable
    per run: ``run(execution="inline", max_processes=2)``. Subclasses need not call
    ``super().__init__()``.
    """

    execution: str | None = None
    max_threads: int | None = None
    max_processes: int | None = None
    queue_size: int | None = None
    dead_letter_dir: str | os.PathLike[str] | None = None
    max_dead_letters: int | None = None
    stats: bool | None = None
    #: Items in flight per ``async def`` stage (default 100); a stage's own wins over it.
    concurrency: int | None = None
    #: The Dask scheduler of this pipeline's ``execution="dask"`` stages (None: a
    #: ``LocalCluster`` started for the run); see ``minigun.core.executors.dask``.
    dask_address: str | None = None

    @overload
    def run(self, *, background: Literal[False] = False, **overrides: Any) -> RunResult: ...
    @overload
    def run(self, *, background: Literal[True], **overrides: Any) -> RunHandle: ...
    def run(self, *, background: bool = False, **overrides: Any) -> RunResult | RunHandle:
        """Validate the graph, then run it; in the background, return a handle instead.

        ``overrides``: ``execution``, ``max_threads``, ``max_processes``,
        ``queue_size``, ``dead_letter_dir``, ``max_dead_letters``, ``stats``,
        ``concurrency``, ``dask_address``. Raises
        ``mg.PipelineDefinitionError`` before anything runs if the definition is bad.

        ``default_dead_letter_dir`` is where dead letters go when nothing else says
        (no ``dead_letter_dir`` argument, no ``MINIGUN_DEAD_LETTER_DIR``, no class
        attribute): the CLI, the runner and the adapters pass
        ``minigun.core.dead_letters.default_directory()`` so that a run they start
        never keeps its dead letters only in memory. A plain ``run()`` passes none.
        """
        from minigun.core.graph import build_graph

        default_dir = _default_dead_letter_dir(overrides)
        run = Run(self, build_graph(self, **overrides), default_dead_letter_dir=default_dir)
        if background:
            return RunHandle(run)
        return run.execute()

    def replay(
        self,
        source: str | os.PathLike[str] | Iterable[DeadLetter],
        *,
        background: bool = False,
        skip_unfaithful: bool = False,
        **overrides: Any,
    ) -> RunResult | RunHandle:
        """Feed dead letters back into the stages that failed them (producers are not run).

        ``source`` is a dead-letter JSON Lines file or an iterable of ``mg.DeadLetter``.
        What fails again is dead-lettered again (to ``dead_letter_dir``, else
        ``default_dead_letter_dir``) and the result follows the usual contract.

        Raises :class:`~minigun.core.dead_letters.ReplayError` (a usage error, exit 2)
        before anything runs when a letter names a stage the pipeline does not have
        or a producer, or holds an item that was not recorded faithfully (only its
        repr is known; feeding that would change the item). With
        ``skip_unfaithful=True`` those are left out, each logged as a warning.
        """
        from minigun.core.graph import build_graph

        letters = (
            read_dead_letters(source) if isinstance(source, (str, os.PathLike)) else list(source)
        )
        default_dir = _default_dead_letter_dir(overrides)
        graph = build_graph(self, _seeded=True, **overrides)
        letters = _replayable(type(self).__name__, graph.nodes, letters, skip_unfaithful)
        seeds: dict[str, list[Any]] = {}
        for letter in letters:
            seeds.setdefault(letter.stage, []).append(letter.item)
        run = Run(self, graph, seeds=seeds, default_dead_letter_dir=default_dir)
        if background:
            return RunHandle(run)
        return run.execute()


def _replayable(
    cls_name: str, nodes: dict[str, Any], letters: list[DeadLetter], skip_unfaithful: bool
) -> list[DeadLetter]:
    """The letters to feed, after checking every one of them names a stage that takes items."""
    stages = [name for name, node in nodes.items() if node.kind != "producer"]
    for letter in letters:
        node = nodes.get(letter.stage)
        if node is None:
            import difflib

            close = difflib.get_close_matches(letter.stage, stages, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            n = sum(1 for d in letters if d.stage == letter.stage)
            raise ReplayError(
                f"replay: {n} dead letter(s) name stage {letter.stage!r}{hint}, which "
                f"{cls_name} does not have; its stages that take items are {', '.join(stages)}"
            )
        if node.kind == "producer":
            raise ReplayError(
                f"replay: dead letters name stage {letter.stage!r}, a producer of {cls_name}; "
                "a producer takes no items, so nothing can be fed back into it"
            )
    unfaithful = [letter for letter in letters if not letter.faithful]
    if not unfaithful:
        return letters
    if not skip_unfaithful:
        first = unfaithful[0]
        shown = str(first.item)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        raise ReplayError(
            f"replay: {len(unfaithful)} dead letter(s) hold an item that was not recorded "
            f"faithfully (first: stage {first.stage!r}, item {shown!r}: {first.reason}); "
            "feeding its repr would change the item; leave them out with skip_unfaithful=True"
            " (minigun replay --skip-unfaithful)"
        )
    import logging

    log = logging.getLogger("minigun.replay")
    for letter in unfaithful:
        log.warning(
            "replay: not replaying a dead letter of stage %r: its item was not recorded "
            "faithfully (%s): %.200s",
            letter.stage,
            letter.reason,
            letter.item,
        )
    return [letter for letter in letters if letter.faithful]
