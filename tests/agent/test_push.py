"""The pusher: snapshots, stale markers, clocks, and every answer a receiver can give
(a real aiohttp receiver on loopback). Every test counts snapshots exactly: what was
taken is what arrived, plus what was refused and counted."""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import itertools
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from agent.config import Push
from agent.push import Pusher, Snapshotter
from kipu.clock import ClockJudge
from kipu.remote_write.codec import is_stale_marker, normalise_labels
from kipu.remote_write.policy import Backoff, Outcome
from tests.metrics_util import eventually
from tests.support.clocks import FakeClock
from tests.support.receiver import Answer, Incoming, Receiver

SERIES = 5


def collect_fixed() -> list[tuple[dict[str, str], float]]:
    return [({"__name__": f"kipu_test_{i}", "target": "gw"}, float(i)) for i in range(SERIES)]


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


def test_snapshotter_omits_empty_labels_and_counts_invalid_series() -> None:
    current = [
        ({"__name__": "kipu_wifi_clients", "device": "ap", "ssid": ""}, 3.0),
        ({"__name__": "bad name"}, 1.0),
        ({"__name__": "ok", "bad-label": "x"}, 1.0),
    ]
    snap = Snapshotter("jun-0001", lambda: list(current))
    taken = snap.take()
    assert taken == {
        (("__name__", "kipu_wifi_clients"), ("device", "ap"), ("site_id", "jun-0001")): 3.0
    }
    assert snap.invalid == 2


def push_config(url: str, **overrides: object) -> Push:
    values: dict[str, object] = {
        "url": url,
        "token_file": None,
        "ca_file": None,
        "interval": 0.05,
        "max_spool": 1 << 20,
        "timeout": 5.0,
        "spread": 0.0,
        "clock_settle": 0.0,
    }
    values.update(overrides)
    return Push(**values)  # type: ignore[arg-type]


def trusting() -> ClockJudge:
    return ClockJudge(settle=0, synced=lambda: True)


@contextlib.asynccontextmanager
async def pushing(
    tmp_path: Path,
    receiver: Receiver,
    collect: Callable[[], list[tuple[dict[str, str], float]]] = collect_fixed,
    clock: ClockJudge | None = None,
    **overrides: object,
) -> AsyncIterator[Pusher]:
    pusher = Pusher(
        push_config(receiver.url, **overrides),
        "site-1",
        tmp_path,
        collect,
        clock=clock or trusting(),
    )
    await pusher.open()
    task = asyncio.create_task(pusher.run())
    try:
        yield pusher
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await pusher.close()


async def stop_and_drain(pusher: Pusher) -> None:
    """Send what is left in the spool, ignoring the backoff (bounded)."""
    for _ in range(1000):
        if not len(pusher.spool):
            return
        outcome = await pusher.lanes.drain_once(live_too=True)
        assert outcome in (None, Outcome.OK, Outcome.REJECTED), outcome
    raise AssertionError("the spool did not drain")


@contextlib.asynccontextmanager
async def run_then_drain(
    tmp_path: Path, receiver: Receiver, **overrides: object
) -> AsyncIterator[Pusher]:
    """Like `pushing`, then stop taking snapshots and send everything left."""
    pusher = Pusher(
        push_config(receiver.url, **overrides), "site-1", tmp_path, collect_fixed, clock=trusting()
    )
    await pusher.open()
    task = asyncio.create_task(pusher.run())
    try:
        yield pusher
        await pusher.stop_sending()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await stop_and_drain(pusher)
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
) -> Callable[[Incoming], Answer]:
    return lambda incoming: Answer(status, body, headers=headers or {})


async def until(check: Callable[[], bool], within: float = 10) -> None:
    async def ready() -> bool:
        return check()

    await eventually(ready, within=within)


def stamps(receiver: Receiver, name: str = "kipu_test_0") -> list[int]:
    return [t for t, _ in receiver.series(name)]


def arrived_once(receiver: Receiver, pusher: Pusher, refused: int = 0) -> list[int]:
    """Every snapshot taken arrived once, but the `refused` ones."""
    arrived = stamps(receiver)
    assert len(arrived) == len(set(arrived)), "a snapshot arrived twice"
    assert len(arrived) == pusher.snapshots - refused
    return arrived


async def test_every_snapshot_arrives_once(tmp_path: Path, receiver: Receiver) -> None:
    async with run_then_drain(tmp_path, receiver) as pusher:
        await until(lambda: pusher.snapshots >= 10)
    arrived_once(receiver, pusher)
    assert all(v == 3.0 for _, v in receiver.series("kipu_test_3"))
    assert pusher.lanes.counters.requests["ok"] >= 10
    request = receiver.requests[0]
    assert request.headers["Content-Encoding"] == "snappy"
    assert request.headers["Content-Type"] == "application/x-protobuf"
    assert request.headers["X-Prometheus-Remote-Write-Version"] == "0.1.0"
    assert request.headers["User-Agent"].startswith("kipu-agent/")


