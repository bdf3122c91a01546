"""The ICMP targets: each probed once per interval, names resolved, statistics, link state.

`probes/icmp.py` sends one echo request and reads its reply; this module decides when
each target is probed, keeps its statistics and tells the link state machine.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass, field

from agent.config import AgentConfig, Target
from agent.link import LinkState
from agent.probes.icmp import IcmpPinger, IcmpResult
from agent.probes.stats import TargetStats
from agent.snapshots import TargetSnapshot
from kipu.clock import Clocks
from kipu.config.checks import is_ip_address

log = logging.getLogger(__name__)

RESOLVE_TIMEOUT = 5.0
RESOLVE_RETRY = 30.0


@dataclass
class TargetRuntime:
    """A target with its statistics and the address it is probed at now."""

    target: Target
    stats: TargetStats = field(default_factory=TargetStats)
    address: str | None = None
    resolve_error: str | None = None
    next_resolve: float = 0.0  # loop time
    resolving: asyncio.Future[None] | None = None
    sent: int = 0  # probes started
    judged: int = 0  # the newest probe whose result set the target's state

    def __post_init__(self) -> None:
        if is_ip_address(self.target.address):
            self.address = self.target.address


class TargetProber:
    """Probes each target once per interval, start times spread over the interval."""

    def __init__(self, pinger: IcmpPinger, link: LinkState, clocks: Clocks | None = None) -> None:
        self.pinger = pinger
        self.link = link
        self.clocks = clocks or Clocks()
        self.targets: dict[str, TargetRuntime] = {}
        self.interval = 1.0
        self.timeout = 2.0
        self.resolve_interval = 300.0

    def configure(self, config: AgentConfig) -> None:
        """Take a (new) configuration; statistics of unchanged targets carry over."""
        probes = config.probes
        self.interval, self.timeout = probes.interval, probes.timeout
        self.resolve_interval = probes.resolve_interval
        targets: dict[str, TargetRuntime] = {}
        for target in probes.targets:
            old = self.targets.get(target.name)
            targets[target.name] = (
                old if old is not None and old.target == target else TargetRuntime(target)
            )
        self.targets = targets
        roles = {t.name: t.role for t in probes.targets}
        self.link.configure(config.link.up_when, roles, self.clocks.monotonic(), self.clocks.wall())

    def snapshot(self) -> tuple[TargetSnapshot, ...]:
        return tuple(
            TargetSnapshot(r.target.name, r.target.role, r.stats.snapshot())
            for r in self.targets.values()
        )

    async def run(self) -> None:
        """Probe until cancelled."""
        count = len(self.targets)
        async with asyncio.TaskGroup() as group:
            for i, runtime in enumerate(self.targets.values()):
                offset = self.interval * i / count
                group.create_task(self._run_target(runtime, offset, group))

    async def _run_target(
        self, runtime: TargetRuntime, offset: float, group: asyncio.TaskGroup
    ) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time() + offset
        while True:
            delay = next_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            now = loop.time()
            if now - next_at > self.interval:
                # The host was suspended or the loop stalled: do not send a burst.
                next_at = now
            next_at += self.interval
            group.create_task(self._probe(runtime))

    async def _probe(self, runtime: TargetRuntime) -> None:
        runtime.sent += 1
        number = runtime.sent
        try:
            address = await self._address(runtime)
            if address is None:
                result = IcmpResult(runtime.target.address, False, error=runtime.resolve_error)
            else:
                result = await self.pinger.ping(address, self.timeout)
        except Exception:  # one bad probe must not stop the others
            log.exception("probe of %s failed", runtime.target.name)
            result = IcmpResult(runtime.target.address, False, error="internal error")
        self.record(runtime, result, number)

    def record(self, runtime: TargetRuntime, result: IcmpResult, number: int) -> None:
        """Count result `number` of a target and update the link.

        Results complete out of order when timeout > interval: a probe lost just before
        an outage ended times out after newer probes succeeded. Only a result newer than
        the last one judged may set the target's state, or the link would flap.
        """
        if self.targets.get(runtime.target.name) is not runtime:
            return  # removed by a reload meanwhile
        latest = number > runtime.judged
        runtime.stats.record(result.rtt, latest=latest)
        if not latest:
            return
        runtime.judged = number
        changed = self.link.observe(
            runtime.target.name, result.success, self.clocks.monotonic(), self.clocks.wall()
        )
        if changed is not None:
            detail = ", ".join(
                f"{name} {'ok' if ok else 'lost'}" for name, ok in self.link.results.items()
            )
            log.log(
                logging.INFO if changed else logging.WARNING,
                "link %s (%s)",
                "up" if changed else "down",
                detail,
            )

    async def _address(self, runtime: TargetRuntime) -> str | None:
        if is_ip_address(runtime.target.address):
            return runtime.target.address
        loop = asyncio.get_running_loop()
        if loop.time() >= runtime.next_resolve:
            if runtime.resolving is None:
                runtime.resolving = asyncio.ensure_future(self._resolve(runtime))
            waiting = runtime.resolving
            try:
                await asyncio.shield(waiting)
            finally:
                if runtime.resolving is waiting and waiting.done():
                    runtime.resolving = None
        return runtime.address

    async def _resolve(self, runtime: TargetRuntime) -> None:
        loop = asyncio.get_running_loop()
        name = runtime.target.address
        try:
            async with asyncio.timeout(RESOLVE_TIMEOUT):
                infos = await loop.getaddrinfo(name, None, type=socket.SOCK_RAW)
            address = str(infos[0][4][0])
        except (OSError, TimeoutError, IndexError) as err:
            reason = "timed out" if isinstance(err, TimeoutError) else str(err)
            if runtime.resolve_error is None:
                kept = f"; still probing {runtime.address}" if runtime.address else ""
                log.warning(
                    "cannot resolve %s for target %s: %s%s", name, runtime.target.name, reason, kept
                )
            runtime.resolve_error = f"cannot resolve {name}: {reason}"
            runtime.next_resolve = loop.time() + min(self.resolve_interval, RESOLVE_RETRY)
            return
        if address != runtime.address:
            log.info("target %s: %s resolves to %s", runtime.target.name, name, address)
        runtime.address = address
        runtime.resolve_error = None
        runtime.next_resolve = loop.time() + self.resolve_interval
