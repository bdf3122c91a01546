"""Throughput tests: goodput to and from the collector's speed test, within a data budget.

A test measures each direction with a few parallel TCP streams. It starts small and
doubles the transfer until two successive readings agree within `AGREEMENT`, or the
next step would pass the test's cap. A reading counts the bytes all streams moved
from the first byte any of them received to the last byte of all, so connection setup
and the requests are left out (see `goodput`); only steps of a second or more count,
as slow start weighs on shorter ones. Downloads are timed where the bytes
arrive, here; uploads where they arrive too, at the collector, which answers with its
timeline.

Every step is charged to the day's and the month's budget *before* it starts, at its
full size, so the budget holds even when a step fails half-way; a direction starts only
when both budgets still hold a whole test (`max_bytes_per_test`). The spending and the
bytes counter are kept in a small file in the state folder, replaced atomically.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import random
import ssl
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp

from agent.config import Push, Throughput, window_minutes
from agent.snapshots import ThroughputSnapshot
from kipu.version import __version__

log = logging.getLogger(__name__)

Direction = Literal["download", "upload"]
DIRECTIONS: tuple[Direction, ...] = ("download", "upload")
Result = Literal["ok", "budget", "error", "timeout"]
RESULTS: tuple[Result, ...] = ("ok", "budget", "error", "timeout")
AGREEMENT = 0.05
"""Two successive readings this close (relative) end the test."""
MIN_SPAN = 1.0
"""Steps shorter than this (seconds) only grow the transfer: slow start weighs on them."""
TIMELINE_STEP = 0.01
STATE_FILE = "throughput.json"
BLOCK = os.urandom(64 * 1024)
Timeline = Sequence[tuple[float, int]]
"""(time, bytes so far) as the bytes of one stream arrived."""


class StepError(Exception):
    """A step of the test failed (an HTTP error, a short body, a refused connection)."""


# -- pure parts


def span(timelines: Sequence[Timeline]) -> float:
    """Seconds from the first byte any stream received to the last byte of all."""
    streams = [tl for tl in timelines if tl]
    if not streams:
        return 0.0
    return max(tl[-1][0] for tl in streams) - min(tl[0][0] for tl in streams)


def goodput(timelines: Sequence[Timeline]) -> float | None:
    """Bits per second of all streams together, or None when they moved nothing measurable.

    The span runs from the first byte any stream received to the last byte of all, so
    connection setup and the request are left out; each stream's first chunk is left out
    too (it arrived at the span's start, not during it). A window inside the span would
    read low: a stream that lost a segment holds back what arrives after it until the
    retransmission fills the hole, so bytes that crossed the link inside the window
    reach the program only after it.
    """
    streams = [tl for tl in timelines if tl]
    seconds = span(streams)
    if seconds <= 0:
        return None
    moved = sum(tl[-1][1] - tl[0][1] for tl in streams)
    return moved * 8 / seconds


def agree(previous: float, latest: float) -> bool:
    """Whether two successive readings agree within `AGREEMENT`."""
    return abs(latest - previous) <= AGREEMENT * max(latest, previous)


def plan_day(day: date, windows: Sequence[str], runs: int, rng: random.Random) -> list[datetime]:
    """`runs` moments of `day` at random inside the windows (local, naive), in order."""
    spans = [window_minutes(w) for w in windows]
    total = sum(end - start for start, end in spans) * 60
    if runs <= 0 or total <= 0:
        return []
    midnight = datetime.combine(day, datetime.min.time())
    moments = []
    for _ in range(runs):
        offset = rng.uniform(0, total)
        for start, end in spans:
            length = (end - start) * 60
            if offset < length:
                moments.append(midnight + timedelta(seconds=start * 60 + offset))
                break
            offset -= length
    return sorted(moments)


@dataclass
class Schedule:
    """The scheduled runs: each day planned once, at random inside the windows."""

    windows: Sequence[str]
    runs: int
    rng: random.Random = field(default_factory=random.Random)
    _plans: dict[date, list[datetime]] = field(default_factory=dict)

    def next_after(self, now: datetime) -> datetime | None:
        """The first planned run after `now`, or None when nothing is ever planned."""
        if self.runs <= 0 or not self.windows:
            return None
        day = now.date()
        for _ in range(3):  # today, tomorrow or the day after always holds one
            plan = self._plans.get(day)
            if plan is None:
                plan = self._plans[day] = plan_day(day, self.windows, self.runs, self.rng)
                for old in [d for d in self._plans if d < now.date()]:
                    del self._plans[old]
            for moment in plan:
                if moment > now:
                    return moment
            day += timedelta(days=1)
        return None


@dataclass
class Budget:
    """Bytes spent: in all by direction, and in the current day and month (local)."""

    total: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DIRECTIONS, 0))
    day: str = ""
    day_bytes: int = 0
    month: str = ""
    month_bytes: int = 0

    def _roll(self, now: datetime) -> None:
        day, month = now.strftime("%Y-%m-%d"), now.strftime("%Y-%m")
        if day != self.day:
            self.day, self.day_bytes = day, 0
        if month != self.month:
            self.month, self.month_bytes = month, 0

    def left(self, config: Throughput, now: datetime) -> int:
        """Bytes the day's and the month's budgets still allow."""
        self._roll(now)
        return max(
            0,
            min(
                config.max_bytes_per_day - self.day_bytes,
                config.max_bytes_per_month - self.month_bytes,
            ),
        )

    def spend(self, direction: str, size: int, now: datetime) -> None:
        self._roll(now)
        self.total[direction] = self.total.get(direction, 0) + size
        self.day_bytes += size
        self.month_bytes += size

    def encode(self) -> bytes:
        return json.dumps(
            {
                "version": 1,
                "bytes_total": self.total,
                "day": self.day,
                "day_bytes": self.day_bytes,
                "month": self.month,
                "month_bytes": self.month_bytes,
            }
        ).encode()

    @classmethod
    def decode(cls, data: bytes) -> Budget:
        raw = json.loads(data)
        total: dict[str, int] = {d: int(raw.get("bytes_total", {}).get(d, 0)) for d in DIRECTIONS}
        return cls(
            total,
            str(raw.get("day", "")),
            int(raw.get("day_bytes", 0)),
            str(raw.get("month", "")),
            int(raw.get("month_bytes", 0)),
        )


def load_budget(path: Path) -> Budget:
    """The saved spending, or a fresh one (a damaged file is logged and set aside)."""
    try:
        return Budget.decode(path.read_bytes())
    except FileNotFoundError:
        return Budget()
    except (ValueError, TypeError, AttributeError) as err:
        log.error("throughput: %s is damaged (%s); counting from zero", path, err)
        return Budget()


def save_budget(path: Path, budget: Budget) -> None:
    """Replace the file atomically: write, fsync, rename, fsync the folder."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    try:
        data = memoryview(budget.encode())
        while data:
            data = data[os.write(fd, data) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def base_url(throughput: Throughput, push: Push) -> str:
    """The speed test's base URL: as configured, else the push URL's origin."""
    if throughput.url is not None:
        return throughput.url.rstrip("/")
    parts = urlsplit(push.url)
    return f"{parts.scheme}://{parts.netloc}"


@dataclass(frozen=True)
class DirectionResult:
    result: Result
    bits_per_second: float | None
    bytes: int
    steps: int = 0
    detail: str = ""
    seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "result": self.result,
            "bits_per_second": self.bits_per_second,
            "bytes": self.bytes,
            "steps": self.steps,
            "seconds": round(self.seconds, 3),
            "detail": self.detail,
        }


# -- I/O


async def _payload(size: int) -> AsyncIterator[bytes]:
    left = size
    while left > 0:
        chunk = BLOCK if left >= len(BLOCK) else BLOCK[:left]
        left -= len(chunk)
        yield chunk


class SpeedTestClient:
    """One session's requests to the collector's speed-test endpoints."""

    def __init__(self, session: aiohttp.ClientSession, url: str, token: str) -> None:
        self.session = session
        self.url = url
        self.headers = {
            "Authorization": f"Bearer {token}",
            "User-Agent": f"kipu-agent/{__version__}",
            "Accept-Encoding": "identity",
        }

    async def download(self, size: int) -> list[tuple[float, int]]:
        timeline: list[tuple[float, int]] = []
        received = 0
        async with self.session.get(
            f"{self.url}/api/v1/speedtest/download", params={"bytes": size}, headers=self.headers
        ) as response:
            if response.status != 200:
                raise StepError(f"download: HTTP {response.status}")
            async for chunk in response.content.iter_any():
                received += len(chunk)
                now = time.monotonic()
                # Thinned to a point per TIMELINE_STEP, the first and the latest kept exact.
                if len(timeline) >= 2 and now - timeline[-2][0] < TIMELINE_STEP:
                    timeline[-1] = (now, received)
                else:
                    timeline.append((now, received))
        if received != size:
            raise StepError(f"download: {received} of {size} bytes")
        return timeline

    async def upload(self, size: int) -> list[tuple[float, int]]:
        headers = {**self.headers, "Content-Length": str(size)}
        async with self.session.post(
            f"{self.url}/api/v1/speedtest/upload", data=_payload(size), headers=headers
        ) as response:
            if response.status != 200:
                raise StepError(f"upload: HTTP {response.status}")
            answer = await response.json()
        if answer.get("bytes") != size:
            raise StepError(f"upload: the collector got {answer.get('bytes')} of {size} bytes")
        return [(float(t), int(b)) for t, b in answer["timeline"]]


class ThroughputTester:
    """Runs the throughput tests: on the schedule, or now on request."""

    def __init__(
        self,
        state_dir: Path,
        *,
        wall: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.path = state_dir / STATE_FILE
        self.wall = wall
        self.rng = rng or random.Random()
        self.config: Throughput | None = None
        self.push: Push | None = None
        self.schedule: Schedule | None = None
        self.budget = Budget()
        self.readings: dict[str, float] = {}
        self.runs: dict[tuple[str, str], int] = {(d, r): 0 for d in DIRECTIONS for r in RESULTS}
        self.last_run: float | None = None
        self.lock = asyncio.Lock()
        self._changed = asyncio.Event()

    async def open(self) -> None:
        self.budget = await asyncio.to_thread(load_budget, self.path)

    def configure(self, config: Throughput | None, push: Push | None) -> None:
        if config != self.config:
            self.schedule = (
                Schedule(config.windows, config.runs_per_day, self.rng) if config else None
            )
        self.config, self.push = config, push
        self._changed.set()

    @property
    def configured(self) -> bool:
        return self.config is not None and self.push is not None

    def snapshot(self) -> ThroughputSnapshot | None:
        if self.config is None:
            return None
        return ThroughputSnapshot(
            bits_per_second=tuple(sorted(self.readings.items())),
            runs=tuple((d, r, n) for (d, r), n in self.runs.items()),
            bytes_total=tuple((d, self.budget.total.get(d, 0)) for d in DIRECTIONS),
            last_run=self.last_run,
        )

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.wall())  # local time, naive

    async def run(self) -> None:
        """Run the scheduled tests until cancelled (follows `configure`)."""
        while True:
            self._changed.clear()
            schedule = self.schedule
            due = schedule.next_after(self._now()) if schedule is not None else None
            if due is None:
                await self._changed.wait()
                continue
            # Sleep in short stretches: the wall clock may be set or jump meanwhile.
            changed = False
            while not changed and (wait := (due - self._now()).total_seconds()) > 0:
                try:
                    async with asyncio.timeout(min(wait, 300.0)):
                        await self._changed.wait()
                    changed = True
                except TimeoutError:
                    pass
            if changed:
                continue
            if not self.lock.locked():
                result = await self.run_now()
                log.info("throughput test (scheduled): %s", _summary(result))

    async def run_now(self) -> dict[Direction, DirectionResult]:
        """Test both directions now, within the budget (waits for a running test)."""
        async with self.lock:
            config, push = self.config, self.push
            if config is None or push is None:
                raise RuntimeError("throughput tests are not configured")
            results: dict[Direction, DirectionResult] = {}
            url = base_url(config, push)
            ssl_context: ssl.SSLContext | bool = True
            if push.ca_file is not None and url.startswith("https://"):
                ssl_context = await asyncio.to_thread(
                    ssl.create_default_context, cafile=str(push.ca_file)
                )
            detail = ""
            try:
                token = await asyncio.to_thread(_read_token, push.token_file)
            except OSError as err:
                token = None
                detail = f"cannot read the token: {err}"
            # Connections are kept between steps: a later step starts past slow start.
            connector = aiohttp.TCPConnector(limit=0, ssl=ssl_context)
            async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
                for direction in DIRECTIONS:
                    if token is None:
                        results[direction] = DirectionResult("error", None, 0, detail=detail)
                    else:
                        client = SpeedTestClient(session, url, token)
                        started = time.monotonic()
                        result = await self._direction(client, direction, config)
                        seconds = time.monotonic() - started
                        results[direction] = dataclasses.replace(result, seconds=seconds)
                    self._record(direction, results[direction])
            self.last_run = self.wall()
            return results

    def _record(self, direction: Direction, result: DirectionResult) -> None:
        self.runs[(direction, result.result)] += 1
        if result.result == "ok" and result.bits_per_second is not None:
            self.readings[direction] = result.bits_per_second
        elif result.result in ("error", "timeout"):
            log.warning("throughput %s: %s: %s", direction, result.result, result.detail)

    async def _charge(self, direction: Direction, size: int) -> None:
        self.budget.spend(direction, size, self._now())
        try:
            await asyncio.to_thread(save_budget, self.path, self.budget)
        except OSError as err:
            log.error("throughput: cannot save %s: %s", self.path, err)

    async def _direction(
        self, client: SpeedTestClient, direction: Direction, config: Throughput
    ) -> DirectionResult:
        if self.budget.left(config, self._now()) < config.max_bytes_per_test:
            return DirectionResult("budget", None, 0, detail="not enough budget left today/month")
        spent, steps = 0, 0
        readings: list[float] = []
        short: float | None = None
        size = config.first_bytes
        transfer = client.download if direction == "download" else client.upload
        try:
            async with asyncio.timeout(config.timeout):
                while spent + size <= config.max_bytes_per_test:
                    if self.budget.left(config, self._now()) < size:
                        break
                    await self._charge(direction, size)
                    spent += size
                    steps += 1
                    per_stream = max(1, size // config.streams)
                    timelines = await asyncio.gather(
                        *(transfer(per_stream) for _ in range(config.streams))
                    )
                    reading = goodput(timelines)
                    if reading is not None and span(timelines) >= MIN_SPAN:
                        readings.append(reading)
                    elif reading is not None:
                        short = reading
                    if len(readings) >= 2 and agree(readings[-2], readings[-1]):
                        break
                    size *= 2
        except TimeoutError:
            return DirectionResult("timeout", None, spent, steps, f"over {config.timeout:g} s")
        except (StepError, aiohttp.ClientError, OSError, ValueError, KeyError) as err:
            return DirectionResult("error", None, spent, steps, f"{type(err).__name__}: {err}")
        if not readings and short is not None:  # the cap came first: the best there is
            readings.append(short)
        if not readings:
            return DirectionResult("error", None, spent, steps, "no reading")
        return DirectionResult("ok", readings[-1], spent, steps)


def _read_token(path: Path | None) -> str:
    if path is None:
        raise OSError("push.token_file is not set")
    return path.read_text().strip()


def _summary(results: dict[Direction, DirectionResult]) -> str:
    parts = []
    for direction, result in results.items():
        rate = f"{result.bits_per_second / 1e6:.2f} Mbit/s" if result.bits_per_second else "-"
        parts.append(f"{direction} {result.result} {rate} ({result.bytes} bytes)")
    return ", ".join(parts)


def results_json(results: dict[Direction, DirectionResult]) -> dict[str, Any]:
    """The answer of ``POST /-/throughput``."""
    return {direction: result.as_json() for direction, result in results.items()}
