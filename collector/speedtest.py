"""The speed-test endpoints agents measure their link's throughput against.

`GET /api/v1/speedtest/download?bytes=N` sends N bytes of incompressible data;
`POST /api/v1/speedtest/upload` reads the body, discards it and answers with the bytes
received and when they arrived (the agent measures its upload from the receiving end).
Both need the site's token, like a push. A site may spend at most `max_bytes_per_hour`
and run at most `max_streams` transfers at once; beyond, 429 with Retry-After. The
bytes served are counted per site and direction for the metrics.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from collector.inventory import Site

DIRECTIONS = ("download", "upload")
BLOCK = os.urandom(64 * 1024)
"""What a download repeats: random, so a compressing link cannot shrink it by accident."""
TIMELINE_STEP = 0.01
"""An upload's timeline keeps at most one point per this many seconds."""
IDLE = 30.0
"""An upload that sends nothing for this long is cut off."""

Authorize = Callable[[web.Request], "Site | tuple[str, str]"]


@dataclass(frozen=True)
class SpeedTestLimits:
    """What one site may ask of the speed test."""

    max_bytes: int = 100 * 1000**2
    """Largest transfer of one request."""
    max_bytes_per_hour: int = 1000 * 1000**2
    """Bytes served to a site (both directions) in any hour."""
    max_streams: int = 8
    """Transfers of a site at once (an agent's test uses a few parallel streams)."""


@dataclass(frozen=True)
class SpeedTestSnapshot:
    bytes_by_site: dict[tuple[str, str], int]
    """Bytes served by (site_id, direction)."""


@dataclass
class SpeedTest:
    """The per-site accounting and limits of the speed-test endpoints."""

    authorize: Authorize
    limits: SpeedTestLimits = field(default_factory=SpeedTestLimits)
    clock: Callable[[], float] = time.monotonic
    counted: Counter[tuple[str, str]] = field(default_factory=Counter)
    _recent: dict[str, deque[tuple[float, int]]] = field(default_factory=dict)
    _active: Counter[str] = field(default_factory=Counter)

    def snapshot(self) -> SpeedTestSnapshot:
        return SpeedTestSnapshot(dict(self.counted))

    def _spent_last_hour(self, site_id: str, now: float) -> int:
        recent = self._recent.setdefault(site_id, deque())
        while recent and recent[0][0] <= now - 3600:
            recent.popleft()
        return sum(size for _, size in recent)

    def _refusal(self, site_id: str, size: int) -> web.Response | None:
        """A 400 or 429 for a transfer of `size` bytes, or None to let it through."""
        if size > self.limits.max_bytes:
            return web.Response(
                status=400, text=f"at most {self.limits.max_bytes} bytes per request\n"
            )
        if self._active[site_id] >= self.limits.max_streams:
            return _too_many(f"at most {self.limits.max_streams} transfers at once", 1)
        now = self.clock()
        spent = self._spent_last_hour(site_id, now)
        if spent + size > self.limits.max_bytes_per_hour:
            recent = self._recent[site_id]
            # When enough of the last hour's transfers have aged out to make room.
            freed, wait = spent, 3600.0
            for at, used in recent:
                freed -= used
                if freed + size <= self.limits.max_bytes_per_hour:
                    wait = at + 3600 - now
                    break
            return _too_many(
                f"at most {self.limits.max_bytes_per_hour} bytes per hour", max(1.0, wait)
            )
        self._recent[site_id].append((now, size))
        return None

    async def download(self, request: web.Request) -> web.StreamResponse:
        site = self.authorize(request)
        if not isinstance(site, Site):
            return _unauthorized(site)
        try:
            size = int(request.query.get("bytes", ""))
        except ValueError:
            return web.Response(status=400, text="give the size: ?bytes=N\n")
        if size < 1:
            return web.Response(status=400, text="bytes must be at least 1\n")
        refusal = self._refusal(site.site_id, size)
        if refusal is not None:
            return refusal
        self._active[site.site_id] += 1
        try:
            response = web.StreamResponse(
                headers={"Content-Type": "application/octet-stream", "Cache-Control": "no-store"}
            )
            response.content_length = size
            await response.prepare(request)
            left = size
            key = (site.site_id, "download")
            while left > 0:
                chunk = BLOCK if left >= len(BLOCK) else BLOCK[:left]
                await response.write(chunk)
                left -= len(chunk)
                self.counted[key] += len(chunk)
            await response.write_eof()
            return response
        finally:
            self._active[site.site_id] -= 1

    async def upload(self, request: web.Request) -> web.Response:
        site = self.authorize(request)
        if not isinstance(site, Site):
            return _unauthorized(site)
        size = request.content_length
        if size is None:
            return web.Response(status=411, text="give the body's Content-Length\n")
        refusal = self._refusal(site.site_id, size)
        if refusal is not None:
            refusal.headers["Connection"] = "close"  # the body was not read
            return refusal
        self._active[site.site_id] += 1
        key = (site.site_id, "upload")
        received = 0
        timeline: list[tuple[float, int]] = []
        try:
            stream = request.content.iter_any()
            while True:
                try:
                    async with asyncio.timeout(IDLE):
                        chunk = await anext(stream, None)
                except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
                    return web.Response(status=400, text="the body ended early\n")
                if chunk is None:
                    break
                received += len(chunk)
                self.counted[key] += len(chunk)
                now = time.monotonic()
                # Thinned to a point per TIMELINE_STEP, the first and the latest kept exact.
                if len(timeline) >= 2 and now - timeline[-2][0] < TIMELINE_STEP:
                    timeline[-1] = (now, received)
                else:
                    timeline.append((now, received))
        finally:
            self._active[site.site_id] -= 1
        return web.json_response({"bytes": received, "timeline": timeline})


def _unauthorized(why: tuple[str, str]) -> web.Response:
    return web.Response(status=401, text=why[1] + "\n", headers={"Connection": "close"})


def _too_many(message: str, retry_after: float) -> web.Response:
    return web.Response(
        status=429, text=message + "\n", headers={"Retry-After": str(int(retry_after + 0.999))}
    )


SPEEDTEST = web.AppKey("speedtest", SpeedTest)


def install(app: web.Application, authorize: Authorize) -> SpeedTest:
    """Add the speed-test routes to `app` (the tracker is `app[SPEEDTEST]`)."""
    speedtest = SpeedTest(authorize)
    app[SPEEDTEST] = speedtest

    async def download(request: web.Request) -> web.StreamResponse:
        return await request.app[SPEEDTEST].download(request)

    async def upload(request: web.Request) -> web.Response:
        return await request.app[SPEEDTEST].upload(request)

    app.router.add_get("/api/v1/speedtest/download", download)
    app.router.add_post("/api/v1/speedtest/upload", upload)
    return speedtest
