"""``async def`` stages calling an HTTP API, many calls in flight on one event loop.

Run it (standard library only: no HTTP client package needed)::

    minigun run examples/async_api.py
    minigun run examples/async_api.py --concurrency 5      # fewer calls in flight

It shows the async executor: ``lookup`` is a coroutine, and the run keeps up to
``concurrency`` items of it in flight on one event loop -- 1,000 calls of 20 ms in well
under a second, with no thread per call and no ``gather`` plus semaphore beside the
pipeline. The client is opened once in an ``async def`` ``@mg.before_run`` hook and
closed in an ``async def`` ``@mg.after_run`` hook, both awaited on the run's own loop,
so every call of every item shares it (here a small keep-alive connection pool; with
httpx or aiohttp it would be their ``AsyncClient``/``ClientSession``, opened and closed
the same way).

The API is served by the example itself on 127.0.0.1 and a free port, from its own
thread and event loop (as a real service would be a process of its own), for the
length of the run. It answers ``GET /price/<sku>`` after 20 ms and counts the requests
it holds at once: the result line shows that peak, which ``concurrency`` bounds.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import minigun as mg

#: The API's answer time, in seconds.
API_LATENCY = 0.02


def price_of(sku: int) -> int:
    """The price the API answers for ``sku``, in cents (the example checks its sums)."""
    return 100 + sku * 37 % 9_900


class PriceApi:
    """A minimal HTTP/1.1 server on its own thread and loop: ``GET /price/<sku>``."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.peak = 0
        self.requests = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="price-api", daemon=True)

    def start(self) -> int:
        """Start serving; returns the port once it listens."""
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the price API did not start")
        return self.port

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join()

    def _serve(self) -> None:
        self._loop.run_until_complete(self._main())
        self._loop.close()

    async def _main(self) -> None:
        self._stopping = asyncio.Event()
        server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stopping.wait()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer requests on one keep-alive connection until the client closes it."""
        try:
            while request_line := await reader.readline():
                while (await reader.readline()).strip():  # headers: none needed here
                    pass
                self.requests += 1
                self.in_flight += 1
                self.peak = max(self.peak, self.in_flight)
                try:
                    await asyncio.sleep(API_LATENCY)
                finally:
                    self.in_flight -= 1
                _method, path, _version = request_line.decode().split()
                sku = path.rpartition("/")[2]
                if path.startswith("/price/") and sku.isdigit():
                    status, body = (
                        "200 OK",
                        json.dumps({"sku": int(sku), "cents": price_of(int(sku))}),
                    )
                else:
                    status, body = "404 Not Found", json.dumps({"error": "no such path"})
                data = body.encode()
                writer.write(
                    f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(data)}\r\n\r\n".encode()
                    + data
                )
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


class HttpClient:
    """A tiny async HTTP/1.1 client: a pool of keep-alive connections to one host.

    It must be used on one event loop -- the run's, which is why the pipeline opens it
    in an ``async def`` ``before_run`` hook.
    """

    def __init__(self, host: str, port: int, max_connections: int) -> None:
        self.host, self.port = host, port
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def get_json(self, path: str) -> Any:
        async with self._slots:
            if self._idle:
                reader, writer = self._idle.pop()
            else:
                reader, writer = await asyncio.open_connection(self.host, self.port)
            try:
                writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode())
                await writer.drain()
                status = (await reader.readline()).decode().split()[1]
                length = 0
                while header := (await reader.readline()).strip():
                    name, _, value = header.decode().partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                body = await reader.readexactly(length)
            except BaseException:
                writer.close()  # a half-read connection cannot be reused
                raise
            self._idle.append((reader, writer))
        if status != "200":
            raise RuntimeError(f"GET {path}: HTTP {status}")
        return json.loads(body)

    async def aclose(self) -> None:
        for _reader, writer in self._idle:
            writer.close()
            await writer.wait_closed()
        self._idle.clear()


class AsyncApi(mg.Pipeline):
    """Price ``items`` SKUs through the API, ``concurrency`` calls in flight."""

    concurrency = 50  # pipeline-wide; `--concurrency N` overrides it for a run

    def __init__(self, items: int = 1000) -> None:
        self.items = items
        self.total_cents = 0

    @mg.before_run
    async def open_client(self) -> None:
        """Start the API, then open the client on the run's loop, once for every call."""
        self.api = PriceApi()
        port = self.api.start()
        self.client = HttpClient("127.0.0.1", port, max_connections=200)

    @mg.producer
    def skus(self) -> Iterator[int]:
        yield from range(self.items)

    @mg.processor(timeout=10, retries=2)
    async def lookup(self, sku: int) -> int:
        answer = await self.client.get_json(f"/price/{sku}")
        return int(answer["cents"])

    @mg.consumer
    def add(self, cents: int) -> None:
        self.total_cents += cents

    @mg.after_run
    async def close_client(self, result: mg.RunResult) -> None:
        await self.client.aclose()
        self.api.stop()
        stage = result.stats.stages["lookup"]
        print(
            f"priced {stage.processed} items, total {self.total_cents / 100:.2f};"
            f" API answered {self.api.requests} requests, at most {self.api.peak} at once"
            f" (concurrency {stage.workers})"
        )
