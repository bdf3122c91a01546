"""The agent's runtime: one event loop, the probing and heartbeat loops, the HTTP API."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from agent import metrics
from agent.config import AgentConfig, load_config, split_host_port
from agent.link import LinkCounters, LinkState
from agent.prober import Prober
from agent.probes.icmp import IcmpPinger
from agent.schema import ConfigError
from agent.state import SavedState, StateStore, offline_gap, read_boot_time
from agent.version import __version__

if TYPE_CHECKING:
    from agent.devices import DevicePoller
    from agent.push import Pusher

log = logging.getLogger(__name__)


class Agent:
    """Everything the agent runs, independent of HTTP."""

    def __init__(
        self,
        config: AgentConfig,
        config_path: str | Path | None = None,
        pinger: IcmpPinger | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.pinger = pinger or IcmpPinger()
        self.store = StateStore(config.state_dir)
        self.link = LinkState(rule=config.link.up_when, roles={})
        self.prober = Prober(self.pinger, self.link)
        self.devices: DevicePoller | None = None  # created when SNMP or WiFi is configured
        self.registry = metrics.make_registry(self)
        self.pusher: Pusher | None = None
        if config.push is not None:
            # protobuf and cramjam cost memory: load them only when pushing is configured.
            from agent.push import Pusher  # noqa: PLC0415

            registry = self.registry
            self.pusher = Pusher(
                config.push,
                config.site_id,
                config.state_dir,
                lambda: metrics.snapshot(registry),
            )
        self._prober_task: asyncio.Task[None] | None = None
        self._devices_task: asyncio.Task[None] | None = None
        self._group: asyncio.TaskGroup | None = None
        self._reload_lock = asyncio.Lock()

    def boot_time(self) -> float | None:
        return read_boot_time()

    async def start(self) -> None:
        """Open the state folder and the ICMP socket; raises when either is impossible."""
        self.store.open()
        try:
            saved = self.store.load()
            counters = saved.counters if saved else LinkCounters()
            gap = offline_gap(saved.heartbeat if saved else None, time.time())
            if gap > 0:
                counters.offline_seconds += gap
                log.warning("agent was not running for %.0f s since its last heartbeat", gap)
            self.link.counters = counters
            self.pinger.open()
            if self.pusher is not None:
                self.pusher.open()
            self.prober.configure(self.config)
            self._configure_devices(self.config)
            self.save_state()
        except BaseException:
            self.store.close()
            raise
        log.info(
            "kipu-agent %s for site %s: %d targets every %gs, state in %s",
            __version__,
            self.config.site_id,
            len(self.config.probes.targets),
            self.config.probes.interval,
            self.config.state_dir,
        )

    async def run(self) -> None:
        """Run the probing and heartbeat loops until cancelled."""
        async with asyncio.TaskGroup() as group:
            self._group = group
            self._prober_task = group.create_task(self.prober.run())
            if self.devices is not None:
                self._devices_task = group.create_task(self.devices.run())
            group.create_task(self._heartbeat())
            if self.pusher is not None:
                group.create_task(self.pusher.run())

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
                self.save_state()
            finally:
                self.store.close()

    def _state_now(self) -> SavedState:
        """The counters as of now, copied, stamped with the heartbeat."""
        self.link.advance(time.monotonic())
        counters = LinkCounters(**vars(self.link.counters))
        return SavedState(counters, time.time(), read_boot_time())

    def save_state(self) -> None:
        self.store.save(self._state_now())

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.config.heartbeat_interval)
            try:
                # fsync on an SD card can take long: keep it off the loop.
                await asyncio.to_thread(self.store.save, self._state_now())
            except Exception:
                log.exception("cannot save state to %s", self.store.path)

    async def reload(self) -> list[str]:
        """Re-read the configuration file; returns its problems (the old config stays)."""
        if self.config_path is None:
            return ["no configuration file to reload"]
        async with self._reload_lock:
            try:
                new = load_config(self.config_path)
            except ConfigError as err:
                for problem in err.problems:
                    log.error("reload refused: %s", problem)
                return [str(p) for p in err.problems]
            self.apply(new)
            return []

    def apply(self, new: AgentConfig) -> None:
        old = self.config
        for key in ("listen", "state_dir", "push"):
            if getattr(new, key) != getattr(old, key):
                log.warning("%s changed in the configuration: takes effect on restart", key)
        new = dataclasses.replace(new, listen=old.listen, state_dir=old.state_dir, push=old.push)
        self.config = new
        self.prober.configure(new)
        self._configure_devices(new)
        if self._group is not None and self._prober_task is not None:
            self._prober_task.cancel()
            self._prober_task = self._group.create_task(self.prober.run())
        if self._group is not None and self.devices is not None:
            if self._devices_task is not None:
                self._devices_task.cancel()
            self._devices_task = self._group.create_task(self.devices.run())
        log.info("configuration reloaded: %d targets", len(new.probes.targets))

    def _configure_devices(self, config: AgentConfig) -> None:
        if self.devices is None and (config.snmp or config.wifi):
            # SNMP profiles, WiFi sources and the usage counts load only when used.
            from agent.devices import DevicePoller  # noqa: PLC0415
            from agent.usage import DailyUniques  # noqa: PLC0415

            config_dir = Path(self.config_path).parent if self.config_path is not None else None
            self.devices = DevicePoller(DailyUniques(), config_dir=config_dir)
        if self.devices is not None:
            self.devices.configure(config)

    def healthy(self) -> bool:
        return self._prober_task is not None and not self._prober_task.done()


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
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
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
    app.cleanup_ctx.append(_agent_lifecycle)
    return app


async def serve(agent: Agent, listen: str) -> None:
    """Run until SIGTERM or SIGINT; SIGHUP reloads. Raises if it cannot start."""
    app = make_app(agent)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    try:
        host, port = split_host_port(listen)
        site = web.TCPSite(runner, host or None, port)
        try:
            await site.start()
        except OSError as err:
            raise OSError(f"cannot listen on {listen}: {err.strerror or err}") from err
        log.info("listening on %s", listen)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        reloads: set[asyncio.Task[list[str]]] = set()

        def on_hup() -> None:
            task = loop.create_task(agent.reload())
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGHUP, on_hup)
        try:
            await stop.wait()
            log.info("stopping")
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
    finally:
        await runner.cleanup()
