"""Store-and-forward push: snapshots to the spool, sent by the shared lanes.

Every `push.interval` the agent takes a snapshot of every series it exposes, stamps it,
encodes it as one remote-write body and appends it to the spool, which is synced to
disk at once (so a power cut loses at most the snapshot being written). The lanes of
`kipu.lanes` send it: live first (this snapshot alone), the backlog beside it (older
snapshots merged, oldest first), with the answer rules described there.

Clocks (`kipu.clock`). A snapshot is stamped at once when the clock is trusted.
Otherwise it is held in memory with its monotonic time and, once the clock is trusted,
re-stamped `now - (monotonic now - monotonic then)` and spooled
(`kipu_push_restamped_samples_total`). While snapshots are held the pusher asks the
receiver for its clock with an empty request once per interval: an answer whose Date
agrees with ours within 2 s vouches for our clock. Held snapshots are bounded
(`MAX_HELD`: 12 hours at 15 s; the oldest are dropped and counted) and are lost if the
power goes before the clock is trusted.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from agent.config import Push
from agent.snapshots import PushSnapshot
from kipu.clock import ClockJudge, Clocks
from kipu.lanes import Lanes, LaneSettings
from kipu.remote_write.client import RemoteWriteClient, SendResult
from kipu.remote_write.codec import (
    STALE_NAN,
    InvalidLabelsError,
    Series,
    encode,
    normalise_labels,
)
from kipu.spool import Record, Spool
from kipu.supervise import supervised
from kipu.version import __version__

log = logging.getLogger(__name__)

BATCH_RECORDS = 240  # one hour of 15 s snapshots per backlog request
MAX_HELD = 2880  # snapshots held while the clock is untrusted: 12 h at 15 s
SPOOL_DIR = "spool"
EMPTY_REQUEST = encode({})
"""A valid request with no series: asks a receiver for its clock without writing."""

Snapshot = list[tuple[dict[str, str], float]]


@dataclass
class Snapshotter:
    """Turns the agent's current series into remote-write series.

    Adds `site_id`, and a stale marker for every series that was in the previous
    snapshot and is gone now (a removed target, a silent device), as the spec
    requires. Labels with an empty value are left out (Prometheus treats them as
    absent); a series whose labels remote write cannot carry is counted in `invalid`.
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


def lane_settings(config: Push) -> LaneSettings:
    """The agent's lanes: one snapshot per live request, backoff scaled to the interval.

    Retries start at the interval (at most 1 s) and grow to 20 intervals (1 s to
    5 min); while blocked, from 2 intervals (at most 30 s) to 60 (1 s to 15 min).
    """
    interval = config.interval
    return LaneSettings(
        live_records=1,
        backlog_records=BATCH_RECORDS,
        spread=config.spread,
        retry_base=min(1.0, interval),
        retry_cap=min(300.0, max(1.0, 20 * interval)),
        blocked_base=min(30.0, 2 * interval),
        blocked_cap=min(900.0, max(1.0, 60 * interval)),
        idle_poll=min(1.0, interval),
    )


