"""The agent's runtime: one event loop, the probing and heartbeat loops, the HTTP API."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from agent import metrics
from agent.checks.runner import CheckRunner
from agent.config import AgentConfig, load_config
from agent.link import LinkState
from agent.probes.icmp import IcmpPinger
from agent.snapshots import AgentSnapshot
from agent.state import OfflineGap, SavedState, StateStore, read_boot_time
from agent.targets import TargetProber
from agent.throughput import ThroughputTester, results_json
from kipu.clock import ClockJudge, Clocks
from kipu.config import ConfigError
from kipu.service import serve_app
from kipu.supervise import supervised
from kipu.version import __version__

if TYPE_CHECKING:
    from agent.device_poller import DevicePoller
    from agent.push import Pusher

log = logging.getLogger(__name__)

DEFAULT_CLOCK_SETTLE = 600.0
"""Without push (and so without `push.clock_settle`): trust an unsynchronised clock after
ten minutes of uptime."""
ACCOUNTING_TICK = 1.0
"""How often the heartbeat loop looks whether the clock became trusted."""


class RunLoopEndedError(Exception):
    """The agent's run loop ended by itself: the process must exit and be restarted."""


class Agent:
    """Everything the agent runs, independent of HTTP."""

    def __init__(
        self,
        config: AgentConfig,
        config_path: str | Path | None = None,
        pinger: IcmpPinger | None = None,
        *,
        clocks: Clocks | None = None,
        clock: ClockJudge | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.clocks = clocks or Clocks()
        settle = config.push.clock_settle if config.push else DEFAULT_CLOCK_SETTLE
        self.clock = clock or ClockJudge(settle=settle)
        self.pinger = pinger or IcmpPinger()
        self.store = StateStore(config.state_dir)
        self.link = LinkState(rule=config.link.up_when, roles={})
        self.prober = TargetProber(self.pinger, self.link, self.clocks)
        self.devices: DevicePoller | None = None  # created when SNMP or WiFi is configured
        self.checks = CheckRunner()
        self.throughput = ThroughputTester(config.state_dir)
        self.registry = metrics.make_registry(self.snapshot)
        self.pusher: Pusher | None = None
        if config.push is not None:
            # protobuf and cramjam cost memory: load them only when pushing is configured.
            from agent.push import Pusher  # noqa: PLC0415

            registry = self.registry
            self.pusher = Pusher(
                config.push,
                config.site_id,
                config.state_dir,
                lambda: metrics.samples(registry),
                clock=self.clock,
                clocks=self.clocks,
            )
        self.failed = asyncio.Event()
        self._offline: OfflineGap | None = None
        self._seq = 0
        self._prober_task: asyncio.Task[None] | None = None
        self._devices_task: asyncio.Task[None] | None = None
        self._group: asyncio.TaskGroup | None = None
        self._reload_lock = asyncio.Lock()

    def snapshot(self) -> AgentSnapshot:
        """Everything the metrics show, as of now."""
        devices, local = self.devices.snapshot() if self.devices is not None else ((), None)
        return AgentSnapshot(
            version=__version__,
            boot_time=read_boot_time(),
            targets=self.prober.snapshot(),
            link=self.link.snapshot(self.clocks.monotonic()),
            devices=devices,
            local_wifi=local,
            push=self.pusher.snapshot_state() if self.pusher is not None else None,
            checks=self.checks.snapshot(),
            throughput=self.throughput.snapshot(),
        )

    async def start(self) -> None:
        """Open the state folder and the ICMP socket; raises when either is impossible."""
        await asyncio.to_thread(self.store.open)
        try:
            saved = await asyncio.to_thread(self.store.load)
            if saved is not None:
                self.link.counters = dataclasses.replace(saved.counters)
            self._offline = OfflineGap(saved, self.clocks.monotonic())
            self._account_offline()
            self.pinger.open()
            if self.pusher is not None:
                await self.pusher.open()
            self.prober.configure(self.config)
            await self._configure_devices(self.config)
            self.checks.configure(self.config.checks)
            await self.throughput.open()
            self.throughput.configure(self.config.throughput, self.config.push)
            await self.save_state()
        except BaseException:
            self.store.close()
            raise
        log.info(
            "kipu-agent %s for site %s: %d targets every %gs, %d checks, state in %s",
            __version__,
            self.config.site_id,
            len(self.config.probes.targets),
            self.config.probes.interval,
            len(self.config.checks),
            self.config.state_dir,
        )

    async def run(self) -> None:
        """Run the probing, polling, heartbeat and push loops until cancelled.

        Each loop is supervised: one that fails is logged and started again, so one bad
        component never stops the others. If this returns or raises anyway, the
        process must end (`failed` is set by `serve`'s watcher).
        """
        async with asyncio.TaskGroup() as group:
            self._group = group
            self._prober_task = group.create_task(supervised("probing", self.prober.run))
            if self.devices is not None:
                self._devices_task = group.create_task(
                    supervised("device polling", self.devices.run)
                )
            group.create_task(supervised("heartbeat", self._heartbeat))
            # The checks' runner follows reloads by itself (see `apply`).
            group.create_task(supervised("application checks", self.checks.run))
            group.create_task(supervised("throughput tests", self.throughput.run))
            if self.pusher is not None:
                group.create_task(supervised("push", self.pusher.run))

    async def stop(self) -> None:
        """Flush the spool, save the counters, release the state folder (after run())."""
        self.pinger.close()
        if self.devices is not None:
            self.devices.close()
        try:
            if self.pusher is not None:
                await self.pusher.close()
        finally:
            try:
                await self.save_state()
            finally:
                self.store.close()

    def _account_offline(self) -> bool:
        """With the clock trusted, move the heartbeat on and count this start's offline
        gap (once); True when the gap was counted just now."""
        offline = self._offline
        wall = self.clocks.wall()
        if offline is None or not self.clock.trusted(wall):
            return False
        first = offline.gap is None
        gap = offline.resolve(wall, self.clocks.monotonic())
        if gap > 0:
            self.link.counters.offline_seconds += gap
            log.warning("agent was not running for %.0f s since its last heartbeat", gap)
        return first

    def _state_now(self) -> SavedState:
        """The counters as of now, copied, with the heartbeat and a sequence number."""
        self._account_offline()
        mono = self.clocks.monotonic()
        self.link.advance(mono)
        heartbeat, ran = self._offline.heartbeat(mono) if self._offline else (None, 0.0)
        self._seq += 1
        counters = dataclasses.replace(self.link.counters)
        return SavedState(counters, heartbeat, read_boot_time(), ran, self._seq)

    async def save_state(self) -> None:
        """Save the counters (fsync on an SD card can take long: off the event loop)."""
        await asyncio.to_thread(self.store.save, self._state_now())

    async def _heartbeat(self) -> None:
        loop = asyncio.get_running_loop()
        next_save = loop.time() + self.config.heartbeat_interval
        while True:
            await asyncio.sleep(min(ACCOUNTING_TICK, self.config.heartbeat_interval))
            resolved = self._account_offline()
            if not resolved and loop.time() < next_save:
                continue
            next_save = loop.time() + self.config.heartbeat_interval
            try:
                await self.save_state()
            except Exception:
                log.exception("cannot save state to %s", self.store.path)

    async def reload(self) -> list[str]:
        """Re-read the configuration file; returns its problems (the old config stays)."""
        if self.config_path is None:
            return ["no configuration file to reload"]
        async with self._reload_lock:
            try:
                new = await asyncio.to_thread(load_config, self.config_path)
            except ConfigError as err:
                for problem in err.problems:
                    log.error("reload refused: %s", problem)
                return [str(p) for p in err.problems]
            await self.apply(new)
            return []

    async def apply(self, new: AgentConfig) -> None:
        old = self.config
        for key in ("listen", "state_dir", "push"):
            if getattr(new, key) != getattr(old, key):
                log.warning("%s changed in the configuration: takes effect on restart", key)
        new = dataclasses.replace(new, listen=old.listen, state_dir=old.state_dir, push=old.push)
        self.config = new
        self.prober.configure(new)
        await self._configure_devices(new)
        self.checks.configure(new.checks)
        self.throughput.configure(new.throughput, new.push)
        if self._group is not None and self._prober_task is not None:
            self._prober_task.cancel()
            self._prober_task = self._group.create_task(supervised("probing", self.prober.run))
        if self._group is not None and self.devices is not None:
            if self._devices_task is not None:
                self._devices_task.cancel()
            self._devices_task = self._group.create_task(
                supervised("device polling", self.devices.run)
            )
        log.info(
            "configuration reloaded: %d targets, %d checks",
            len(new.probes.targets),
            len(new.checks),
        )

    async def _configure_devices(self, config: AgentConfig) -> None:
        if self.devices is None and (config.snmp or config.wifi):
            # SNMP profiles, WiFi sources and the usage counts load only when used.
            from agent.daily_uniques import DailyUniques  # noqa: PLC0415
            from agent.device_poller import DevicePoller  # noqa: PLC0415

            config_dir = Path(self.config_path).parent if self.config_path is not None else None
            self.devices = DevicePoller(DailyUniques(), config_dir=config_dir)
        if self.devices is not None:
            profiles = await asyncio.to_thread(self.devices.load_profiles, config)
            self.devices.configure(config, profiles)

    def healthy(self) -> bool:
        return self._prober_task is not None and not self._prober_task.done()

    def watch(self, task: asyncio.Task[None]) -> None:
        """Set `failed` if the run task ends by itself (not by cancellation)."""

        def ended(done: asyncio.Task[None]) -> None:
            if done.cancelled():
                return
            error = done.exception()
            log.critical(
                "the agent's run loop ended (%s); exiting so that the service manager restarts it",
                f"{type(error).__name__}: {error}" if error else "returned",
                exc_info=error,
            )
            self.failed.set()

        task.add_done_callback(ended)


AGENT = web.AppKey("agent", Agent)
REGISTRY = web.AppKey("registry", metrics.Registry)


async def _metrics(request: web.Request) -> web.Response:
    body, content_type = metrics.render(request.app[REGISTRY], request.headers.get("Accept"))
    response = web.Response(body=body)
    response.headers["Content-Type"] = content_type
    return response


async def _healthz(request: web.Request) -> web.Response:
    agent = request.app[AGENT]
    healthy = agent.healthy()
    body = {
        "status": "ok" if healthy else "failing",
        "site_id": agent.config.site_id,
        "link_up": agent.link.up,
    }
    return web.json_response(body, status=200 if healthy else 503)


async def _reload(request: web.Request) -> web.Response:
    problems = await request.app[AGENT].reload()
    if problems:
        return web.Response(status=400, text="reload refused:\n" + "\n".join(problems) + "\n")
    return web.Response(text="configuration reloaded\n")


async def _throughput(request: web.Request) -> web.Response:
    tester = request.app[AGENT].throughput
    if not tester.configured:
        return web.json_response({"error": "throughput tests are not configured"}, status=503)
    if tester.lock.locked():
        return web.json_response({"error": "a throughput test is running"}, status=409)
    results = await tester.run_now()
    return web.json_response(results_json(results))


async def _index(request: web.Request) -> web.Response:
    agent = request.app[AGENT]
    return web.Response(
        content_type="text/html",
        text=f"<!doctype html><title>kipu-agent</title><h1>kipu-agent {__version__}</h1>"
        f"<p>site {agent.config.site_id}</p>"
        '<p><a href="/metrics">/metrics</a> · <a href="/healthz">/healthz</a></p>',
    )


async def _agent_lifecycle(app: web.Application) -> AsyncIterator[None]:
    agent = app[AGENT]
    await agent.start()
    task = asyncio.create_task(agent.run())
    agent.watch(task)
    yield
    if agent.pusher is not None:
        await agent.pusher.stop_sending()
    task.cancel()
    # A run that ended by itself was logged by `watch`; here it only has to be over.
    await asyncio.gather(task, return_exceptions=True)
    await agent.stop()


def make_app(agent: Agent) -> web.Application:
    """The HTTP API; starting the app starts the agent, cleaning it up stops it."""
    app = web.Application()
    app[AGENT] = agent
    app[REGISTRY] = agent.registry
    app.router.add_get("/", _index)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/healthz", _healthz)
    app.router.add_post("/-/reload", _reload)
    app.router.add_post("/-/throughput", _throughput)
    app.cleanup_ctx.append(_agent_lifecycle)
    return app


async def serve(agent: Agent, listen: str | Sequence[str]) -> None:
    """Run until SIGTERM or SIGINT; SIGHUP reloads. Raises if it cannot start, and
    `RunLoopEndedError` when the agent's run loop ended by itself."""
    if await serve_app(make_app(agent), listen, agent.reload, failed=agent.failed):
        raise RunLoopEndedError("the agent's run loop ended")