@pytest.mark.parametrize(
    ("status", "body"),
    [(400, "out of order sample"), (413, "too big"), (500, "too old sample"), (422, "")],
)
async def test_refused_batches_split_until_only_the_old_snapshots_are_dropped(
    tmp_path: Path, receiver: Receiver, status: int, body: str
) -> None:
    receiver.answer = answering(503)
    async with run_then_drain(tmp_path, receiver) as pusher:
        await until(lambda: pusher.snapshots >= 30 and len(pusher.spool) >= 30)
        waiting = sorted(r.first_ms for r in await asyncio.to_thread(pusher.spool.oldest, 1000))
        cutoff = waiting[12]
        # Any request holding a sample older than the cut-off is refused as a whole.

        def refuse_old(incoming: Incoming) -> Answer:
            return Answer(status, body) if incoming.oldest_ms < cutoff else Answer(204)

        receiver.answer = refuse_old

        async def old_ones_gone() -> bool:
            oldest = await asyncio.to_thread(pusher.spool.oldest, 1)
            return not [r for r in oldest if r.first_ms < cutoff]

        await eventually(old_ones_gone)
    refused = 12
    arrived = arrived_once(receiver, pusher, refused)
    assert min(arrived) == cutoff  # nothing before the cut-off, everything after it
    assert pusher.lanes.counters.rejected_samples == refused * SERIES
    assert any(r.status == status and r.samples > SERIES for r in receiver.requests)


@pytest.mark.parametrize("status", [401, 403, 404, 407])
async def test_a_blocked_sender_keeps_everything_and_sends_it_when_let_in(
    tmp_path: Path, receiver: Receiver, status: int
) -> None:
    receiver.answer = answering(status, "not you")
    async with run_then_drain(tmp_path, receiver) as pusher:
        await until(lambda: pusher.lanes.blocked and pusher.snapshots >= 20)
        state = pusher.snapshot_state()
        assert state.blocked
        assert state.rejected_samples == 0
        assert pusher.spool.samples >= 20 * SERIES
        refused = len(receiver.requests)
        assert refused < pusher.snapshots / 2  # paused: far fewer requests than snapshots
        receiver.answer = answering(204)
        await until(lambda: not pusher.lanes.blocked, within=15)
    arrived_once(receiver, pusher)
    assert not pusher.snapshot_state().blocked


async def test_a_new_token_file_unblocks_at_once(tmp_path: Path, receiver: Receiver) -> None:
    token = tmp_path / "token"
    token.write_text("wrong-token\n")
    receiver.answer = lambda incoming: Answer(
        204 if incoming.headers.get("Authorization") == "Bearer right-token" else 401
    )
    async with run_then_drain(tmp_path, receiver, token_file=token) as pusher:
        # A long pause: only the token file's change can end it within this test.
        pusher.lanes.blocked_backoff = Backoff(base=120.0, cap=120.0)
        await until(lambda: pusher.lanes.blocked)
        token.write_text("right-token\n")
        started = time.monotonic()
        await until(lambda: not pusher.lanes.blocked, within=10)
        assert time.monotonic() - started < 5
    arrived_once(receiver, pusher)


async def test_a_missing_token_file_blocks_and_keeps_the_data(
    tmp_path: Path, receiver: Receiver
) -> None:
    token = tmp_path / "token"
    async with run_then_drain(tmp_path, receiver, token_file=token) as pusher:
        await until(lambda: pusher.lanes.blocked and pusher.snapshots >= 5)
        assert receiver.requests == []
        token.write_text("now-there\n")
        await until(lambda: not pusher.lanes.blocked, within=10)
    arrived_once(receiver, pusher)


async def test_server_errors_are_retried_less_and_less_often(
    tmp_path: Path, receiver: Receiver
) -> None:
    receiver.answer = answering(503, "busy")
    async with run_then_drain(tmp_path, receiver) as pusher:
        started = time.monotonic()
        await asyncio.sleep(10)
        times = [r.at - started for r in receiver.requests]
        first_half = sum(1 for t in times if t < 5)
        second_half = sum(1 for t in times if t >= 5)
        # One request per snapshot would be 100 in each half.
        assert first_half < 40, times
        assert second_half < first_half, (first_half, second_half)
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert max(gaps[-3:]) >= 0.5  # the waits grew past the push interval
        receiver.answer = answering(204)
        await until(lambda: pusher.lanes.counters.requests["ok"] > 0, within=10)
    assert pusher.lanes.counters.requests["rejected"] == 0
    arrived_once(receiver, pusher)


async def test_retry_after_is_honoured_in_full(tmp_path: Path, receiver: Receiver) -> None:
    receiver.answer = answering(429, "slow down", {"Retry-After": "2"})
    async with run_then_drain(tmp_path, receiver) as pusher:
        await until(lambda: len(receiver.requests) >= 2, within=10)
        first, second = receiver.requests[0], receiver.requests[1]
        receiver.answer = answering(204)
        await until(lambda: pusher.lanes.counters.requests["ok"] > 0)
    # 2 s, more than the retry backoff's cap (20 intervals = 1 s here).
    assert second.at - first.at >= 1.9
    arrived_once(receiver, pusher)


