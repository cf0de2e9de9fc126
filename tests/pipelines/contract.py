"""One pipeline per exit code of the contract, plus the long-running ones the
timeout, cancel and signal tests need.

Pipelines that the tests must catch mid-run write a "ready" file (pid, process
group, session and any helper pids as JSON) once they are in the state under test;
the tests wait for that file instead of sleeping a guessed amount.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import minigun as mg


def _announce(path: str | None, **extra: object) -> None:
    """Write the ready file atomically: the test polls for it."""
    if not path:
        return
    info = {"pid": os.getpid(), "pgid": os.getpgrp(), "sid": os.getsid(0), **extra}
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as fh:
        json.dump(info, fh)
    os.replace(tmp, path)


class Noop(mg.Pipeline):
    """The cheapest real pipeline: one producer, one item, nothing else."""

    @mg.producer
    def one(self):
        yield 1

    @mg.consumer
    def sink(self, x):
        pass


class Echo(mg.Pipeline):
    """Prints its params as JSON with their Python types, so -p parsing can be checked."""

    def __init__(self, **params: object) -> None:
        self.params = params

    @mg.producer
    def show(self):
        print(json.dumps({k: [v, type(v).__name__] for k, v in sorted(self.params.items())}))
        yield 1

    @mg.consumer
    def sink(self, x):
        pass


class Succeed(mg.Pipeline):
    """Exit 0: squares ``n`` numbers and prints them."""

    def __init__(self, n: int = 3) -> None:
        self.n = n

    @mg.producer
    def numbers(self):
        yield from range(self.n)

    @mg.processor
    def square(self, x):
        return x * x

    @mg.consumer
    def show(self, x):
        print(f"item {x}", flush=True)


class Fail(mg.Pipeline):
    """Exit 1: a stage raises."""

    @mg.producer
    def numbers(self):
        yield from range(3)

    @mg.consumer
    def explode(self, x):
        raise RuntimeError(f"boom on {x}")


class Chatty(mg.Pipeline):
    """Exit 0, after saying things on every channel a pipeline has."""

    @mg.producer
    def numbers(self):
        import logging
        import sys
        import traceback

        print("printed", flush=True)
        print("warned", file=sys.stderr, flush=True)
        logging.getLogger("chatty").info("logged at info")
        logging.getLogger("chatty").warning("logged at warning")
        try:
            raise ValueError("printed traceback")
        except ValueError:
            traceback.print_exc()
        print("after the traceback", file=sys.stderr, flush=True)
        yield 1

    @mg.consumer
    def sink(self, x):
        pass


class BadDefinition(mg.Pipeline):
    """Exit 2: a consumer declared with outgoing edges is an invalid definition."""

    @mg.producer
    def numbers(self):
        yield 1

    @mg.consumer(to="nowhere")
    def sink(self, x):
        pass


class Partial(mg.Pipeline):
    """Exit 3: more dead letters than ``max_dead_letters`` (0)."""

    max_dead_letters = 0

    @mg.producer
    def numbers(self):
        yield from range(4)

    @mg.consumer(on_error="dead_letter")
    def picky(self, x):
        if x % 2:
            raise ValueError(f"odd {x}")


class Transient(mg.Pipeline):
    """Exit 75: ``mg.TransientError``."""

    @mg.producer
    def numbers(self):
        raise mg.TransientError("upstream not ready")
        yield  # pragma: no cover - makes this a generator

    @mg.consumer
    def sink(self, x):
        pass


class Skipped(mg.Pipeline):
    """Exit 99: ``mg.Skip``."""

    @mg.producer
    def numbers(self):
        raise mg.Skip("nothing new today")
        yield  # pragma: no cover

    @mg.consumer
    def sink(self, x):
        pass


class SelfKill(mg.Pipeline):
    """Exit 137: the process is SIGKILLed (as by the OOM killer) mid-run."""

    @mg.producer
    def numbers(self):
        yield 1

    @mg.consumer
    def die(self, x):
        os.kill(os.getpid(), signal.SIGKILL)


class FlakyOnce(mg.Pipeline):
    """Fails (exit 1) on the first attempt, succeeds once ``marker`` exists."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    @mg.producer
    def numbers(self):
        if not os.path.exists(self.marker):
            with open(self.marker, "w") as fh:
                fh.write("first attempt failed here\n")
            raise RuntimeError("first attempt fails")
        yield 1

    @mg.consumer
    def sink(self, x):
        pass


class Endless(mg.Pipeline):
    """Produces forever until stopped; used for SIGTERM/SIGINT/cancel (drains cleanly)."""

    def __init__(self, ready: str | None = None) -> None:
        self.ready = ready

    @mg.producer
    def ticks(self):
        n = 0
        while True:
            if n == 5:
                _announce(self.ready)
                print("ready", flush=True)
            yield n
            n += 1
            time.sleep(0.01)

    @mg.consumer
    def sink(self, x):
        pass


def _spawn_sleepers(count: int, ignore_sigterm: bool = False) -> list[subprocess.Popen]:
    """Start ``count`` helpers sleeping a minute; return once each says it is set up."""
    setup = "signal.signal(signal.SIGTERM, signal.SIG_IGN); " if ignore_sigterm else ""
    code = f"import signal, time; {setup}print('up', flush=True); time.sleep(60)"
    helpers = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE) for _ in range(count)
    ]
    for helper in helpers:
        assert helper.stdout is not None
        helper.stdout.readline()
    return helpers


