"""Store-and-forward push: snapshots to the spool, live first, backlog beside it.

Every `push.interval` the agent takes a snapshot of every series it exposes, stamps it,
encodes it as one remote-write body and appends it to the spool, which is synced to
disk at once (so a power cut loses at most the snapshot being written). Two loops send:

- **live** sends the newest snapshot as soon as it is spooled, so the NOC sees a site
  come back the moment its link does;
- **backlog** drains everything older, oldest first, merged into batches (one request
  for up to `BATCH_RECORDS` snapshots: 4x fewer bytes per sample than one by one, which
  matters on a metered 4G link), in time order per series.

Outcomes follow DESIGN §1: 2xx acknowledges (the records leave the spool); 5xx, 429 and
network errors are retried with exponential backoff and full jitter, both loops waiting
out the same delay; other 4xx and Prometheus' "too old sample" are permanent: counted as
`rejected` and dropped (a 413 first splits the batch). After a boot and after every
reconnection the backlog waits a random delay up to `push.spread`, so a region whose
power returns at once does not push all its backlogs at once.

Clocks. Site boxes often lack a real-time clock and start at a wrong time until NTP
syncs. The rule: a snapshot is stamped at once when the clock is trusted, that is, it
reads after `CLOCK_FLOOR` (no sample of this release can be older) and either the
kernel reports it synchronised (adjtimex) or the host has been up for
`push.clock_settle` without the kernel saying so (a box with no NTP discipline at all).
Otherwise the snapshot is held in memory with its monotonic time, and when the clock
becomes trusted it is re-stamped as `now - (monotonic now - monotonic then)` and
spooled. Re-stamped samples are counted (`kipu_push_restamped_samples_total`); held
snapshots are bounded (`MAX_HELD`, oldest dropped and counted) and are lost if the power
goes before the clock is trusted.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from agent.config import Push
from agent.remote_write import (
    STALE_NAN,
    Backoff,
    InvalidLabelsError,
    Outcome,
    RemoteWriteClient,
    SendResult,
    Series,
    decode,
    encode,
    normalise_labels,
)
from agent.spool import Record, Spool
from agent.version import __version__

log = logging.getLogger(__name__)

CLOCK_FLOOR = 1_767_225_600.0  # 2026-01-01T00:00:00Z
BATCH_RECORDS = 240  # one hour of 15 s snapshots per backlog request
BATCH_BYTES = 4 << 20
MAX_HELD = 2880  # snapshots held while the clock is untrusted: 12 h at 15 s
SPOOL_DIR = "spool"

Snapshot = list[tuple[dict[str, str], float]]


# --- clock --------------------------------------------------------------------------

_STA_UNSYNC = 0x0040
_TIME_ERROR = 5


class _Timex(ctypes.Structure):
    _fields_ = [
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time_sec", ctypes.c_long),
        ("time_usec", ctypes.c_long),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("padding", ctypes.c_int * 11),
    ]


def kernel_clock_synced() -> bool | None:
    """Whether the kernel's NTP discipline says the clock is synchronised; None if unknown."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        timex = _Timex()  # modes 0: read only
        state = libc.adjtimex(ctypes.byref(timex))
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return state != _TIME_ERROR and not timex.status & _STA_UNSYNC


def host_uptime() -> float:
    try:
        with open("/proc/uptime", encoding="ascii") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0


@dataclass
class ClockJudge:
    """Decides whether the wall clock can stamp samples (see the module docstring)."""

    settle: float = 600.0
    synced: Callable[[], bool | None] = kernel_clock_synced
    uptime: Callable[[], float] = host_uptime

    def trusted(self, wall: float) -> bool:
        if wall < CLOCK_FLOOR:
            return False
        return self.synced() is True or self.uptime() >= self.settle


# --- snapshots ----------------------------------------------------------------------


@dataclass
class Snapshotter:
    """Turns the agent's current series into stamped remote-write series.

    Adds `site_id`, and a stale marker for every series that was in the previous
    snapshot and is gone now (a removed target or device), as the spec requires.
    """

    site_id: str
    collect: Callable[[], Snapshot]
    _previous: set[Series] = field(default_factory=set)
    invalid: int = 0

    def take(self) -> dict[Series, float]:
        current: dict[Series, float] = {}
        for labels, value in self.collect():
            try:
                series = normalise_labels({**labels, "site_id": self.site_id})
            except InvalidLabelsError as err:
                self.invalid += 1
                log.debug("series not pushed: %s", err)
                continue
            current[series] = value
        gone = self._previous - current.keys()
        self._previous = set(current)
        return current | dict.fromkeys(gone, STALE_NAN)


