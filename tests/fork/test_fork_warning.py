"""Python 3.12+ warns on every fork from a multi-threaded process. The engine forks
from a threaded parent by design (``core/executors/_fork_safety.py`` is the answer to
that warning), so it silences that one warning around its own forks, and nothing else:
not at import, not for the host's own forks."""

from __future__ import annotations

import subprocess
import sys
import warnings
from typing import Any

import pytest

import minigun as mg

FORK_WARNING = "use of fork() may lead to deadlocks"
warns_on_threaded_fork = pytest.mark.skipif(
    sys.version_info < (3, 12), reason="Python 3.12+ warns on a fork from threads"
)


def _python(code: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()


def test_importing_the_engine_leaves_the_warnings_filters_alone() -> None:
    code = (
        "import warnings; before = list(warnings.filters)\n"
        "import minigun\n"
        "from minigun.core.executors import _fork_safety, cow_fork, ipc_fork\n"
        "print(warnings.filters == before)"
    )
    assert _python(code) == "True"


@warns_on_threaded_fork
@pytest.mark.parametrize("kind", ["cow_fork", "ipc_fork"])
def test_the_engine_forking_from_threads_does_not_warn(kind: str) -> None:
    class Threaded(mg.Pipeline):
        @mg.producer
        def numbers(self) -> Any:
            return range(20)

        @mg.processor(threads=4)  # the parent is multi-threaded when it forks
        def tag(self, x: int) -> int:
            return x

        @mg.processor(execution=kind, processes=2, chunk=1)
        def work(self, x: int) -> int:
            return x

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        before = list(warnings.filters)
        result = Threaded().run()
        after = list(warnings.filters)
    assert result.status == "succeeded", result.error
    assert not [w for w in caught if FORK_WARNING in str(w.message)]
    assert after == before


@warns_on_threaded_fork
def test_a_fork_of_the_host_still_warns_after_the_engine_forked() -> None:
    code = """
import os, threading, warnings
import minigun as mg

class P(mg.Pipeline):
    @mg.producer
    def numbers(self):
        return range(4)

    @mg.processor(execution="cow_fork", processes=2)
    def work(self, x):
        return x

P().run()
release = threading.Event()
thread = threading.Thread(target=release.wait)
thread.start()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
release.set()
print(any("use of fork() may lead to deadlocks" in str(w.message) for w in caught))
"""
    assert _python(code) == "True"