class SleepyWithChildren(mg.Pipeline):
    """A stage that starts ``sleepers`` helper processes and then sleeps for a minute.

    Stands in for fork executors when testing that a timeout or cancel reaches every
    process of the group, not only the leader. With ``ignore_sigterm`` the helpers
    ignore SIGTERM, so only the SIGKILL after ``grace`` can end them.
    """

    def __init__(self, ready: str, sleepers: int = 2, ignore_sigterm: bool = False) -> None:
        self.ready = ready
        self.sleepers = sleepers
        self.ignore_sigterm = ignore_sigterm

    @mg.producer
    def one(self):
        yield 1

    @mg.consumer
    def sleep(self, x):
        helpers = _spawn_sleepers(self.sleepers, self.ignore_sigterm)
        _announce(self.ready, helpers=[p.pid for p in helpers])
        time.sleep(60)


def _sleepy_fork(execution: str) -> type[mg.Pipeline]:
    class SleepyFork(mg.Pipeline):
        def __init__(self, ready: str) -> None:
            self.ready = ready

        @mg.producer
        def items(self):
            yield from range(2)

        @mg.processor(execution=execution, processes=2)
        def slow(self, x):
            _announce(f"{self.ready}.{x}")
            time.sleep(60)
            return x

        @mg.consumer
        def sink(self, x):
            pass

    name = "Sleepy" + execution.title().replace("_", "")
    SleepyFork.__name__ = SleepyFork.__qualname__ = name
    SleepyFork.__doc__ = (
        f"A {execution} stage whose children sleep a minute (announce ``ready.<item>``)."
    )
    return SleepyFork


SleepyCowFork = _sleepy_fork("cow_fork")
SleepyIpcFork = _sleepy_fork("ipc_fork")


class _EndlessInto(mg.Pipeline):
    """An endless producer, for pipelines that must have a full inbox when stopped;
    ``ready`` is the file a subclass's stage announces itself in."""

    def __init__(self, ready: str) -> None:
        self.ready = ready

    @mg.producer
    def items(self):
        n = 0
        while True:
            yield n
            n += 1


class SlowDrain(_EndlessInto):
    """An endless producer into a slow consumer that prints each item it finishes.

    Stopped, it has a full inbox (``queue_size``) to drain at 0.25 s an item, printing
    as it goes: what a platform should see arriving while a pipeline drains.
    """

    queue_size = 8

    @mg.consumer
    def slow(self, x):
        time.sleep(0.25)
        print(f"consumed {x}", flush=True)
        if x == 2:
            _announce(self.ready)


class ImportAudit(mg.Pipeline):
    """Prints which of the heavy modules the child has loaded by the time it runs."""

    @mg.producer
    def one(self):
        heavy = ("click", "rich", "dask", "airflow", "prefect", "dagster", "luigi")
        print(json.dumps(sorted(name for name in heavy if name in sys.modules)), flush=True)
        yield 1

    @mg.consumer
    def sink(self, x):
        pass


class SlowInit(mg.Pipeline):
    """Announces itself from ``__init__`` and then stays there for a minute."""

    def __init__(self, ready: str) -> None:
        _announce(ready)
        time.sleep(60)

    @mg.producer
    def one(self):
        yield 1

    @mg.consumer
    def sink(self, x):
        pass


class DrainingChatter(_EndlessInto):
    """An endless producer into slow ``ipc_fork`` workers that write to stderr.

    Once its workers are busy (``ready`` written) the inbox is full, so a stop has a
    long drain ahead; every item prints lines on stderr, which nobody may be reading.
    """

    queue_size = 4

    @mg.processor(execution="ipc_fork", processes=2, chunk=1)
    def slow(self, x):
        if x == 3:
            _announce(self.ready)
        for _ in range(50):
            try:  # like a logging handler: a closed stderr does not fail the item
                print(f"item {x}: working " + "." * 200, file=sys.stderr, flush=True)
            except OSError:
                pass
        time.sleep(2)
        return x

    @mg.consumer
    def sink(self, x):
        pass


class Handshake(mg.Pipeline):
    """Prints a line, then waits for ``gate`` to exist: only a live ``on_log`` lets it end."""

    def __init__(self, gate: str) -> None:
        self.gate = gate

    @mg.producer
    def wait_for_gate(self):
        print("waiting-for-gate", flush=True)
        deadline = time.monotonic() + 60
        while not os.path.exists(self.gate):
            if time.monotonic() > deadline:
                raise RuntimeError("gate never opened: on_log did not see the line in time")
            time.sleep(0.01)
        yield 1

    @mg.consumer
    def sink(self, x):
        pass


class Picky(mg.Pipeline):
    """Dead-letters odd items while ``strict``; prints every item it accepts (for replay)."""

    def __init__(self, strict: bool = True) -> None:
        self.strict = strict

    @mg.producer
    def numbers(self):
        yield from range(6)

    @mg.consumer(on_error="dead_letter")
    def accept(self, x):
        if self.strict and x % 2:
            raise ValueError(f"odd {x}")
        print(f"accepted {x}", flush=True)


class Counter(mg.Pipeline):
    """Appends one line to ``log`` per run; fails while ``fail`` exists (worker tests)."""

    def __init__(self, log: str, fail: str = "") -> None:
        self.log = log
        self.fail = fail

    @mg.producer
    def numbers(self):
        with open(self.log, "a") as fh:
            fh.write(f"{os.getpid()}\n")
        if self.fail and os.path.exists(self.fail):
            raise RuntimeError("failing on purpose")
        yield 1

    @mg.consumer
    def sink(self, x):
        pass
