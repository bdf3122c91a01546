"""How busy the collector is: the event loop's lag, to put backlog off before live.

After a region's power returns, a thousand sites may send hours of backlog at once:
more than one process can take. Live pushes must still reach the NOC within a fraction
of a second. So the collector watches how late its event loop wakes up (a timer set
every 50 ms, its overshoot smoothed); while that lag is high, backlog requests (marked
by kipu agents with `X-Kipu-Backlog`, or merely large) are answered 429 at once, before
their body is read, with a Retry-After spread over a few seconds; live pushes are
always served. The backlog then flows at the pace the collector can afford.
"""

from __future__ import annotations

import asyncio
import random

TICK = 0.05  # seconds between looks at the loop
SMOOTHING = 0.3  # weight of the newest lag in the moving average
BUSY_LAG = 0.02  # seconds of average lag beyond which backlog is put off
RETRY_AFTER = (2.0, 10.0)  # seconds, spread so that refused sites do not return together


class Pressure:
    """The event loop's smoothed lag, kept by `run`."""

    def __init__(self, busy_lag: float = BUSY_LAG, rng: random.Random | None = None) -> None:
        self.busy_lag = busy_lag
        self.lag = 0.0
        self.refused = 0
        self._rng = rng or random.Random()

    @property
    def busy(self) -> bool:
        return self.lag > self.busy_lag

    def retry_after(self) -> float:
        return self._rng.uniform(*RETRY_AFTER)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + TICK
            await asyncio.sleep(TICK)
            late = max(0.0, loop.time() - due)
            self.lag += SMOOTHING * (late - self.lag)
