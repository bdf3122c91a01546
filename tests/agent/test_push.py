"""The pusher: snapshots, stale markers, clocks, and every answer a receiver can give
(a real aiohttp receiver on loopback)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from agent.config import Push
from agent.push import CLOCK_FLOOR, ClockJudge, Pusher, Snapshotter, merge
from agent.remote_write import STALE_NAN, decode, encode, is_stale_marker, normalise_labels
from agent.spool import Record
from tests.metrics_util import eventually
from tests.support.receiver import Answer, Receiver

SERIES = 5


def collect_fixed() -> list[tuple[dict[str, str], float]]:
    return [({"__name__": f"kipu_test_{i}", "target": "gw"}, float(i)) for i in range(SERIES)]


def test_clock_trust_rule() -> None:
    synced = ClockJudge(settle=600, synced=lambda: True, uptime=lambda: 5)
    unknown_fresh = ClockJudge(settle=600, synced=lambda: None, uptime=lambda: 5)
    unsynced_settled = ClockJudge(settle=600, synced=lambda: False, uptime=lambda: 700)
    assert synced.trusted(CLOCK_FLOOR + 1)
    assert not synced.trusted(86400 * 365)  # booted in 1971: never trusted
    assert not unknown_fresh.trusted(CLOCK_FLOOR + 1)
    assert unsynced_settled.trusted(CLOCK_FLOOR + 1)


def test_snapshotter_adds_site_and_marks_gone_series_stale() -> None:
    current = [({"__name__": "a", "x": "1"}, 1.0), ({"__name__": "b"}, 2.0)]
    snap = Snapshotter("jun-0001", lambda: list(current))
    first = snap.take()
    assert first[normalise_labels({"__name__": "a", "x": "1", "site_id": "jun-0001"})] == 1.0
    current.pop(0)
    second = snap.take()
    gone = normalise_labels({"__name__": "a", "x": "1", "site_id": "jun-0001"})
    assert is_stale_marker(second[gone])
    assert gone not in snap.take()  # marked once, then forgotten


def test_merge_orders_samples_per_series() -> None:
    series = normalise_labels({"__name__": "m"})
    records = [
        Record(2, encode({series: [(2000, 2.0)]}), 1, 2000, 2000),
        Record(1, encode({series: [(1000, 1.0)]}), 1, 1000, 1000),
    ]
    body, count = merge(records)
    assert decode(body)[series] == [(1000, 1.0), (2000, 2.0)]
    assert count == 2


def push_config(url: str, **overrides: object) -> Push:
    values: dict[str, object] = {
        "url": url,
        "token_file": None,
        "ca_file": None,
        "interval": 0.05,
        "max_spool": 1 << 20,
        "timeout": 0.3,
        "spread": 0.0,
        "clock_settle": 0.0,
    }
    values.update(overrides)
    return Push(**values)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def pushing(
    tmp_path: Path,
    receiver: Receiver,
    collect: Callable[[], list[tuple[dict[str, str], float]]] = collect_fixed,
    **overrides: object,
) -> AsyncIterator[Pusher]:
    pusher = Pusher(
        push_config(receiver.url, **overrides),
        "site-1",
        tmp_path,
        collect,
        clock=ClockJudge(settle=0, synced=lambda: True),
    )
    pusher.open()
    task = asyncio.create_task(pusher.run())
    try:
        yield pusher
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await pusher.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def answering(
    status: int, body: str = "", headers: dict[str, str] | None = None
) -> Callable[[int], Answer]:
    return lambda samples: Answer(status, body, headers=headers or {})


async def until(check: Callable[[], bool], within: float = 10) -> None:
    async def ready() -> bool:
        return check()

    await eventually(ready, within=within)


async def test_all_snapshots_arrive(tmp_path: Path, receiver: Receiver) -> None:
    async with pushing(tmp_path, receiver) as pusher:
        await until(lambda: pusher.stats.snapshots >= 10 and pusher.spool.samples == 0)
        assert pusher.stats.requests["ok"] >= 10
    values = receiver.series("kipu_test_3")
    assert len(values) == pusher.stats.snapshots or len(values) == pusher.stats.snapshots - 1
    assert all(v == 3.0 for _, v in values)
    request = receiver.requests[0]
    assert request.headers["Content-Encoding"] == "snappy"
    assert request.headers["Content-Type"] == "application/x-protobuf"
    assert request.headers["X-Prometheus-Remote-Write-Version"] == "0.1.0"
    assert request.headers["User-Agent"].startswith("kipu-agent/")


@pytest.mark.parametrize(
    ("status", "body"),
    [(400, "bad"), (401, "who are you"), (413, "too big"), (500, "too old sample"), (404, "")],
)
async def test_permanent_refusals_are_counted_and_dropped(
    tmp_path: Path, receiver: Receiver, status: int, body: str
) -> None:
    receiver.answer = answering(status, body)
    async with pushing(tmp_path, receiver) as pusher:
        await until(lambda: pusher.stats.requests["rejected"] >= 5)
        await until(lambda: pusher.spool.samples == 0)
        assert pusher.stats.requests["retry"] == 0
        assert pusher.stats.rejected_samples >= 5 * SERIES
    assert receiver.samples == []


@pytest.mark.parametrize(("status", "body"), [(500, "internal"), (503, "busy"), (502, "")])
async def test_server_errors_are_retried_and_nothing_is_lost(
    tmp_path: Path, receiver: Receiver, status: int, body: str
) -> None:
    receiver.answer = answering(status, body)
    async with pushing(tmp_path, receiver) as pusher:
        await until(lambda: pusher.stats.requests["retry"] >= 3 and pusher.stats.snapshots >= 10)
        assert pusher.spool.samples >= 10 * SERIES
        receiver.answer = answering(204)
        await until(lambda: pusher.spool.samples == 0)
        taken = pusher.stats.snapshots
    assert pusher.stats.requests["rejected"] == 0
    # Every snapshot taken before the stop arrived exactly once.
    stamps = [t for t, _ in receiver.series("kipu_test_0")]
    assert len(stamps) == len(set(stamps))
    assert taken - 1 <= len(stamps) <= taken


async def test_429_retry_after_is_honoured(tmp_path: Path, receiver: Receiver) -> None:
    receiver.answer = answering(429, "slow down", {"Retry-After": "1"})
    async with pushing(tmp_path, receiver) as pusher:
        await until(lambda: len(receiver.requests) >= 2, within=10)
        first, second = receiver.requests[0], receiver.requests[1]
        assert first.status == 429
        assert pusher.stats.requests["retry"] >= 1
        receiver.answer = answering(204)
        await until(lambda: pusher.spool.samples == 0)
    assert second.newest_ms - first.newest_ms >= 900  # it waited out the Retry-After
    assert receiver.series("kipu_test_1")


async def test_hanging_receiver_times_out_and_retries(tmp_path: Path, receiver: Receiver) -> None:
    receiver.answer = lambda samples: Answer(204, delay=3.0)
    async with pushing(tmp_path, receiver, timeout=0.2) as pusher:
        await until(lambda: pusher.stats.requests["retry"] >= 2)
        assert pusher.spool.samples > 0
        receiver.answer = answering(204)
        await until(lambda: pusher.spool.samples == 0)


async def test_413_splits_a_backlog_batch(tmp_path: Path, receiver: Receiver) -> None:
    receiver.answer = answering(503)
    async with pushing(tmp_path, receiver) as pusher:
        await until(lambda: pusher.stats.snapshots >= 12)
        # Now only single snapshots fit.
        receiver.answer = lambda samples: Answer(413 if samples > SERIES else 204)
        await until(lambda: pusher.spool.samples == 0, within=20)
        taken = pusher.stats.snapshots
    stamps = [t for t, _ in receiver.series("kipu_test_0")]
    assert taken - 1 <= len(stamps) <= taken  # nothing dropped: split down to one each
    assert any(r.status == 413 for r in receiver.requests)


async def test_live_first_after_an_outage(tmp_path: Path, receiver: Receiver) -> None:
    receiver.stop()
    async with pushing(tmp_path, receiver) as pusher:
        await until(lambda: pusher.stats.snapshots >= 20 and pusher.stats.requests["retry"] > 0)
        receiver.start()
        await until(lambda: pusher.spool.samples == 0, within=20)
    first_ok = next(r for r in receiver.requests if r.status == 204)
    # The first request after the outage carries the newest snapshot alone...
    assert first_ok.samples == SERIES
    assert first_ok.newest_ms == max(
        r.newest_ms for r in receiver.requests[: receiver.requests.index(first_ok) + 1]
    )
    # ...and the backlog follows in batches, oldest first.
    batches = [r for r in receiver.requests if r.status == 204 and r.samples > SERIES]
    assert batches
    assert batches[0].oldest_ms < first_ok.newest_ms


async def test_held_snapshots_are_restamped_when_the_clock_is_trusted(
    tmp_path: Path, receiver: Receiver
) -> None:
    trusted = [False]
    pusher = Pusher(
        push_config(receiver.url),
        "site-1",
        tmp_path,
        collect_fixed,
        clock=ClockJudge(settle=10**9, synced=lambda: trusted[0], uptime=lambda: 0),
    )
    pusher.open()
    for _ in range(3):
        await pusher.snapshot()
        await asyncio.sleep(0.05)
    assert len(pusher.held) == 3
    assert pusher.spool.samples == 0
    trusted[0] = True
    await pusher.snapshot()
    assert pusher.stats.restamped_samples == 3 * SERIES
    stamps = sorted(r.first_ms for r in pusher.spool.oldest(10))
    assert len(stamps) == 4
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert all(40 <= g <= 200 for g in gaps), gaps  # spaced as they were taken
    await pusher.close()


def test_stale_nan_is_the_spec_bit_pattern() -> None:
    assert math.isnan(STALE_NAN)
    assert is_stale_marker(STALE_NAN)
    assert not is_stale_marker(float("nan"))


async def test_the_backlog_takes_every_record_but_the_latest_snapshot(
    tmp_path: Path, receiver: Receiver
) -> None:
    pusher = Pusher(
        push_config(receiver.url),
        "site-1",
        tmp_path,
        collect_fixed,
        clock=ClockJudge(settle=0, synced=lambda: True),
    )
    pusher.open()
    for _ in range(5):  # spooled while the uplink was down
        await pusher.snapshot()
    await pusher.snapshot()  # the latest snapshot: live sends it and it is acknowledged
    live = pusher.spool.newest(1)[0]
    pusher.spool.ack([live.id])
    # The newest waiting record is now an old one: the backlog must send it too.
    result = await pusher.drain_once()
    assert result is not None
    assert result.outcome.value == "ok"
    assert pusher.spool.samples == 0
    assert len(receiver.series("kipu_test_0")) == 5
    await pusher.close()