class Pusher:
    """Owns the spool, the remote-write client and the lanes; takes the snapshots."""

    def __init__(
        self,
        config: Push,
        site_id: str,
        state_dir: Path,
        collect: Callable[[], Snapshot],
        *,
        clock: ClockJudge | None = None,
        clocks: Clocks | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.spool = Spool(state_dir / SPOOL_DIR, config.max_spool)
        self.snapshotter = Snapshotter(site_id, collect)
        self.clock = clock or ClockJudge(settle=config.clock_settle)
        self.clocks = clocks or Clocks()
        self.client = RemoteWriteClient(
            config.url,
            token_file=config.token_file,
            ca_file=config.ca_file,
            timeout=config.timeout,
            user_agent=f"kipu-agent/{__version__}",
        )
        self.lanes = Lanes(
            self.spool,
            self.client,
            lane_settings(config),
            name="push",
            rng=rng,
            on_answer=self._answered,
        )
        self.held: deque[tuple[float, dict[Series, float]]] = deque()
        self.snapshots = 0
        self.restamped_samples = 0
        self.held_dropped_samples = 0
        self._clock_asked = -float("inf")  # monotonic time of the last clock question

    async def open(self) -> None:
        """Open the spool (off the event loop: it reads every segment)."""
        await asyncio.to_thread(self.spool.open)
        self.lanes.opened()
        if len(self.spool):
            log.info(
                "spool holds %d snapshots (%d samples) from before",
                len(self.spool),
                self.spool.samples,
            )

    async def stop_sending(self) -> None:
        """Let requests on the wire finish (up to the push timeout, at most 5 s) and
        start no new one: call before cancelling `run`."""
        await self.lanes.stop(min(5.0, self.config.timeout))

    async def close(self) -> None:
        """Flush the spool to disk and close the client (after the loops stopped)."""
        if self.held:
            log.warning(
                "stopping with %d snapshots held for an untrusted clock: they are lost",
                len(self.held),
            )
        try:
            await asyncio.to_thread(self.spool.close)
        finally:
            await self.client.close()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(supervised("push snapshots", self._snapshot_loop))
            group.create_task(self.lanes.run())

    def snapshot_state(self) -> PushSnapshot:
        lanes = self.lanes.snapshot()
        return PushSnapshot(
            spool_bytes=self.spool.bytes,
            spool_samples=self.spool.samples,
            spool_dropped_samples=self.spool.dropped_samples,
            spool_corrupt_records=self.spool.corrupt_records,
            requests=lanes.requests,
            rejected_samples=lanes.rejected_samples,
            undecodable_records=lanes.undecodable_records,
            last_success=lanes.last_success,
            blocked=lanes.blocked,
            clock_offset=lanes.clock_offset,
            snapshots=self.snapshots,
            restamped_samples=self.restamped_samples,
            held_snapshots=len(self.held),
            held_dropped_samples=self.held_dropped_samples,
            invalid_series=self.snapshotter.invalid,
        )

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
        """Take one snapshot; stamp and spool it (with any held ones) once the clock is
        trusted, else hold it and ask the receiver for its clock."""
        self.held.append((self.clocks.monotonic(), self.snapshotter.take()))
        self.snapshots += 1
        if len(self.held) > MAX_HELD:
            _, dropped = self.held.popleft()
            self.held_dropped_samples += len(dropped)
        if not self.clock.trusted(self.clocks.wall()):
            if len(self.held) == 1:
                log.warning(
                    "clock not trusted yet (reads %s): holding snapshots",
                    time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(self.clocks.wall())),
                )
            await self._ask_receiver_clock()
            if not self.clock.trusted(self.clocks.wall()):
                return
        records = self._spool_held()
        await asyncio.to_thread(self.spool.sync)
        self.lanes.notify(records)

    def _spool_held(self) -> list[Record]:
        """Stamp every held snapshot by the (now trusted) clock and append it."""
        wall, mono = self.clocks.wall(), self.clocks.monotonic()
        records = []
        for then, series in self.held:
            if series:
                stamp = int((wall - (mono - then)) * 1000)
                body = encode_snapshot(series, stamp)
                records.append(self.spool.append(body, len(series), stamp, stamp))
        # All but the snapshot just taken waited for the clock.
        waited = list(self.held)[:-1]
        if waited:
            restamped = sum(len(series) for _, series in waited)
            log.warning(
                "clock trusted: %d held snapshots re-stamped (%d samples)", len(waited), restamped
            )
            self.restamped_samples += restamped
        self.held.clear()
        return records

    async def _ask_receiver_clock(self) -> None:
        now = self.clocks.monotonic()
        if now - self._clock_asked < self.config.interval:
            return
        self._clock_asked = now
        await self.lanes.probe(EMPTY_REQUEST)

    def _answered(self, result: SendResult) -> None:
        if self.lanes.clock_offset is not None:
            self.clock.observe_receiver(self.lanes.clock_offset)
