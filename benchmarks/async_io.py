"""Async stages against their peers: many slow calls with a fixed number in flight.

Two workloads, each ``--calls`` calls (default 10,000) with ``--in-flight`` (500) in
flight at once:

- *sleep*: each call is ``await asyncio.sleep(0.02)`` (time.sleep on threads), so
  the figure is the engine's own overhead on top of pure waiting;
- *http*: each call is a GET to a real aiohttp server on loopback, run in a
  process of its own, that answers after ``asyncio.sleep(0.02)``; clients are
  aiohttp (async contenders) and ``http.client`` (threads).

Contenders, in the same run, their order rotated every round: minigun (a plain
producer -> an ``async def`` processor with ``concurrency`` -> a plain consumer), a
hand-written ``asyncio.gather`` over a ``Semaphore``, ``aiostream``'s
``map(task_limit=...)``, ``pypeln.task.map(workers=...)`` and a minigun thread stage
with 16 threads. Every async contender runs on uvloop and on asyncio's own loop;
minigun is compared with each peer on the same loop. The thread stage makes
``--thread-calls`` calls (default 2,000: at 16 threads of 20 ms it runs 800 calls a
second whatever the count, so only its throughput is compared). Figures are medians
of ``--repeat`` runs (default 5).

    python benchmarks/async_io.py [--calls 10000] [--in-flight 500] [--repeat 5] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import os
import socket
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import minigun as mg

DELAY = 0.02
THREADS = 16

# --------------------------------------------------------------------------- loops


def new_loop(flavour: str) -> asyncio.AbstractEventLoop:
    if flavour == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run_on(flavour: str, main: Callable[[], Awaitable[int]]) -> int:
    loop = new_loop(flavour)
    try:
        return loop.run_until_complete(main())
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


# --------------------------------------------------------------------------- calls


class Http:
    """The loopback server (its own process) and the clients' view of it."""

    SERVER = textwrap.dedent(
        """
        import asyncio, socket, sys
        import uvloop
        from aiohttp import web

        async def item(request):
            await asyncio.sleep({delay})
            return web.json_response({{"i": int(request.match_info["i"])}})

        async def main():
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", 0))
            app = web.Application()
            app.router.add_get("/item/{{i}}", item)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.SockSite(runner, sock, backlog=4096).start()
            print(sock.getsockname()[1], flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)

        uvloop.run(main())
        """
    ).format(delay=DELAY)

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", self.SERVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())
        self.base = f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(30)


class Calls:
    """What one call is, for async contenders (``open``/``call``/``close`` on the
    contender's loop) and for threads (``call_blocking``)."""

    def __init__(self, http: Http | None, in_flight: int) -> None:
        self.http = http
        self.in_flight = in_flight
        self.session: Any = None
        self._local = threading.local()

    async def open(self) -> None:
        if self.http is not None:
            import aiohttp

            connector = aiohttp.TCPConnector(limit=self.in_flight)
            self.session = aiohttp.ClientSession(self.http.base, connector=connector)

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None

    async def call(self, i: int) -> int:
        if self.http is None:
            await asyncio.sleep(DELAY)
            return i
        async with self.session.get(f"/item/{i}") as response:
            return int((await response.json())["i"])

    def call_blocking(self, i: int) -> int:
        if self.http is None:
            time.sleep(DELAY)
            return i
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = http.client.HTTPConnection("127.0.0.1", self.http.port)
        conn.request("GET", f"/item/{i}")
        response = conn.getresponse()
        body = response.read()
        return int(body.split(b":")[1].strip(b" }"))


# --------------------------------------------------------------------------- contenders


def gather_semaphore(calls: Calls, n: int, flavour: str) -> int:
    """The hand-written baseline: one coroutine per call, a semaphore, gather."""

    async def main() -> int:
        await calls.open()
        sem = asyncio.Semaphore(calls.in_flight)

        async def one(i: int) -> int:
            async with sem:
                return await calls.call(i)

        try:
            return len(await asyncio.gather(*(one(i) for i in range(n))))
        finally:
            await calls.close()

    return run_on(flavour, main)


def aiostream_map(calls: Calls, n: int, flavour: str) -> int:
    from aiostream import stream

    async def main() -> int:
        await calls.open()
        try:
            xs = stream.map(stream.iterate(range(n)), calls.call, task_limit=calls.in_flight)
            count = 0
            async with xs.stream() as results:
                async for _ in results:
                    count += 1
            return count
        finally:
            await calls.close()

    return run_on(flavour, main)


def pypeln_task(calls: Calls, n: int, flavour: str) -> int:
    import pypeln as pl

    async def main() -> int:
        await calls.open()
        try:
            results = await pl.task.map(calls.call, range(n), workers=calls.in_flight)
            return len(results)
        finally:
            await calls.close()

    return run_on(flavour, main)


