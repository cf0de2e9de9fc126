"""A fork child publishes its progress once per window of items, not once per item.

When it dies inside a window of several items, nobody can be blamed yet: the window's
items go again one per chunk (each with a window of one), the items before the window
again as they always did (their results died with the child) and the ones after it
for the first time. A death that comes back then names its item exactly; one that
does not costs nobody an attempt.

To know where the windows are, the items reach the fork stage all at once (a batch of
all of them, exploded on a thread), the stage has one process and ``chunk=100``, and
windows are made as large as a chunk: chunks are then items [0, 100), [100, 200), ...
and every chunk sent after the first reply (the sizer has measured an item by then)
is a single window. Items 0-199 go before that reply (``chunk`` and two in flight on
ipc_fork; cow_fork's first child has [0, 100)), so item 250 sits in the window
[200, 300) on both executors.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import minigun as mg
from minigun.core.executors._fork_base import ForkExecutor
from minigun.core.executors.cow_fork import CowForkExecutor
from minigun.core.executors.ipc_fork import IpcForkExecutor
from support import assert_conserved

FORKS = ["cow_fork", "ipc_fork"]
N = 400
CRASH = 250
WINDOW = range(200, 300)  # the chunk, and the window, that holds CRASH


@pytest.fixture(autouse=True)
def windows_of_a_whole_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    for executor in (ForkExecutor, CowForkExecutor, IpcForkExecutor):
        monkeypatch.setattr(executor, "WINDOW_SECONDS", 1e9)
        monkeypatch.setattr(executor, "MAX_WINDOW", 10**6)


def first_time(marker: Path) -> bool:
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


def _run(kind: str, tmp_path: Path, crash_always: bool, **options: Any) -> tuple[Any, ...]:
    """Run N items through the fork stage; returns the result, the outputs and how many
    times the stage ran on each item (appended to a file by the children)."""
    log = tmp_path / "ran"
    seen: list[int] = []

    class Pipe(mg.Pipeline):
        @mg.producer
        def numbers(self) -> Any:
            yield from range(N)

        everything = mg.batch(N)

        @mg.processor
        def explode(self, rows: list[int]) -> Any:
            yield from rows  # into the fork stage's inbox in one go

        @mg.processor(execution=kind, processes=1, chunk=100, **options)
        def work(self, x: int) -> int:
            with open(log, "a") as f:
                f.write(f"{x}\n")
            if x == CRASH and (crash_always or first_time(tmp_path / "crashed")):
                os._exit(3)
            return x

        @mg.consumer
        def save(self, x: int) -> None:
            seen.append(x)

    result = Pipe().run()
    assert_conserved(result)
    ran = Counter(int(line) for line in log.read_text().split())
    return result, seen, ran


@pytest.mark.parametrize("kind", FORKS)
def test_a_death_inside_a_window_is_replayed_item_by_item_and_blames_its_item(
    kind: str, tmp_path: Path
) -> None:
    result, seen, ran = _run(kind, tmp_path, crash_always=True, on_error="dead_letter")
    assert result.status == "succeeded", result.error
    assert [d.item for d in result.dead_letters] == [CRASH]
    assert "exited with status 3" in result.dead_letters[0].error
    assert Counter(seen) == Counter(x for x in range(N) if x != CRASH)
    # The window's items before the crash ran again once, the crashing item once more
    # (alone: that is where it was blamed), the ones after it never ran twice.
    assert sorted(x for x, times in ran.items() if times == 2) == list(range(WINDOW[0], CRASH + 1))
    assert set(ran) == set(range(N)) and max(ran.values()) == 2
    work = result.stats.stages["work"]
    assert work["processed"] == N - 1 and work["retries"] == 0


@pytest.mark.parametrize("kind", FORKS)
def test_a_death_that_does_not_come_back_in_the_replay_costs_no_attempt(
    kind: str, tmp_path: Path
) -> None:
    """With no retries and ``on_error="raise"``, a death blamed on an item would fail the
    run; one inside a window that the replay gets through is not blamed on anybody."""
    result, seen, ran = _run(kind, tmp_path, crash_always=False)
    assert result.status == "succeeded", result.error
    assert sorted(seen) == list(range(N))
    assert sorted(x for x, times in ran.items() if times == 2) == list(range(WINDOW[0], CRASH + 1))
    assert result.stats.stages["work"]["retries"] == 0


@pytest.mark.parametrize("kind", FORKS)
def test_a_per_item_timeout_keeps_windows_of_one_item(kind: str, tmp_path: Path) -> None:
    """Stages with a timeout publish every item (their clock starts with it), so a death
    names its item at once: nothing is replayed, the item after it runs once."""
    result, seen, ran = _run(kind, tmp_path, crash_always=True, timeout=60, on_error="skip")
    assert result.status == "succeeded", result.error
    assert sorted(seen) == [x for x in range(N) if x != CRASH]
    assert sorted(x for x, times in ran.items() if times == 2) == list(range(WINDOW[0], CRASH))
    assert ran[CRASH] == 1
