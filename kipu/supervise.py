"""Long-running loops that survive their own bugs.

One bad SNMP device, one undecodable record or one unexpected exception in a sender
must not stop the probing or the heartbeat: every long-running loop runs under
`supervised`, which logs what escaped, waits a little longer each time, and starts the
loop again. Only cancellation (a clean stop) ends it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)

RESTART_PAUSE = 1.0
RESTART_PAUSE_CAP = 60.0


async def supervised(
    name: str,
    loop: Callable[[], Coroutine[Any, Any, None]],
    *,
    pause: float | None = None,
    pause_cap: float | None = None,
) -> None:
    """Run `loop()` until cancelled, starting it again whenever it raises or returns.

    The pause before a restart doubles after each failure in a row (up to `pause_cap`)
    and starts again from `pause` once the loop ran for longer than `pause_cap`.
    """
    pause = RESTART_PAUSE if pause is None else pause
    pause_cap = RESTART_PAUSE_CAP if pause_cap is None else pause_cap
    failures = 0
    timer = asyncio.get_running_loop().time
    while True:
        started = timer()
        try:
            await loop()
        except Exception:
            outcome = "failed"
            log.exception("%s failed; starting it again", name)
        else:
            outcome = "ended"
            log.error("%s ended unexpectedly; starting it again", name)
        if timer() - started > pause_cap:
            failures = 0
        delay = min(pause_cap, pause * 2.0**failures)
        failures += 1
        log.debug("%s %s, restarting in %.1fs", name, outcome, delay)
        await asyncio.sleep(delay)
