"""The sender lanes: what is spooled goes to the receiver, live first, nothing lost silently.

Both programs drive these lanes: the agent pushing its snapshots to the collector, and
the collector forwarding what sites pushed to the store. Records come from a `Spool`;
a record leaves it only when the receiver acknowledged it, or when the receiver refused
it on its own (counted in `rejected_samples`).

- **live** sends the newest records as soon as they are durable (`notify`), so the NOC
  sees a site come back the moment its link does. The agent's live lane sends one
  snapshot per request; the collector's merges the few newest pushes.
- **backlog** drains everything older, oldest first, up to `backlog_records` records
  merged per request (fewer bytes per sample, which matters on a metered link).

Answers (`kipu.remote_write.policy`):

- OK acknowledges.
- RETRY (5xx, 429, network errors) keeps the records and closes the gate for an
  exponential backoff with equal jitter, shared by both lanes; while the receiver is
  failing only one request at a time goes out (the live one when there is one), so
  the request rate to a failing receiver falls instead of staying at one request per
  snapshot. A receiver's Retry-After is honoured in full, up to ten minutes.
- BLOCKED (401, 403, 404, 407, an unusable token file) keeps the records too, with a
  long capped backoff; the lanes try again at once when the token file changes, and
  resume by themselves when the receiver accepts again. `blocked` says so.
- REJECTED on several records splits them in halves, down to single records, so only
  what the receiver refuses on its own is dropped; a single refused record is dropped
  and its samples counted. The newer half goes first: a receiver's window for old
  samples (Prometheus' out-of-order window) moves on with every live push, so the
  newest part of a backlog is what can still get in.
- A request that times out (a large batch on a slow satellite link) makes the next
  backlog batches smaller, down to one record; successes let them grow back.

After start and after each reconnection the backlog waits a random part of `spread`
(the live lane only after start), so a region whose power returns at once does not
send all its backlogs at once. Spool reads, merges and acknowledgements run in worker
threads: the event loop only waits for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

from kipu.clock import receiver_offset
from kipu.remote_write.client import RemoteWriteClient, SendResult
from kipu.remote_write.codec import (
    RemoteWriteDecodeError,
    Sample,
    Series,
    decode,
    encode,
    join_requests,
    raw_request,
)
from kipu.remote_write.policy import Backoff, Outcome
from kipu.spool import Record, Spool
from kipu.supervise import supervised

log = logging.getLogger(__name__)

CREDENTIALS_POLL = 1.0
"""While blocked, how often the token file is looked at for a change."""


@dataclass(frozen=True)
class LaneSettings:
    """How the lanes batch and wait."""

    live_records: int = 1
    """Newest records one live request carries."""
    backlog_records: int = 240
    """Records one backlog request carries at most (240: an hour of 15 s snapshots)."""
    batch_bytes: int = 4 << 20
    """Payload bytes one request carries at most (a single larger record goes alone)."""
    spread: float = 0.0
    """Random hold, up to this, after start and after each reconnection."""
    retry_base: float = 1.0
    retry_cap: float = 300.0
    blocked_base: float = 30.0
    blocked_cap: float = 900.0
    idle_poll: float = 1.0
    """How often an idle or waiting backlog lane looks at the spool again."""
    merge: Literal["by_series", "concatenate"] = "by_series"
    """How records become one request: `by_series` decodes them and sends each series
    once with all its samples in time order (fewest bytes: the agent's metered link);
    `concatenate` joins the requests as they are (least CPU: the collector's LAN)."""

    def __post_init__(self) -> None:
        if self.live_records < 1 or self.backlog_records < 1 or self.batch_bytes < 1:
            raise ValueError("live_records, backlog_records and batch_bytes must be positive")


@dataclass(frozen=True)
class LanesSnapshot:
    """The lanes' counters and state, for metrics."""

    requests: dict[str, int]
    """Requests by `result` label: ok, retry (blocked included), rejected."""
    rejected_samples: int
    """Samples the receiver refused on their own: dropped."""
    undecodable_records: int
    """Spooled records that could not be decoded to merge them: dropped."""
    last_success: float | None
    blocked: bool
    failing: bool
    clock_offset: float | None
    """Our clock minus the receiver's, from its latest Date header."""
    backlog_limit: int


@dataclass
class _Counters:
    requests: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(("ok", "retry", "rejected"), 0)
    )
    rejected_samples: int = 0
    undecodable_records: int = 0
    last_success: float | None = None


@dataclass
class _Batch:
    records: list[Record]
    body: bytes
    samples: int


class Lanes:
    """Sends a spool's records to one receiver (see the module docstring)."""

    def __init__(
        self,
        spool: Spool,
        client: RemoteWriteClient,
        settings: LaneSettings,
        *,
        name: str = "remote write",
        rng: random.Random | None = None,
        on_answer: Callable[[SendResult], None] | None = None,
    ) -> None:
        self.spool = spool
        self.client = client
        self.settings = settings
        self.name = name
        self.rng = rng or random.Random()
        self.on_answer = on_answer
        self.backoff = Backoff(settings.retry_base, settings.retry_cap, self.rng)
        self.blocked_backoff = Backoff(settings.blocked_base, settings.blocked_cap, self.rng)
        self.counters = _Counters()
        self.blocked = False
        self.failing = False
        self.clock_offset: float | None = None
        self.backlog_limit = settings.backlog_records
        self._recent: dict[int, Record] = {}  # the live lane's, newest last
        self._durable_below = 0  # records below this id are durable: the backlog's to send
        self._inflight: set[int] = set()
        self._notified = asyncio.Event()
        self._backlog_wake = asyncio.Event()
        self._retry_at = 0.0  # loop time before which nothing is sent
        self._start_hold: float | None = None  # loop time; None: drawn at the first send
        self._backlog_hold = 0.0
        self._probe_lock = asyncio.Lock()
        self._stopping = False
        self._sending = 0  # deliveries under way: requests and their acknowledgements
        self._idle = asyncio.Event()  # set while none is
        self._idle.set()

    # -- what the owner calls

    def opened(self) -> None:
        """The spool was just opened: what it holds is durable, the backlog's to send."""
        self._durable_below = max(self._durable_below, self.spool.next_id)

    def notify(self, records: Sequence[Record]) -> None:
        """These records are durable in the spool: the live lane sends the newest."""
        for record in records:
            self._recent[record.id] = record
            self._durable_below = max(self._durable_below, record.id + 1)
        excess = len(self._recent) - self.settings.live_records
        for rid in list(self._recent)[: max(0, excess)]:
            del self._recent[rid]  # older than the newest few: the backlog's now
        if records:
            self._notified.set()
            self._backlog_wake.set()

    async def run(self) -> None:
        """Run both lanes until cancelled (each restarted if it fails)."""
        async with asyncio.TaskGroup() as group:
            group.create_task(supervised(f"{self.name} live lane", self._live_loop))
            group.create_task(supervised(f"{self.name} backlog lane", self._backlog_loop))

    async def stop(self, grace: float) -> None:
        """Start no new request; wait (at most `grace` s) for those under way.

        Cancelling the lanes instead cuts a request the receiver may already have
        taken: its records stay spooled and go again at the next start, arriving twice.
        """
        self._stopping = True
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace):
                await self._idle.wait()

    def snapshot(self) -> LanesSnapshot:
        c = self.counters
        return LanesSnapshot(
            dict(c.requests),
            c.rejected_samples,
            c.undecodable_records,
            c.last_success,
            self.blocked,
            self.failing,
            self.clock_offset,
            self.backlog_limit,
        )

    def ready(self) -> bool:
        """Whether the gate is open now (no backoff, no hold)."""
        now = asyncio.get_running_loop().time()
        return now >= self._retry_at and now >= (self._start_hold or 0.0)

    async def probe(self, body: bytes) -> SendResult | None:
        """Send a body that is not in the spool (e.g. an empty request, to read the
        receiver's clock) if the gate is open now; None when it is not."""
        if not self.ready():
            return None
        async with self._slot():
            if not self.ready():
                return None
            with self._busy():
                return await self._post([], body, 0, "probe")

    async def drain_once(
        self, limit: int | None = None, *, live_too: bool = False
    ) -> Outcome | None:
        """Send the oldest waiting records (up to `limit`) now, ignoring the gate (for
        tests and for a final drain, while the lanes do not run).

        The newest records are the live lane's and left out, unless `live_too` (to
        empty the spool after the lanes stopped: everything is synced and sent). None
        when nothing waits; otherwise the outcome (OK once every part that the receiver
        took was acknowledged and every part it refused alone was dropped).
        """
        self._stopping = False  # this is a send of its own, with the loops stopped
        if live_too:
            self._recent.clear()
            await asyncio.to_thread(self.spool.sync)
            self._durable_below = self.spool.next_id
        records = await self._oldest(limit or self.backlog_limit)
        if not records:
            return None
        return await self._deliver(records, "backlog")

    # -- the loops

    async def _live_loop(self) -> None:
        while True:
            await self._notified.wait()
            self._notified.clear()
            await self._gate(live=True)
            async with self._slot(live=True):
                records = [r for rid, r in self._recent.items() if rid not in self._inflight]
                if records:
                    await self._deliver(records, "live")

    async def _backlog_loop(self) -> None:
        idle = self.settings.idle_poll
        while True:
            await self._gate(live=False)
            if self.failing and self._recent:
                # Live first: the newest records probe a failing receiver.
                await self._sleep_or_notified(idle)
                continue
            outcome = None
            async with self._slot():
                if not (self.failing and self._recent):
                    limit = 1 if self.failing else self.backlog_limit
                    records = await self._oldest(limit)
                    outcome = await self._deliver(records, "backlog") if records else None
            if outcome is None:
                await self._sleep_or_notified(idle)

    async def _sleep_or_notified(self, seconds: float) -> None:
        """Sleep until new records are notified or the receiver returns, at most `seconds`."""
        self._backlog_wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._backlog_wake.wait()

    async def _oldest(self, limit: int) -> list[Record]:
        below = self._durable_below
        exclude = self._inflight | self._recent.keys()
        records = await asyncio.to_thread(
            self.spool.oldest, limit, exclude, self.settings.batch_bytes
        )
        # Only what was notified: a record appended but not yet synced is not the
        # backlog's, and while the thread read, the live lane may have taken or sent
        # some of them.
        records = [
            r
            for r in records
            if r.id < below
            and r.id not in self._inflight
            and r.id not in self._recent
            and self.spool.waiting(r.id)
        ]
        batch: list[Record] = []
        size = 0
        for record in records:
            if batch and size + len(record.payload) > self.settings.batch_bytes:
                break
            batch.append(record)
            size += len(record.payload)
        return batch

    # -- the gate

    async def _gate(self, *, live: bool) -> None:
        """Wait out the start hold, the backoff and (backlog only) the reconnection hold."""
        loop = asyncio.get_running_loop()
        if self._start_hold is None:
            self._start_hold = loop.time() + self._draw_spread("after start")
        while True:
            until = max(self._retry_at, self._start_hold)
            if not live:
                until = max(until, self._backlog_hold)
            wait = until - loop.time()
            if wait <= 0:
                return
            if not self.blocked:
                await asyncio.sleep(wait)
                continue
            await asyncio.sleep(min(wait, CREDENTIALS_POLL))
            if self.blocked and await self.client.credentials_changed():
                log.info("%s: the token file changed, trying again now", self.name)
                self._retry_at = loop.time()

    @contextlib.contextmanager
    def _busy(self) -> Iterator[None]:
        """A delivery under way: `stop` waits until it is over, acknowledgement included."""
        self._sending += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._sending -= 1
            if not self._sending:
                self._idle.set()

    @contextlib.asynccontextmanager
    async def _slot(self, *, live: bool = False) -> AsyncIterator[None]:
        """While the receiver fails, one request at a time, each after the gate; once
        stopping, none (the lane waits to be cancelled)."""
        if self._stopping:
            await asyncio.Event().wait()
        if not self.failing:
            yield
            return
        async with self._probe_lock:
            await self._gate(live=live)  # the other lane's probe may have moved it
            if self._stopping:
                await asyncio.Event().wait()
            yield

    def _draw_spread(self, why: str) -> float:
        delay = self.rng.uniform(0, self.settings.spread)
        if delay > 0:
            log.info("%s: sending in %.1fs %s, to spread a region's load", self.name, delay, why)
        return delay

    # -- sending

    async def _deliver(self, records: list[Record], lane: str) -> Outcome:
        """Send `records` as one request, splitting it while the receiver refuses it."""
        ids = {r.id for r in records}
        self._inflight |= ids
        try:
            refused: list[int] = []  # samples of records dropped alone
            with self._busy():
                outcome = await self._deliver_split(records, lane, refused)
        finally:
            self._inflight -= ids
            for rid in ids:  # sent, dropped or failed: no longer the live lane's
                self._recent.pop(rid, None)
        if refused:
            log.error(
                "%s %s: the receiver refused %d records on their own; %d samples dropped",
                self.name,
                lane,
                len(refused),
                sum(refused),
            )
        return outcome

    async def _deliver_split(self, records: list[Record], lane: str, refused: list[int]) -> Outcome:
        batch = await self._encode(records)
        if not batch.records:
            return Outcome.OK
        if self._stopping:
            return Outcome.RETRY  # the rest of a split waits for the next start
        result = await self._post(batch.records, batch.body, batch.samples, lane)
        if result.outcome is not Outcome.REJECTED:
            return result.outcome
        if len(batch.records) == 1:
            await asyncio.to_thread(self.spool.ack, [batch.records[0].id])
            self.counters.rejected_samples += batch.samples
            refused.append(batch.samples)
            log.debug("%s %s: record refused: %s", self.name, lane, result.detail)
            return Outcome.REJECTED
        if not refused:
            log.warning(
                "%s %s: %d records refused together (%s); splitting them",
                self.name,
                lane,
                len(batch.records),
                result.detail,
            )
        if result.status == 413 and lane == "backlog":
            self.backlog_limit = max(1, len(batch.records) // 2)
        # Newest half first: against a receiver whose window for old samples moves on
        # with every live push, what is newest is what can still get in.
        middle = len(batch.records) // 2
        for half in (batch.records[middle:], batch.records[:middle]):
            outcome = await self._deliver_split(half, lane, refused)
            if outcome in (Outcome.RETRY, Outcome.BLOCKED):
                return outcome
        return Outcome.OK

    async def _encode(self, records: list[Record]) -> _Batch:
        if len(records) == 1:
            record = records[0]
            return _Batch(records, record.payload, record.samples)
        combine = merge if self.settings.merge == "by_series" else concatenate
        body, samples, good, bad = await asyncio.to_thread(combine, records)
        if bad:
            log.error("%s: %d spooled records do not decode and are dropped", self.name, len(bad))
            self.counters.undecodable_records += len(bad)
            await asyncio.to_thread(self.spool.ack, [r.id for r in bad])
        return _Batch(good, body, samples)

    async def _post(
        self, records: list[Record], body: bytes, samples: int, lane: str
    ) -> SendResult:
        result = await self.client.send(body, backlog=lane == "backlog")
        self.counters.requests[result.outcome.result] += 1
        if result.date is not None and result.received_at is not None:
            self.clock_offset = receiver_offset(result.received_at, result.date)
        if self.on_answer is not None:
            self.on_answer(result)
        loop = asyncio.get_running_loop()
        if result.outcome is Outcome.OK:
            if records:
                await asyncio.to_thread(self.spool.ack, [r.id for r in records])
            self._succeeded(records, loop.time())
        elif result.outcome is Outcome.RETRY:
            self._failed(result, lane, self.backoff.next_delay(result.retry_after))
            if result.timed_out and lane == "backlog":
                self.backlog_limit = max(1, len(records) // 2)
        elif result.outcome is Outcome.BLOCKED:
            if not self.blocked:
                log.error(
                    "%s: the receiver does not let us write (%s); keeping the data, "
                    "trying again with a long backoff or when the token file changes",
                    self.name,
                    result.detail,
                )
            self.blocked = True
            self._failed(result, lane, self.blocked_backoff.next_delay())
        return result

    def _succeeded(self, records: list[Record], now: float) -> None:
        self.counters.last_success = time.time()
        self.backoff.reset()
        self.blocked_backoff.reset()
        if self.blocked:
            log.info("%s: the receiver lets us write again", self.name)
        if self.failing:
            log.info(
                "%s: receiver reachable again; %d records to drain", self.name, len(self.spool)
            )
            self._backlog_hold = now + self._draw_spread("after reconnection")
            self._backlog_wake.set()
        self.blocked = self.failing = False
        if len(records) >= self.backlog_limit:
            self.backlog_limit = min(self.settings.backlog_records, self.backlog_limit * 2)

    def _failed(self, result: SendResult, lane: str, delay: float) -> None:
        if not self.failing:
            log.warning(
                "%s %s failed (%s); retrying with backoff, the data stays spooled",
                self.name,
                lane,
                result.detail,
            )
        self.failing = True
        self._retry_at = asyncio.get_running_loop().time() + delay


def merge(records: Iterable[Record]) -> tuple[bytes, int, list[Record], list[Record]]:
    """One body holding every sample of `records`, in time order per series.

    Returns the body, its samples, the records in it, and the records that could not
    be decoded (left out). Pure; run it in a worker thread, it costs CPU.
    """
    merged: dict[Series, list[Sample]] = {}
    good: list[Record] = []
    bad: list[Record] = []
    for record in records:
        try:
            decoded = decode(record.payload)
        except ValueError:
            bad.append(record)
            continue
        good.append(record)
        for series, samples in decoded.items():
            merged.setdefault(series, []).extend(samples)
    for samples in merged.values():
        samples.sort(key=_timestamp)
    return encode(merged), sum(len(s) for s in merged.values()), good, bad


def concatenate(records: Iterable[Record]) -> tuple[bytes, int, list[Record], list[Record]]:
    """One body joining the requests of `records` as they are (see `join_requests`).

    Returns what `merge` returns; records whose snappy framing is damaged are set aside.
    """
    raws: list[bytes] = []
    good: list[Record] = []
    bad: list[Record] = []
    for record in records:
        try:
            raws.append(raw_request(record.payload))
        except RemoteWriteDecodeError:
            bad.append(record)
            continue
        good.append(record)
    return join_requests(raws), sum(r.samples for r in good), good, bad


def _timestamp(sample: Sample) -> int:
    return sample[0]
