"""How busy the collector is, to put backlog off before live.

After a region's power returns, a thousand sites may send hours of backlog at once:
more than one process can take. Live pushes must still reach the NOC within a fraction
of a second. So the collector watches its event loop every 50 ms: how late the loop
wakes up (the lag) and how much of the CPU it may use it used (the load: the loop
thread's CPU time over the time passed, or the whole process's over the time passed
times the cores it may run on, whichever is higher, since worker threads decompressing
backlog take their CPU from the loop when the cores are few), both smoothed. While
the lag passes 20 ms or the load 70%,
backlog requests (marked by kipu agents with `X-Kipu-Backlog`, or merely large) are
answered 429, before their body is decoded, with a Retry-After spread over a few
seconds; live pushes are always served. The backlog then flows at the pace the
collector can afford, and live pushes find a loop with room to spare: a loop kept
below saturation answers in milliseconds, one at 100% queues every request.

Lag and load are looked at every 50 ms, and a storm's first second brings hundreds of
backlog pushes: all would pass the gate before it closes, and their decoding, a few
milliseconds each, would stop the loop for seconds. So backlog pushes are also let in
only while fewer than 64 are under way (being read, waiting or worked on), and only
one at a time is decoded and stored; the others wait their turn with their body read.
(Two at a time gave no more backlog throughput in the load benchmark, and a worse live
p99 during the storm: BENCHMARKS.md.)
"""

from __future__ import annotations

import asyncio
import os
import random
import time

TICK = 0.05  # seconds between looks at the loop
SMOOTHING = 0.3  # weight of the newest lag in the moving average
BUSY_LAG = 0.02  # seconds of average lag beyond which backlog is put off
BUSY_LOAD = 0.7  # share of the CPU used, beyond which the same
BACKLOG_HELD = 64  # backlog pushes under way at most
BACKLOG_WORKING = 1  # of which decoded and stored at once
RETRY_AFTER = (2.0, 10.0)  # seconds, spread so that refused sites do not return together


class Pressure:
    """The event loop's smoothed lag and load, kept by `run`."""

    def __init__(
        self,
        busy_lag: float = BUSY_LAG,
        busy_load: float = BUSY_LOAD,
        rng: random.Random | None = None,
    ) -> None:
        self.busy_lag = busy_lag
        self.busy_load = busy_load
        self.lag = 0.0
        self.load = 0.0
        self.backlog_held = 0
        self.turn = asyncio.Semaphore(BACKLOG_WORKING)
        """Held by a backlog push while it is decoded and stored."""
        self.refused = 0
        self._rng = rng or random.Random()

    @property
    def busy(self) -> bool:
        return self.lag > self.busy_lag or self.load > self.busy_load

    def let_in(self) -> bool:
        """Whether a backlog push may come in now; if so, `let_out` when it is done."""
        if self.busy or self.backlog_held >= BACKLOG_HELD:
            return False
        self.backlog_held += 1
        return True

    def let_out(self) -> None:
        self.backlog_held -= 1

    def retry_after(self) -> float:
        return self._rng.uniform(*RETRY_AFTER)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
        while True:
            started, thread_cpu, process_cpu = loop.time(), time.thread_time(), time.process_time()
            due = started + TICK
            await asyncio.sleep(TICK)
            woke = loop.time()
            late = max(0.0, woke - due)
            self.lag += SMOOTHING * (late - self.lag)
            passed = max(woke - started, TICK)
            load = max(
                (time.thread_time() - thread_cpu) / passed,
                (time.process_time() - process_cpu) / (passed * max(1, cores)),
            )
            self.load += SMOOTHING * (min(1.0, load) - self.load)
