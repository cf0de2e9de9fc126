"""``mg.Pipeline``: the base class users subclass, and its ``run()``/``replay()``."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, Literal, overload

from minigun.core.dead_letters import DeadLetter, read_dead_letters
from minigun.core.engine import Run, RunHandle
from minigun.core.result import RunResult

__all__ = ["Pipeline"]


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

    @overload
    def run(self, *, background: Literal[False] = False, **overrides: Any) -> RunResult: ...
    @overload
    def run(self, *, background: Literal[True], **overrides: Any) -> RunHandle: ...
    def run(self, *, background: bool = False, **overrides: Any) -> RunResult | RunHandle:
        """Validate the graph, then run it; in the background, return a handle instead.

        ``overrides``: ``execution``, ``max_threads``, ``max_processes``,
        ``queue_size``, ``dead_letter_dir``, ``max_dead_letters``, ``stats``. Raises
        ``mg.PipelineDefinitionError`` before anything runs if the definition is bad.
        """
        from minigun.core.graph import build_graph

        run = Run(self, build_graph(self, **overrides))
        if background:
            return RunHandle(run)
        return run.execute()

    def replay(
        self,
        source: str | os.PathLike[str] | Iterable[DeadLetter],
        *,
        background: bool = False,
        **overrides: Any,
    ) -> RunResult | RunHandle:
        """Feed dead letters back into the stages that failed them (producers are not run).

        ``source`` is a dead-letter JSON Lines file or an iterable of ``mg.DeadLetter``.
        """
        from minigun.core.graph import build_graph

        letters = (
            read_dead_letters(source) if isinstance(source, (str, os.PathLike)) else list(source)
        )
        seeds: dict[str, list[Any]] = {}
        for letter in letters:
            seeds.setdefault(letter.stage, []).append(letter.item)
        run = Run(self, build_graph(self, _seeded=True, **overrides), seeds=seeds)
        if background:
            return RunHandle(run)
        return run.execute()
