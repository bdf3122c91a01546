"""The sender lanes on their own: a spool, a client and a loopback receiver. The agent's
use of them is tested in tests/agent/test_push.py."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from kipu.lanes import Lanes, LaneSettings, merge
from kipu.remote_write.client import RemoteWriteClient
from kipu.remote_write.codec import decode, encode, normalise_labels
from kipu.remote_write.policy import Outcome
from kipu.spool import Record, Spool
from tests.metrics_util import eventually
from tests.support.receiver import Answer, Incoming, Receiver

UP = normalise_labels({"__name__": "up", "site_id": "a"})
LOSS = normalise_labels({"__name__": "loss", "site_id": "a"})


def test_merge_orders_samples_per_series_and_sets_aside_what_does_not_decode() -> None:
    records = [
        Record(2, encode({UP: [(2000, 2.0)], LOSS: [(2000, 0.5)]}), 2, 2000, 2000),
        Record(3, b"\xff\xff not snappy", 1, 3000, 3000),
        Record(1, encode({UP: [(1000, 1.0)]}), 1, 1000, 1000),
    ]
    body, samples, good, bad = merge(records)
    assert decode(body) == {UP: [(1000, 1.0), (2000, 2.0)], LOSS: [(2000, 0.5)]}
    assert samples == 3
    assert [r.id for r in good] == [2, 1]
    assert [r.id for r in bad] == [3]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@contextlib.asynccontextmanager
async def lanes_over(
    tmp_path: Path, receiver: Receiver, settings: LaneSettings
) -> AsyncIterator[Lanes]:
    spool = Spool(tmp_path / "spool", 1 << 24)
    await asyncio.to_thread(spool.open)
    client = RemoteWriteClient(receiver.url, user_agent="kipu-test/1", timeout=5)
    lanes = Lanes(spool, client, settings, name="test")
    lanes.opened()
    try:
        yield lanes
    finally:
        await client.close()
        await asyncio.to_thread(spool.close)


def append(spool: Spool, stamp: int, value: float = 1.0) -> Record:
    return spool.append(encode({UP: [(stamp, value)]}), 1, stamp, stamp)


async def test_undecodable_records_are_dropped_and_counted_alone(
    tmp_path: Path, receiver: Receiver
) -> None:
    async with lanes_over(tmp_path, receiver, LaneSettings()) as lanes:
        for stamp in (1000, 2000):
            append(lanes.spool, stamp)
        lanes.spool.append(b"\x05damaged", 1, 2500, 2500)
        append(lanes.spool, 3000)
        await asyncio.to_thread(lanes.spool.sync)
        lanes.opened()
        assert await lanes.drain_once(live_too=True) is Outcome.OK
        assert lanes.counters.undecodable_records == 1
        assert len(lanes.spool) == 0
    assert [t for t, _ in receiver.series("up")] == [1000, 2000, 3000]


async def test_a_refused_batch_is_bisected_newest_first(tmp_path: Path, receiver: Receiver) -> None:
    # The receiver refuses any request holding the sample at 5000: the other 15 arrive.
    receiver.answer = lambda incoming: Answer(
        400 if incoming.oldest_ms <= 5000 <= incoming.newest_ms else 204, "out of order sample"
    )
    async with lanes_over(tmp_path, receiver, LaneSettings()) as lanes:
        for n in range(16):
            append(lanes.spool, n * 1000)
        await asyncio.to_thread(lanes.spool.sync)
        lanes.opened()
        assert await lanes.drain_once(live_too=True) is Outcome.OK
        assert lanes.counters.rejected_samples == 1
        assert len(lanes.spool) == 0
    arrived = [t for t, _ in receiver.series("up")]
    assert arrived == [n * 1000 for n in range(16) if n != 5]
    # Bisection: 16 -> 8 -> 4 -> 2 -> 1, with the newer halves going first.
    refused = [r for r in receiver.requests if r.status == 400]
    assert [r.samples for r in refused] == [16, 8, 4, 2, 1]
    first_ok = next(r for r in receiver.requests if r.status == 204)
    assert first_ok.oldest_ms == 8000  # the newer half of the first split


async def test_stop_lets_a_request_under_way_finish(tmp_path: Path, receiver: Receiver) -> None:
    receiver.answer = lambda incoming: Answer(204, delay=0.5)
    settings = LaneSettings(idle_poll=0.01)
    async with lanes_over(tmp_path, receiver, settings) as lanes:
        task = asyncio.create_task(lanes.run())
        record = append(lanes.spool, 1000)
        await asyncio.to_thread(lanes.spool.sync)
        lanes.notify([record])

        async def under_way() -> bool:
            return bool(lanes._inflight)

        await eventually(under_way, within=5, step=0.001)
        await lanes.stop(grace=5)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        # Acknowledged before the lanes were cancelled: nothing to send twice later.
        assert len(lanes.spool) == 0
    assert len(receiver.requests) == 1


async def test_metadata_and_empty_requests_probe_the_receiver(
    tmp_path: Path, receiver: Receiver
) -> None:
    seen: list[Incoming] = []

    def answer(incoming: Incoming) -> Answer:
        seen.append(incoming)
        return Answer(204)

    receiver.answer = answer
    async with lanes_over(tmp_path, receiver, LaneSettings()) as lanes:
        result = await lanes.probe(encode({}))
        assert result is not None
        assert result.outcome is Outcome.OK
        assert lanes.clock_offset is not None
        assert abs(lanes.clock_offset) < 2
    assert seen[0].samples == 0
