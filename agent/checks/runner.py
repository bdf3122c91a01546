"""The schedule of the application checks: each in a task of its own, starts spread.

A check first runs at a random moment within its first interval (so the checks of a
site, and of a fleet that boots together after a power cut, do not start at once), then
once per interval. It never overlaps itself: a run ends within its timeout, which is at
most the interval; after a run that ended late the next starts at once, and starts
missed by a whole interval or more are skipped. The checks run beside the ICMP probing
in the same event loop, all their I/O asynchronous, so a slow or dead service never
delays a probe. A reload keeps the counters and the schedule of every check whose
configuration did not change.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from agent.checks.model import RESULTS, CheckResult, Result, all_phases
from agent.config import Check
from agent.snapshots import CheckSnapshot
from kipu.supervise import supervised

if TYPE_CHECKING:
    from agent.checks.http import TlsContexts

log = logging.getLogger(__name__)

Execute = Callable[[float], Awaitable[CheckResult]]
"""One run of a check, given its deadline in seconds."""

GRACE = 5.0
"""A run that overstays its own deadline by this much is cut off (a bug, not a result)."""


def executor(check: Check, shared: Shared) -> Execute:
    """What runs `check`; each kind's libraries are imported only when a check uses it."""
    if check.http is not None:
        from agent.checks.http import HttpProber, TlsContexts  # noqa: PLC0415 - aiohttp's client

        if shared.tls is None:
            shared.tls = TlsContexts()
        return HttpProber(check.http, shared.tls).run
    if check.dns is not None:
        from agent.checks.dns import run_dns  # noqa: PLC0415 - dnspython costs memory

        return functools.partial(run_dns, check.dns)
    assert check.tcp is not None
    from agent.checks.tcp import run_tcp  # noqa: PLC0415

    return functools.partial(run_tcp, check.tcp.address)


@dataclass
class Shared:
    """What the checks share: TLS contexts (made when a first HTTP check is)."""

    tls: TlsContexts | None = None

    def reload(self) -> None:
        """Read CA files again (at a reload)."""
        if self.tls is not None:
            self.tls.clear()


def next_start(started_at: float, interval: float, now: float) -> float:
    """When the run after the one due at `started_at` starts, the last one ending `now`.

    A run as long as its interval starts the next at once (it is due already); a
    suspended host or a stalled loop skips the starts missed instead of catching up.
    """
    due = started_at + interval
    late = now - due
    if late > 0:
        due += interval * math.floor(late / interval)
    return due


@dataclass
class CheckRuntime:
    """A configured check with its counters and its last result."""

    check: Check
    execute: Execute
    runs: dict[Result, int] = field(default_factory=lambda: dict.fromkeys(RESULTS, 0))
    last: CheckResult | None = None
    success: bool | None = None
    tls_expiry: float | None = None

    def record(self, result: CheckResult) -> None:
        previous = self.last
        self.runs[result.result] += 1
        self.last = result
        self.success = result.success
        if result.tls_expiry is not None:
            self.tls_expiry = result.tls_expiry
        name, kind = self.check.name, self.check.kind
        if not result.success and (previous is None or previous.result != result.result):
            log.warning("check %s (%s) failed: %s: %s", name, kind, result.result, result.detail)
        elif result.success and previous is not None and not previous.success:
            log.info("check %s (%s) is ok again: %s", name, kind, result.detail)

    def snapshot(self) -> CheckSnapshot:
        kind = self.check.kind
        return CheckSnapshot(
            name=self.check.name,
            kind=kind,
            success=self.success,
            phases=all_phases(kind, self.last.phases) if self.last is not None else (),
            runs=tuple(self.runs.items()),
            tls_expiry=self.tls_expiry,
        )


class CheckRunner:
    """Runs every configured check on its own schedule until cancelled."""

    def __init__(
        self,
        make_executor: Callable[[Check, Shared], Execute] = executor,
        rng: random.Random | None = None,
    ) -> None:
        self.make_executor = make_executor
        self.shared = Shared()
        self.rng = rng or random.Random()
        self.runtimes: dict[str, CheckRuntime] = {}
        self._changed = asyncio.Event()

    def configure(self, checks: tuple[Check, ...]) -> None:
        """Take a (new) list of checks; unchanged ones keep their counters and schedule."""
        runtimes: dict[str, CheckRuntime] = {}
        self.shared.reload()
        for check in checks:
            old = self.runtimes.get(check.name)
            if old is not None and old.check == check:
                runtimes[check.name] = old
            else:
                runtimes[check.name] = CheckRuntime(check, self.make_executor(check, self.shared))
        self.runtimes = runtimes
        self._changed.set()

    def snapshot(self) -> tuple[CheckSnapshot, ...]:
        return tuple(runtime.snapshot() for runtime in self.runtimes.values())

    async def run(self) -> None:
        """Start a task per check; after each `configure`, stop the tasks of checks that
        were removed or changed and start those of new ones."""
        tasks: dict[str, tuple[CheckRuntime, asyncio.Task[None]]] = {}
        async with asyncio.TaskGroup() as group:
            while True:
                self._changed.clear()
                wanted = self.runtimes
                for name, (runtime, task) in list(tasks.items()):
                    if wanted.get(name) is not runtime:
                        task.cancel()
                        del tasks[name]
                for name, runtime in wanted.items():
                    if name not in tasks:
                        loop = functools.partial(self._run_check, runtime)
                        task = group.create_task(supervised(f"check {name}", loop))
                        tasks[name] = (runtime, task)
                await self._changed.wait()

    async def _run_check(self, runtime: CheckRuntime) -> None:
        loop = asyncio.get_running_loop()
        interval = runtime.check.interval
        next_at = loop.time() + self.rng.uniform(0.0, interval)
        while True:
            delay = next_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await self.run_once(runtime)
            next_at = next_start(next_at, interval, loop.time())

    async def run_once(self, runtime: CheckRuntime) -> None:
        """Run a check once and record its result."""
        deadline = runtime.check.deadline
        try:
            async with asyncio.timeout(deadline + GRACE):
                result = await runtime.execute(deadline)
        except Exception:  # a bug in a check must not stop its schedule
            log.exception("check %s could not run", runtime.check.name)
            runtime.success = False
            return
        if self.runtimes.get(runtime.check.name) is runtime:
            runtime.record(result)
