"""Power cuts on boxes without a real-time clock: the offline gap is counted once the
clock is trusted, from the monotonic time since the start (injected clocks; the agent
runs in-process, probing loopback)."""

from __future__ import annotations

import asyncio
import json
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from agent.app import Agent
from agent.config import load_config
from agent.link import LinkCounters
from agent.state import STATE_FILE, SavedState, StateStore
from kipu.clock import CLOCK_FLOOR, ClockJudge
from tests.metrics_util import eventually
from tests.support.clocks import FakeClock
from tests.support.receiver import Receiver

BOOTED_IN_1970 = 86_400.0 * 3  # what an RTC-less box's clock reads after boot
HEARTBEAT = CLOCK_FLOOR + 10 * 86_400  # the last heartbeat before the power cut


def write_config(tmp_path: Path, push: str = "") -> Path:
    path = tmp_path / "agent.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            site_id: rtc-0001
            state_dir: {tmp_path / "state"}
            heartbeat_interval: 1h
            probes:
              interval: 50ms
              timeout: 200ms
              targets:
                - {{name: gw, address: 127.0.0.1, role: gateway}}
            """
        )
        + push
    )
    return path


def saved_before_the_cut(tmp_path: Path, heartbeat: float, untrusted_run: float = 0.0) -> None:
    store = StateStore(tmp_path / "state")
    store.open()
    counters = LinkCounters(up_seconds=7200.0, down_seconds=60.0, offline_seconds=100.0)
    store.save(SavedState(counters, heartbeat, None, untrusted_run))
    store.close()


@asynccontextmanager
async def running(agent: Agent) -> AsyncIterator[Agent]:
    await agent.start()
    task = asyncio.create_task(agent.run())
    try:
        yield agent
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await agent.stop()


async def test_a_cut_is_counted_once_ntp_sets_the_clock(tmp_path: Path) -> None:
    await asyncio.to_thread(saved_before_the_cut, tmp_path, HEARTBEAT)
    fake = FakeClock(BOOTED_IN_1970)
    synced = [False]
    judge = ClockJudge(settle=10**9, synced=lambda: synced[0], uptime=lambda: 0.0)
    path = write_config(tmp_path)
    agent = Agent(
        await asyncio.to_thread(load_config, path), path, clocks=fake.clocks(), clock=judge
    )
    async with running(agent):
        fake.advance(45)  # the agent runs 45 s with the clock at 1970
        await agent.save_state()  # a heartbeat while untrusted
        assert agent.link.counters.offline_seconds == 100.0  # not counted yet
        saved = json.loads((tmp_path / "state" / STATE_FILE).read_text())
        assert saved["heartbeat"] == HEARTBEAT  # the last trusted one is kept
        assert saved["untrusted_run"] == 45.0
        # NTP: the box booted 3 h after the last heartbeat, and has run 45 s since.
        cut = 3 * 3600.0
        fake.now_wall = HEARTBEAT + cut + 45
        synced[0] = True
        await eventually(lambda: _offline_is(agent, 100.0 + cut), within=5)
        await agent.save_state()
    saved = json.loads((tmp_path / "state" / STATE_FILE).read_text())
    assert saved["counters"]["offline_seconds"] == 100.0 + cut
    assert saved["untrusted_run"] == 0.0
    assert saved["heartbeat"] == fake.now_wall


async def test_a_second_cut_before_the_clock_is_trusted_counts_both(tmp_path: Path) -> None:
    await asyncio.to_thread(saved_before_the_cut, tmp_path, HEARTBEAT)
    path = write_config(tmp_path)
    judge = ClockJudge(settle=10**9, synced=lambda: False, uptime=lambda: 0.0)
    first = FakeClock(BOOTED_IN_1970)
    agent = Agent(
        await asyncio.to_thread(load_config, path), path, clocks=first.clocks(), clock=judge
    )
    async with running(agent):
        first.advance(600)  # ten minutes of running, never trusted
        await agent.save_state()
    # The power goes again (the last save stands), for 20 minutes this time. Then the
    # box boots and NTP sets the clock at once.
    second = FakeClock(HEARTBEAT + 3600 + 600 + 1200)  # cut 1 h, ran 10 min, cut 20 min
    ntp = ClockJudge(settle=10**9, synced=lambda: True, uptime=lambda: 0.0)
    agent = Agent(
        await asyncio.to_thread(load_config, path), path, clocks=second.clocks(), clock=ntp
    )
    async with running(agent):
        assert agent.link.counters.offline_seconds == 100.0 + 3600 + 1200


async def test_the_receivers_date_vouches_and_the_cut_is_counted(tmp_path: Path) -> None:
    cut = 5400.0
    await asyncio.to_thread(saved_before_the_cut, tmp_path, time.time() - cut)
    with Receiver() as receiver:
        push = textwrap.dedent(
            f"""\
            push:
              url: {receiver.url}
              interval: 100ms
              timeout: 2s
              spread: 0s
              clock_settle: 1h
            """
        )
        path = write_config(tmp_path, push)
        # No NTP discipline and a fresh boot: only the receiver can vouch for the clock.
        judge = ClockJudge(settle=3600, synced=lambda: None, uptime=lambda: 5.0)
        agent = Agent(await asyncio.to_thread(load_config, path), path, clock=judge)
        async with running(agent):
            await eventually(lambda: _offline_is(agent, 100.0 + cut, tolerance=3), within=10)
            assert agent.pusher is not None
            await eventually(_pushed(receiver), within=10)
            offset = agent.pusher.snapshot_state().clock_offset
            assert offset is not None
            assert abs(offset) < 2


async def _offline_is(agent: Agent, expected: float, tolerance: float = 0.0) -> bool:
    return abs(agent.link.counters.offline_seconds - expected) <= tolerance


def _pushed(receiver: Receiver) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return bool(receiver.series("kipu_agent_offline_seconds_total"))

    return check
