"""A child started ahead of its spec, so that two interpreters start side by side.

An isolated run needs two Python processes, one after the other: the caller, which
must import its command line and parse it before it knows what to run, and the child,
which must start an interpreter and import the engine before it can run it. The child
learns what to run only from the first line of its stdin (see
:mod:`minigun.runner.protocol`), so nothing forces it to wait for the caller: started
first thing, with the interpreter, environment and working directory a run takes by
default, it imports while the caller parses, then blocks on the spec.

:func:`start_warm_child` does that; :meth:`WarmChild.claim` hands the child to the first
attempt when the spec asks for exactly that child (same argv, environment and working
directory) and ends it otherwise, and :meth:`WarmChild.discard` ends it unused (a usage
error, ``--help``). An unused warm child never runs user code: it has not been told a
target, and end-of-file on its stdin makes it end its group (see
:mod:`minigun.child.guard`). ``minigun run`` uses this; the adapters need not, as the
orchestrator's worker is already running when a task starts.
"""

from __future__ import annotations

import os

from minigun.runner.spawn import Spawned, child_command, child_environment, spawn

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["WarmChild", "start_warm_child"]


class WarmChild:
    """One child started ahead of its spec; claimed by one attempt or discarded."""

    def __init__(self, spawned: Spawned) -> None:
        self._spawned: Spawned | None = spawned

    @property
    def pid(self) -> int | None:
        """The child's pid while it is neither claimed nor discarded."""
        return self._spawned.proc.pid if self._spawned is not None else None

    def claim(
        self,
        argv: Sequence[str],
        env: Mapping[str, str] | None,
        cwd: str | os.PathLike[str] | None,
    ) -> Spawned | None:
        """The child, if it was started as ``argv``/``env``/``cwd`` ask; else end it.

        Either way the warm child is used up: a second claim returns ``None``.
        """
        spawned, self._spawned = self._spawned, None
        if spawned is None:
            return None
        if (
            tuple(argv) == spawned.argv
            and dict(env or {}) == dict(spawned.env or {})
            and _same_directory(cwd, spawned.cwd)
            and spawned.proc.poll() is None
        ):
            return spawned
        spawned.discard()
        return None

    def discard(self) -> None:
        """End the child if nobody claimed it. Safe to call more than once."""
        spawned, self._spawned = self._spawned, None
        if spawned is not None:
            spawned.discard()


def start_warm_child() -> WarmChild | None:
    """Start the child a default run takes, or ``None`` if it cannot be started now.

    Failing to start is not an error here: the attempt will start its own child and
    report why it cannot.
    """
    try:
        return WarmChild(spawn(child_command(), env=child_environment(), cwd=None))
    except OSError:
        return None


def _same_directory(
    wanted: str | os.PathLike[str] | None, started: str | os.PathLike[str] | None
) -> bool:
    if wanted is None or started is None:
        return wanted is None and started is None
    try:
        return os.path.samefile(wanted, started)
    except OSError:
        return False