async def test_a_batch_that_times_out_is_sent_smaller(tmp_path: Path, receiver: Receiver) -> None:
    receiver.answer = answering(503)
    async with run_then_drain(tmp_path, receiver, timeout=0.3) as pusher:
        await until(lambda: len(pusher.spool) >= 40)
        # A slow link: anything larger than four snapshots does not finish in time.
        receiver.answer = lambda incoming: Answer(
            204, delay=2.0 if incoming.samples > 4 * SERIES else 0.0
        )
        await until(lambda: pusher.lanes.backlog_limit <= 4, within=20)
        await until(lambda: len(pusher.spool) <= 2, within=30)
    # The receiver kept what it took too long to acknowledge: sent again, it arrives
    # twice (identical samples, which Prometheus takes as duplicates).
    assert len(set(stamps(receiver))) == pusher.snapshots


async def test_live_first_after_an_outage(tmp_path: Path, receiver: Receiver) -> None:
    receiver.stop()
    async with run_then_drain(tmp_path, receiver) as pusher:
        await until(lambda: pusher.snapshots >= 20 and pusher.lanes.counters.requests["retry"] > 0)
        receiver.start()
        await until(lambda: pusher.spool.samples <= SERIES, within=20)
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
    arrived_once(receiver, pusher)


async def test_held_snapshots_are_restamped_when_the_clock_is_trusted(
    tmp_path: Path, receiver: Receiver
) -> None:
    trusted = [False]
    fake = FakeClock(time.time())
    pusher = Pusher(
        push_config(receiver.url),
        "site-1",
        tmp_path,
        collect_fixed,
        clock=ClockJudge(settle=10**9, synced=lambda: trusted[0], uptime=lambda: 0),
        clocks=fake.clocks(),
    )
    await pusher.open()
    receiver.stop()  # nobody vouches for the clock
    for _ in range(3):
        await pusher.snapshot()
        fake.advance(15)
    assert len(pusher.held) == 3
    assert pusher.spool.samples == 0
    trusted[0] = True
    fake.now_wall += 3600  # NTP stepped the clock an hour ahead
    await pusher.snapshot()
    assert pusher.restamped_samples == 3 * SERIES
    taken = sorted(r.first_ms for r in await asyncio.to_thread(pusher.spool.oldest, 10))
    assert [b - a for a, b in itertools.pairwise(taken)] == [15_000] * 3  # as they were taken
    assert taken[-1] == int(fake.now_wall * 1000)
    await pusher.close()


async def test_the_receivers_date_vouches_for_an_unsynchronised_clock(
    tmp_path: Path, receiver: Receiver
) -> None:
    unsynced = ClockJudge(settle=10**9, synced=lambda: False, uptime=lambda: 0)
    async with pushing(tmp_path, receiver, clock=unsynced) as pusher:
        await until(lambda: pusher.snapshot_state().clock_offset is not None)
        await until(lambda: len(stamps(receiver)) >= 3)
        assert abs(pusher.snapshot_state().clock_offset or 99) < 1.5
        assert not pusher.held
    arrived = stamps(receiver)
    assert abs(arrived[0] / 1000 - time.time()) < 30


async def test_a_receiver_that_disagrees_does_not_vouch(tmp_path: Path, receiver: Receiver) -> None:
    hour_ago = email.utils.formatdate(time.time() - 3600, usegmt=True)
    receiver.answer = answering(204, headers={"Date": hour_ago})
    unsynced = ClockJudge(settle=10**9, synced=lambda: False, uptime=lambda: 0)
    async with pushing(tmp_path, receiver, clock=unsynced) as pusher:
        await until(
            lambda: pusher.snapshot_state().clock_offset is not None and len(pusher.held) > 5
        )
        offset = pusher.snapshot_state().clock_offset
        assert offset is not None
        assert 3598 < offset < 3601
        assert pusher.spool.samples == 0
    assert stamps(receiver) == []
    assert all(r.samples == 0 for r in receiver.requests)  # only questions for the clock


async def test_the_backlog_takes_every_record_but_the_latest_snapshot(
    tmp_path: Path, receiver: Receiver
) -> None:
    pusher = Pusher(push_config(receiver.url), "site-1", tmp_path, collect_fixed, clock=trusting())
    await pusher.open()
    for _ in range(6):  # spooled while the uplink was down
        await pusher.snapshot()
    # The latest snapshot belongs to the live lane: the backlog leaves it alone.
    outcome = await pusher.lanes.drain_once()
    assert outcome is Outcome.OK
    assert len(stamps(receiver)) == 5
    assert len(pusher.spool) == 1
    await pusher.close()
