"""Async stages against a real HTTP server on loopback: an aiohttp server started by
the test on its own loop and thread, called through aiohttp with ``concurrency=200``
(and through httpx).

Counts are exact on both sides (what the pipeline got, what the server answered), the
server proves that 200 calls really were in flight at once, and at the end no task is
pending on the run's loop and no socket is left open (``ResourceWarning`` is an error,
and the process's TCP connections to the server are counted).
"""

from __future__ import annotations

import asyncio
import gc
import socket
import sys
import threading
import warnings
from collections import Counter
from collections.abc import Iterator
from typing import Any

import aiohttp
import httpx
import psutil
import pytest
from aiohttp import web

import minigun as mg
from support import assert_conserved

CONCURRENCY = 200


@pytest.fixture(autouse=True, params=["uvloop", "asyncio"])
def loop_flavour(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test here on both loops: uvloop (used when installed) and asyncio's own."""
    if request.param == "uvloop":
        pytest.importorskip("uvloop")
    monkeypatch.setenv("MINIGUN_UVLOOP", "1" if request.param == "uvloop" else "0")
    return str(request.param)


class Server:
    """An aiohttp app on 127.0.0.1, on a loop and thread of its own.

    ``/item/{i}`` answers ``{"i": i, "double": 2 i}``; its first ``wave`` requests are
    held until ``wave`` of them are in flight at once, so a client that never gets
    that far makes them time out (HTTP 504) instead of passing. ``/flaky/{i}`` fails
    (500) for i % 10 == 0 always and for i % 10 == 5 the first time. ``/hang/{i}`` does
    not answer for i % 50 == 0 until the server stops.
    """

    def __init__(self, wave: int) -> None:
        self.wave = wave
        self.requests: Counter[str] = Counter()
        self.inside = 0
        self.peak = 0
        self.seen: Counter[int] = Counter()
        self.loop = asyncio.new_event_loop()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self._thread = threading.Thread(target=self.loop.run_forever, name="test-http-server")
        self._runner: web.AppRunner | None = None

    async def _setup(self) -> None:
        self.wave_full = asyncio.Event()
        self.stopping = asyncio.Event()
        app = web.Application()
        app.router.add_get("/item/{i}", self.item)
        app.router.add_get("/flaky/{i}", self.flaky)
        app.router.add_get("/hang/{i}", self.hang)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.SockSite(self._runner, self.sock, backlog=1024).start()

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._setup(), self.loop).result(30)

    def stop(self) -> None:
        async def down() -> None:
            self.stopping.set()
            assert self._runner is not None
            await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(down(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(30)
        self.loop.close()
        self.sock.close()

    async def item(self, request: web.Request) -> web.Response:
        i = int(request.match_info["i"])
        self.requests["item"] += 1
        self.seen[i] += 1
        self.inside += 1
        self.peak = max(self.peak, self.inside)
        try:
            if not self.wave_full.is_set():
                if self.inside >= self.wave:
                    self.wave_full.set()
                else:
                    try:
                        await asyncio.wait_for(self.wave_full.wait(), 60)
                    except asyncio.TimeoutError:
                        return web.json_response({"error": "wave never filled"}, status=504)
            await asyncio.sleep(0.002)
            return web.json_response({"i": i, "double": 2 * i})
        finally:
            self.inside -= 1

    async def flaky(self, request: web.Request) -> web.Response:
        i = int(request.match_info["i"])
        self.requests["flaky"] += 1
        self.seen[i] += 1
        if i % 10 == 0 or (i % 10 == 5 and self.seen[i] == 1):
            return web.json_response({"error": "flaky"}, status=500)
        return web.json_response({"i": i})

    async def hang(self, request: web.Request) -> web.Response:
        i = int(request.match_info["i"])
        self.requests["hang"] += 1
        if i % 50 == 0:
            await self.stopping.wait()
        return web.json_response({"i": i})


@pytest.fixture
def server() -> Iterator[Server]:
    srv = Server(wave=CONCURRENCY)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def _client_sockets(port: int) -> list[Any]:
    """This process's TCP connections *to* the server (its own sockets excluded)."""
    return [
        c
        for c in psutil.Process().net_connections(kind="tcp")
        if c.raddr and c.raddr.port == port and c.laddr.port != port
    ]


class Leaks:
    """Unraisable exceptions (``ResourceWarning`` turned into errors in ``__del__``)."""

    def __init__(self) -> None:
        self.caught: list[str] = []

    def hook(self, info: Any) -> None:
        self.caught.append(f"{info.exc_type.__name__}: {info.exc_value} ({info.object!r})")


@pytest.fixture
def no_leaks() -> Iterator[Leaks]:
    """Every ``ResourceWarning`` raised as an error; whatever a destructor raises is kept
    and fails the test (a socket, transport or loop nobody closed)."""
    leaks = Leaks()
    previous = sys.unraisablehook
    sys.unraisablehook = leaks.hook
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", ResourceWarning)
            yield leaks
            gc.collect()
    finally:
        sys.unraisablehook = previous
    assert not leaks.caught, leaks.caught


class Enrich(mg.Pipeline):
    """The issue's case: a client opened once on the run's loop, used by every call.

    ``client`` is ``"aiohttp"`` or ``"httpx"``. Both get a bigger pool than
    ``concurrency``, so that only the stage limits what is in flight.
    """

    concurrency = CONCURRENCY

    def __init__(
        self, base_url: str = "", n: int = 1000, path: str = "item", client: str = "aiohttp"
    ) -> None:
        self.base_url = base_url
        self.n = n
        self.path = path
        self.kind = client
        self.rows: list[dict[str, Any]] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self.client_closed = False

    @mg.before_run
    async def open_client(self):
        self.loop = asyncio.get_running_loop()
        if self.kind == "httpx":
            limits = httpx.Limits(max_connections=4 * CONCURRENCY)
            self.client = httpx.AsyncClient(base_url=self.base_url, limits=limits, timeout=60)
        else:
            connector = aiohttp.TCPConnector(limit=4 * CONCURRENCY)
            self.client = aiohttp.ClientSession(self.base_url, connector=connector)

    async def get(self, url: str) -> Any:
        if self.kind == "httpx":
            response = await self.client.get(url)
            response.raise_for_status()
            return response.json()
        async with self.client.get(url, raise_for_status=True) as response:
            return await response.json()

    @mg.producer
    def ids(self):
        yield from range(self.n)

    @mg.processor(retries=1, retry_delay=0, on_error="dead_letter")
    async def fetch(self, i):
        return await self.get(f"/{self.path}/{i}")

    @mg.consumer
    def save(self, row):
        self.rows.append(row)

    @mg.after_run
    async def close_client(self, result):
        if self.kind == "httpx":
            await self.client.aclose()
        else:
            await self.client.close()
        self.client_closed = True


def _loop_is_finished(p: Enrich) -> None:
    assert p.client_closed
    assert p.loop is not None and p.loop.is_closed()
    assert not asyncio.all_tasks(p.loop), "no task is left pending on the run's loop"


def test_200_calls_in_flight_through_aiohttp_with_exact_counts(
    server: Server, no_leaks: Leaks
) -> None:
    p = Enrich(f"http://127.0.0.1:{server.port}", n=2000)
    result = p.run()
    assert result.status == "succeeded", result.error_traceback
    assert not result.dead_letters, result.dead_letters[:3]
    assert sorted(r["i"] for r in p.rows) == list(range(2000))
    assert all(r["double"] == 2 * r["i"] for r in p.rows)
    assert server.requests["item"] == 2000 and set(server.seen.values()) == {1}
    assert server.peak == CONCURRENCY, "exactly `concurrency` calls were in flight at once"
    stage = result.stats.stages["fetch"]
    assert stage["workers"] == CONCURRENCY and stage["processed"] == 2000
    assert stage["retries"] == 0 and stage["latency_p99"] > 0
    assert_conserved(result)
    _loop_is_finished(p)
    assert _client_sockets(server.port) == []


@pytest.mark.parametrize("client", ["aiohttp", "httpx"])
def test_http_errors_are_retried_then_dead_lettered(
    server: Server, no_leaks: Leaks, client: str
) -> None:
    """httpx at 20 in flight: httpx 0.28's pool slows to about 50 calls a second
    with 200 connections on this loopback (aiohttp serves thousands), see
    benchmarks/async_io.py."""
    p = Enrich(f"http://127.0.0.1:{server.port}", n=500, path="flaky", client=client)
    result = p.run(concurrency=20 if client == "httpx" else CONCURRENCY)
    assert result.status == "succeeded"
    # 50 ids fail twice (dead letters), 50 fail once and then succeed, 400 succeed at once
    assert server.requests["flaky"] == 500 + 50 + 50
    assert sorted(d.item for d in result.dead_letters) == list(range(0, 500, 10))
    assert {d.attempts for d in result.dead_letters} == {2}
    assert all("500" in d.error for d in result.dead_letters)
    assert sorted(r["i"] for r in p.rows) == [i for i in range(500) if i % 10]
    stage = result.stats.stages["fetch"]
    assert stage["retries"] == 100 and stage["dead_letters"] == 50
    assert_conserved(result)
    _loop_is_finished(p)
    assert _client_sockets(server.port) == []


class Hanging(Enrich):
    @mg.processor(timeout=5.0, on_error="dead_letter")
    async def fetch(self, i):
        return await self.get(f"/hang/{i}")


def test_timed_out_calls_are_cancelled_and_leave_no_socket(server: Server, no_leaks: Leaks) -> None:
    p = Hanging(f"http://127.0.0.1:{server.port}", n=300)
    result = p.run()
    assert result.status == "succeeded"
    assert sorted(d.item for d in result.dead_letters) == list(range(0, 300, 50))
    assert all("ItemTimeout" in d.error for d in result.dead_letters)
    assert len(p.rows) == 300 - 6
    assert server.requests["hang"] == 300
    assert_conserved(result)
    _loop_is_finished(p)
    # the cancelled requests closed their connections instead of leaking them
    assert _client_sockets(server.port) == []