def encode_snapshot(series: dict[Series, float], timestamp_ms: int) -> bytes:
    return encode({s: [(timestamp_ms, v)] for s, v in series.items()})


def merge(records: Iterable[Record]) -> tuple[bytes, int]:
    """One body holding every sample of `records`, in time order per series."""
    merged: dict[Series, list[tuple[int, float]]] = {}
    for record in records:
        for series, samples in decode(record.payload).items():
            merged.setdefault(series, []).extend(samples)
    for samples in merged.values():
        samples.sort(key=lambda sample: sample[0])
    return encode(merged), sum(len(s) for s in merged.values())


# --- the pusher ---------------------------------------------------------------------


@dataclass
class PushStats:
    """Counters behind the kipu_push_* and kipu_spool_* metrics."""

    requests: dict[str, int] = field(default_factory=lambda: {o.value: 0 for o in Outcome})
    last_success: float | None = None
    rejected_samples: int = 0
    restamped_samples: int = 0
    held_dropped_samples: int = 0
    snapshots: int = 0


class Pusher:
    """Owns the spool and the remote-write client; runs the three loops."""

    def __init__(
        self,
        config: Push,
        site_id: str,
        state_dir: Path,
        collect: Callable[[], Snapshot],
        *,
        clock: ClockJudge | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.spool = Spool(state_dir / SPOOL_DIR, config.max_spool)
        self.snapshotter = Snapshotter(site_id, collect)
        self.clock = clock or ClockJudge(settle=config.clock_settle)
        self.rng = rng or random.Random()
        self.stats = PushStats()
        self.held: list[tuple[float, dict[Series, float]]] = []
        self.client = RemoteWriteClient(
            config.url,
            token_file=config.token_file,
            ca_file=config.ca_file,
            timeout=config.timeout,
            user_agent=f"kipu-agent/{__version__}",
        )
        self.backoff = Backoff(
            base=min(1.0, config.interval), cap=max(2 * config.interval, 1.0), rng=self.rng
        )
        self._retry_at = 0.0  # loop time before which nothing is sent
        self._spooled = asyncio.Event()
        self._inflight: set[int] = set()
        self._live_id: int | None = None  # the latest snapshot appended: live's to send
        self._hold_until: float | None = None  # loop time; None: draw at the first send
        self._connected: bool | None = None

    def open(self) -> None:
        self.spool.open()
        if len(self.spool):
            log.info(
                "spool holds %d snapshots (%d samples) from before",
                len(self.spool),
                self.spool.samples,
            )

    async def close(self) -> None:
        """Flush the spool to disk and close the client (after the loops stopped)."""
        try:
            self.spool.close()
        finally:
            await self.client.close()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self._snapshot_loop())
            group.create_task(self._live_loop())
            group.create_task(self._backlog_loop())

    # -- snapshots

    async def _snapshot_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            try:
                await self.snapshot()
            except Exception:
                log.exception("snapshot failed")
            next_at += self.config.interval
            now = loop.time()
            next_at = max(next_at, now)
            await asyncio.sleep(next_at - now)

    async def snapshot(self) -> None:
        """Take, stamp (or hold) and spool one snapshot, then sync the spool."""
        wall, mono = time.time(), time.monotonic()
        series = self.snapshotter.take()
        self.stats.snapshots += 1
        if not self.clock.trusted(wall):
            if not self.held:
                log.warning(
                    "clock not trusted yet (reads %s): holding snapshots",
                    time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(wall)),
                )
            self.held.append((mono, series))
            if len(self.held) > MAX_HELD:
                _, dropped = self.held.pop(0)
                self.stats.held_dropped_samples += len(dropped)
            return
        if self.held:
            self._release_held(wall, mono)
        self._append(series, int(wall * 1000))
        await asyncio.to_thread(self.spool.sync)
        self._spooled.set()

    def _release_held(self, wall: float, mono: float) -> None:
        count = 0
        for then, series in self.held:
            self._append(series, int((wall - (mono - then)) * 1000))
            count += len(series)
        log.warning(
            "clock trusted: %d held snapshots re-stamped (%d samples)", len(self.held), count
        )
        self.stats.restamped_samples += count
        self.held.clear()

    def _append(self, series: dict[Series, float], timestamp_ms: int) -> None:
        if series:
            body = encode_snapshot(series, timestamp_ms)
            record = self.spool.append(body, len(series), timestamp_ms, timestamp_ms)
            self._live_id = record.id

    # -- sending

    def _spread(self) -> None:
        """Hold both lanes for a random part of `push.spread` (after boot, reconnection)."""
        delay = self.rng.uniform(0, self.config.spread)
        self._hold_until = asyncio.get_running_loop().time() + delay
        if delay > 0:
            log.info("pushing in %.1fs, to spread the load of a region coming back", delay)

    async def _wait_turn(self) -> None:
        loop = asyncio.get_running_loop()
        if self._hold_until is None:
            self._spread()
        while True:
            assert self._hold_until is not None
            delay = max(self._retry_at, self._hold_until) - loop.time()
            if delay <= 0:
                return
            await asyncio.sleep(delay)

    async def _live_loop(self) -> None:
        while True:
            await self._spooled.wait()
            self._spooled.clear()
            await self._wait_turn()
            records = self.spool.newest(1, exclude=self._inflight)
            if records and records[0].id == self._live_id:
                await self._send(records, records[0].payload, records[0].samples, "live")

    async def _backlog_loop(self) -> None:
        limit = BATCH_RECORDS
        while True:
            await self._wait_turn()
            if self._connected is False:
                # Live first: only the newest snapshot probes a lost receiver; the
                # backlog follows once it is back.
                await asyncio.sleep(min(1.0, self.config.interval))
                continue
            result = await self.drain_once(limit)
            if result is None:
                await asyncio.sleep(min(1.0, self.config.interval))
            elif result.outcome is Outcome.REJECTED and result.status == 413 and limit > 1:
                limit = max(1, limit // 2)
            elif result.outcome is Outcome.OK:
                limit = BATCH_RECORDS

    async def drain_once(self, limit: int = BATCH_RECORDS) -> SendResult | None:
        """Send the oldest waiting snapshots (up to `limit`) as one request.

        Everything but the latest snapshot, which is live's to send, is the backlog's;
        not "everything but the newest waiting record": once live has acknowledged its
        snapshots, the newest waiting record is an old one. None when nothing waits.
        """
        exclude = self._inflight | {self._live_id} if self._live_id else self._inflight
        records = self._batch(self.spool.oldest(limit, exclude=exclude))
        if not records:
            return None
        try:
            body, samples = merge(records)
        except ValueError as err:  # a record that cannot be decoded can never be sent
            log.error("dropping %d spooled snapshots that do not decode: %s", len(records), err)
            self.spool.ack(r.id for r in records)
            return None
        return await self._send(records, body, samples, "backlog")

    def _batch(self, records: list[Record]) -> list[Record]:
        batch: list[Record] = []
        size = 0
        for record in records:
            if batch and size + len(record.payload) > BATCH_BYTES:
                break
            batch.append(record)
            size += len(record.payload)
        return batch

    async def _send(
        self, records: list[Record], body: bytes, samples: int, lane: str
    ) -> SendResult:
        ids = [r.id for r in records]
        self._inflight.update(ids)
        try:
            result = await self.client.send(body)
        finally:
            self._inflight.difference_update(ids)
        self.stats.requests[result.outcome.value] += 1
        loop = asyncio.get_running_loop()
        if result.outcome is Outcome.OK:
            self.spool.ack(ids)
            self.stats.last_success = time.time()
            self.backoff.reset()
            if self._connected is False:
                log.info("push: receiver reachable again; %d snapshots to drain", len(self.spool))
                self._spread()
            self._connected = True
        elif result.outcome is Outcome.RETRY:
            delay = self.backoff.next_delay(result.retry_after)
            self._retry_at = loop.time() + delay
            if self._connected is not False:
                log.warning(
                    "push failed (%s), retrying with backoff; samples stay spooled", result.detail
                )
            self._connected = False
        elif result.status == 413 and len(records) > 1:
            log.warning(
                "push %s: %d snapshots too large for the receiver, splitting", lane, len(records)
            )
        else:
            self.spool.ack(ids)
            self.stats.rejected_samples += samples
            log.error(
                "push %s rejected, %d samples dropped: %s %s",
                lane,
                samples,
                result.status,
                result.detail,
            )
        return result