class AsyncStage(mg.Pipeline):
    def __init__(self, calls: Calls | None = None, n: int = 0) -> None:
        self.calls = calls
        self.n = n
        self.count = 0

    @mg.before_run
    async def open(self):
        assert self.calls is not None
        await self.calls.open()

    @mg.producer
    def ids(self):
        return range(self.n)

    @mg.processor
    async def call(self, i):
        assert self.calls is not None
        return await self.calls.call(i)

    @mg.consumer
    def count_it(self, x):
        self.count += 1

    @mg.after_run
    async def close(self, result):
        assert self.calls is not None
        await self.calls.close()


def minigun_async(calls: Calls, n: int, flavour: str) -> int:
    os.environ["MINIGUN_UVLOOP"] = "1" if flavour == "uvloop" else "0"
    p = AsyncStage(calls, n)
    result = p.run(concurrency=calls.in_flight)
    assert result.ok, result.error_traceback
    return p.count


class ThreadStage(mg.Pipeline):
    def __init__(self, calls: Calls | None = None, n: int = 0) -> None:
        self.calls = calls
        self.n = n
        self.count = 0

    @mg.producer
    def ids(self):
        return range(self.n)

    @mg.processor(threads=THREADS)
    def call(self, i):
        assert self.calls is not None
        return self.calls.call_blocking(i)

    @mg.consumer
    def count_it(self, x):
        self.count += 1


def minigun_threads(calls: Calls, n: int, flavour: str) -> int:
    p = ThreadStage(calls, n)
    result = p.run()
    assert result.ok, result.error_traceback
    return p.count


# --------------------------------------------------------------------------- measuring

Contender = tuple[str, Callable[[Calls, int, str], int], str, bool]


def contenders(flavours: list[str]) -> list[Contender]:
    """(label, function, loop flavour, is the thread stage)."""
    out: list[Contender] = []
    for flavour in flavours:
        out += [
            (f"minigun async ({flavour})", minigun_async, flavour, False),
            (f"gather + Semaphore ({flavour})", gather_semaphore, flavour, False),
            (f"aiostream map ({flavour})", aiostream_map, flavour, False),
            (f"pypeln.task ({flavour})", pypeln_task, flavour, False),
        ]
    out.append((f"minigun thread x{THREADS}", minigun_threads, "-", True))
    return out


def measure(
    workload: str, n: int, thread_n: int, in_flight: int, repeat: int, flavours: list[str]
) -> dict[str, float]:
    """Median calls per second of every contender, order rotated every round."""
    http = Http() if workload == "http" else None
    try:
        calls = Calls(http, in_flight)
        entries = contenders(flavours)
        samples: dict[str, list[float]] = {label: [] for label, *_ in entries}
        for round_ in range(repeat):
            shift = round_ % len(entries)
            for label, fn, flavour, threads in entries[shift:] + entries[:shift]:
                count = thread_n if threads else n
                started = time.perf_counter()
                got = fn(calls, count, flavour)
                elapsed = time.perf_counter() - started
                assert got == count, (label, got, count)
                samples[label].append(count / elapsed)
        return {label: statistics.median(rates) for label, rates in samples.items()}
    finally:
        if http is not None:
            http.close()


def report(workload: str, rates: dict[str, float], n: int, in_flight: int, repeat: int) -> None:
    print(
        f"\n{workload}: {n:,} calls of {DELAY * 1000:g} ms, {in_flight} in flight;"
        f" median of {repeat} runs"
    )
    print(f"{'contender':<30}{'calls/s':>10}{'time (s)':>10}{'minigun is':>14}")
    for label, rate in rates.items():
        flavour = label[label.find("(") + 1 : label.find(")")] if "(" in label else "uvloop"
        mine = rates.get(f"minigun async ({flavour})") or max(
            v for k, v in rates.items() if k.startswith("minigun async")
        )
        ratio = "" if label.startswith("minigun async") else f"{mine / rate:.2f}x"
        print(f"{label:<30}{rate:>10,.0f}{n / rate:>10.3f}{ratio:>14}")
    if "minigun async (uvloop)" in rates and "minigun async (asyncio)" in rates:
        gain = rates["minigun async (uvloop)"] / rates["minigun async (asyncio)"]
        print(f"uvloop vs asyncio's loop, minigun async: {gain:.2f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--thread-calls", type=int, default=2_000)
    parser.add_argument("--in-flight", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--workload", choices=["sleep", "http", "both"], default="both")
    parser.add_argument("--quick", action="store_true", help="2,000 calls, 3 runs")
    args = parser.parse_args(argv)
    n, thread_n, repeat = args.calls, args.thread_calls, args.repeat
    if args.quick:
        n, thread_n, repeat = 2_000, 400, 3
    try:
        import uvloop  # noqa: F401

        flavours = ["uvloop", "asyncio"]
    except ImportError:
        flavours = ["asyncio"]
    socket.setdefaulttimeout(60)
    workloads = ["sleep", "http"] if args.workload == "both" else [args.workload]
    for workload in workloads:
        rates = measure(workload, n, thread_n, args.in_flight, repeat, flavours)
        report(workload, rates, n, args.in_flight, repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
