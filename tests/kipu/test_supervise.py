"""Supervised loops: an exception is logged and the loop starts again; cancel ends it."""

from __future__ import annotations

import asyncio
import itertools
import logging

import pytest

from kipu.supervise import supervised


async def test_a_failing_loop_is_started_again_with_growing_pauses(
    caplog: pytest.LogCaptureFixture,
) -> None:
    starts: list[float] = []
    loop = asyncio.get_running_loop()
    recovered = asyncio.Event()

    async def flaky() -> None:
        starts.append(loop.time())
        if len(starts) <= 3:
            raise RuntimeError(f"bad device #{len(starts)}")
        recovered.set()
        await asyncio.Event().wait()  # runs for good now

    caplog.set_level(logging.ERROR, logger="kipu.supervise")
    task = asyncio.create_task(supervised("polling", flaky, pause=0.05, pause_cap=1.0))
    async with asyncio.timeout(5):
        await recovered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert gaps[0] >= 0.05
    assert gaps[1] >= 0.1
    assert gaps[2] >= 0.2
    failures = [r for r in caplog.records if "polling failed" in r.getMessage()]
    assert len(failures) == 3
    assert failures[0].exc_info is not None  # the traceback is in the log


async def test_a_loop_that_returns_is_started_again(caplog: pytest.LogCaptureFixture) -> None:
    runs = 0
    third = asyncio.Event()

    async def returns() -> None:
        nonlocal runs
        runs += 1
        if runs == 3:
            third.set()

    task = asyncio.create_task(supervised("heartbeat", returns, pause=0.01, pause_cap=0.02))
    async with asyncio.timeout(5):
        await third.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert any("heartbeat ended unexpectedly" in r.getMessage() for r in caplog.records)


async def test_cancellation_is_not_caught() -> None:
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(supervised("forever", forever))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
