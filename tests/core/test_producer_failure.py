"""A producer that raises loses nothing it already yielded (finding 4).

Before: 50 yielded -> 31 consumed, 200 -> 127, 500 -> 255 on threads (0 of 50
inline): the chunk being pulled when the source raised was never handed over.
"""

from __future__ import annotations

import threading

import pytest

import minigun as mg
from support import assert_conserved


class SourceBroke(RuntimeError):
    pass


def _raising_after(n: int, shape: str, routed: bool = False) -> mg.Pipeline:
    class P(mg.Pipeline):
        def __init__(self) -> None:
            self.consumed: list[int] = []
            self.lock = threading.Lock()

        if shape == "iter":

            @mg.producer
            def src(self):
                yield from range(n)
                raise SourceBroke(f"after {n}")

        else:

            @mg.producer
            def src(self, out):
                for i in range(n):
                    if routed:
                        out.to("sink").emit(i)
                    else:
                        out.emit(i)
                raise SourceBroke(f"after {n}")

        @mg.processor
        def work(self, x):
            return x

        @mg.consumer
        def sink(self, x):
            with self.lock:
                self.consumed.append(x)

    return P()


@pytest.mark.parametrize("execution", ["inline", "thread"])
@pytest.mark.parametrize("n", [1, 50, 200, 500, 1000])
def test_items_yielded_before_the_error_are_produced_and_consumed(execution: str, n: int) -> None:
    p = _raising_after(n, "iter")
    result = p.run(execution=execution)
    assert result.status == "failed" and result.exit_code == mg.ExitCode.FAILED
    assert isinstance(result.error, SourceBroke) and result.error_stage == "src"
    assert result.stats.total_produced == n
    assert sorted(p.consumed) == list(range(n))
    assert result.stats.total_consumed == n
    assert_conserved(result)


@pytest.mark.parametrize("execution", ["inline", "thread"])
@pytest.mark.parametrize("routed", [False, True])
def test_items_emitted_before_an_out_producer_raises_are_delivered(
    execution: str, routed: bool
) -> None:
    p = _raising_after(300, "out", routed=routed)
    result = p.run(execution=execution)
    assert result.status == "failed" and isinstance(result.error, SourceBroke)
    assert result.stats.total_produced == 300
    assert sorted(p.consumed) == list(range(300))


def test_a_producer_that_raises_at_once_produces_nothing() -> None:
    p = _raising_after(0, "iter")
    result = p.run(execution="thread")
    assert result.status == "failed" and result.stats.total_produced == 0
