"""A remote-write receiver on loopback whose answers the test controls.

It runs an aiohttp server in a thread of its own, so synchronous tests (processes,
kills) and asynchronous ones can use it alike. Every accepted body is decoded with the
agent's own codec and kept as (labels, timestamp ms, value) samples.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

from aiohttp import web

from kipu.remote_write.codec import Series, decode


@dataclass
class Answer:
    """What the receiver answers next: a status and body, optionally after a delay."""

    status: int = 204
    body: str = ""
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Request:
    """One request as the receiver saw it (`status` is what it answered)."""

    status: int
    samples: int
    oldest_ms: int
    newest_ms: int
    headers: dict[str, str]
    at: float = 0.0  # monotonic time it arrived


@dataclass(frozen=True)
class Incoming:
    """What the answer function sees of a request before answering it."""

    samples: int
    oldest_ms: int
    newest_ms: int
    headers: dict[str, str]


def _always_204(request: Incoming) -> Answer:
    return Answer()


class Receiver:
    """Remote-write receiver on 127.0.0.1.

    `answer(incoming)` decides each response from the request's samples, timestamps and
    headers (default: 204). Samples of 2xx answers are kept.
    """

    def __init__(self) -> None:
        self.answer: Callable[[Incoming], Answer] = _always_204
        self.samples: list[tuple[Series, int, float]] = []
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1/write"

    async def _handle(self, request: web.Request) -> web.Response:
        arrived = time.monotonic()
        body = await request.read()
        decoded = decode(body)
        points = [(s, t, v) for s, samples in decoded.items() for t, v in samples]
        times = [t for _, t, _ in points] or [0]
        headers = dict(request.headers)
        answer = self.answer(Incoming(len(points), min(times), max(times), headers))
        if answer.delay:
            await asyncio.sleep(answer.delay)
        with self.lock:
            self.requests.append(
                Request(answer.status, len(points), min(times), max(times), headers, arrived)
            )
            if 200 <= answer.status < 300:
                self.samples.extend(points)
        return web.Response(status=answer.status, text=answer.body, headers=answer.headers)

    async def _start(self, port: int) -> None:
        app = web.Application(client_max_size=64 << 20)
        app.router.add_post("/api/v1/write", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def start(self, port: int = 0) -> Receiver:
        if not self._thread.is_alive():
            self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(port or self.port), self._loop).result(10)
        return self

    def stop(self) -> None:
        """Stop listening (the port refuses connections) but keep what was received."""
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
            self._runner = None

    def series(self, name: str) -> list[tuple[int, float]]:
        """(timestamp, value) of every sample received for metric `name`, in time order."""
        with self.lock:
            found = [(t, v) for s, t, v in self.samples if dict(s)["__name__"] == name]
        return sorted(found)

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
