"""Polling of SNMP devices and local WiFi sources, each on its own schedule.

Every device runs in its own loop with a hard deadline per poll (its interval), so a
dead or slow device delays nothing else. Errors are logged when a device's state
changes (up to down, or a different error), not at every poll. A device that stops
answering keeps only `kipu_snmp_up 0` and its poll counters: its readings (uptime,
interfaces, WiFi) are no longer exported, so the pusher sends their stale markers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from agent.config import AgentConfig, SnmpDevice, WifiSource
from agent.daily_uniques import DailyUniques
from agent.probes.snmp import Credentials, Device, SnmpClient
from agent.probes.wifi import read_leases, read_stations
from agent.profiles import PRIVACY_DROPPED, DeviceState, Profile, builtin_or_file
from agent.snapshots import LOCAL_DEVICE, DeviceSnapshot, InterfaceSnapshot, LocalWifiSnapshot
from agent.traffic_counters import CounterTracker, rebooted

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocalCount:
    """How many clients a local source showed in its last read (identifiers dropped)."""

    clients: int
    error: str | None


@dataclass
class DeviceRuntime:
    config: SnmpDevice
    profile: Profile
    up: bool | None = None
    duration: float = 0.0
    error: str | None = None
    state: DeviceState | None = None
    interfaces: tuple[InterfaceSnapshot, ...] = ()
    counters: CounterTracker = field(default_factory=CounterTracker)
    last_uptime: float | None = None
    reboots: int = 0
    polls_ok: int = 0
    polls_failed: int = 0
    privacy_dropped: int = 0


def to_device(config: SnmpDevice) -> Device:
    v3 = config.v3
    credentials = (
        Credentials(community=config.community)
        if v3 is None
        else Credentials(
            user=v3.user,
            auth_protocol=v3.auth_protocol,
            auth_key=v3.auth_key,
            priv_protocol=v3.priv_protocol,
            priv_key=v3.priv_key,
        )
    )
    return Device(
        config.name, config.address, config.port, credentials, config.timeout, config.retries
    )


class DevicePoller:
    """Polls every configured SNMP device and local WiFi source."""

    def __init__(
        self,
        uniques: DailyUniques,
        client_factory: Callable[[], SnmpClient] = SnmpClient,
        config_dir: Path | None = None,
    ) -> None:
        self.uniques = uniques
        self._client_factory = client_factory
        self._client: SnmpClient | None = None
        self.config_dir = config_dir
        self.devices: dict[str, DeviceRuntime] = {}
        self.wifi_sources: tuple[WifiSource, ...] = ()
        self.local: dict[str, LocalCount] = {}

    def load_profiles(self, config: AgentConfig) -> dict[str, Profile]:
        """The profile of every device (custom ones are read from disk: call this from a
        worker thread)."""
        return {d.name: builtin_or_file(d.profile, self.config_dir) for d in config.snmp}

    def configure(self, config: AgentConfig, profiles: Mapping[str, Profile]) -> None:
        """Take a (new) configuration and its devices' `profiles` (`load_profiles`); the
        state of unchanged devices carries over."""
        devices: dict[str, DeviceRuntime] = {}
        for device in config.snmp:
            old = self.devices.get(device.name)
            if old is not None and old.config == device:
                devices[device.name] = old
            else:
                devices[device.name] = DeviceRuntime(device, profiles[device.name])
        self.devices = devices
        self.wifi_sources = config.wifi
        self.local = {k: v for k, v in self.local.items() if k in self._local_keys()}

    def _local_keys(self) -> set[str]:
        return {_source_key(s) for s in self.wifi_sources}

    async def start(self) -> None:
        """Create and warm the SNMP engine when there are devices to poll."""
        if self.devices and self._client is None:
            # Building the engine reads its MIB modules from disk: not on the event loop.
            self._client = await asyncio.to_thread(self._client_factory)
            seconds = await self._client.warm()
            log.info("SNMP engine ready in %.2fs", seconds)

    def close(self) -> None:
        """Release the SNMP engine (after run() ended)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    async def run(self) -> None:
        """Poll until cancelled."""
        await self.start()
        async with asyncio.TaskGroup() as group:
            for runtime in self.devices.values():
                group.create_task(self._device_loop(runtime))
            for source in self.wifi_sources:
                group.create_task(self._wifi_loop(source))

    async def _device_loop(self, runtime: DeviceRuntime) -> None:
        loop = asyncio.get_running_loop()
        interval = runtime.config.interval
        next_at = loop.time()
        while True:
            try:
                await self.poll_device(runtime)
            except Exception:  # one bad device must not stop the others
                log.exception("polling %s failed", runtime.config.name)
            next_at += interval
            now = loop.time()
            next_at = max(next_at, now)  # the poll overran (by at most its deadline)
            await asyncio.sleep(next_at - now)

    async def poll_device(self, runtime: DeviceRuntime) -> None:
        """One poll of one device, with its interval as the hard deadline."""
        assert self._client is not None
        profile = runtime.profile
        reading = await self._client.poll(
            to_device(runtime.config), profile.scalars, profile.columns, runtime.config.interval
        )
        name = runtime.config.name
        runtime.duration = reading.duration
        if not reading.ok:
            runtime.polls_failed += 1
            if runtime.up is not False:
                log.warning(
                    "SNMP device %s (%s) is down: %s", name, runtime.config.address, reading.error
                )
            elif runtime.error != reading.error:
                log.debug("SNMP device %s still down: %s", name, reading.error)
            runtime.up, runtime.error = False, reading.error
            # Its readings are stale now: stop exporting them (kipu_snmp_up stays).
            runtime.state, runtime.interfaces = None, ()
            return
        if runtime.up is not True:
            log.info("SNMP device %s answers (%.3fs)", name, reading.duration)
        runtime.up, runtime.error = True, None
        runtime.polls_ok += 1
        state = profile.extract(reading)
        self._apply(runtime, state)

    def _apply(self, runtime: DeviceRuntime, state: DeviceState) -> None:
        device_rebooted = rebooted(runtime.last_uptime, state.uptime_seconds)
        if device_rebooted:
            runtime.reboots += 1
            log.warning(
                "SNMP device %s rebooted (uptime %.0fs)",
                runtime.config.name,
                state.uptime_seconds or 0,
            )
        runtime.last_uptime = state.uptime_seconds
        views = []
        for interface in state.interfaces:
            rx = tx = None
            if interface.rx_bytes is not None:
                rx = runtime.counters.update(
                    (interface.index, "rx"),
                    interface.rx_bytes,
                    interface.counter_bits,
                    device_rebooted,
                )
            if interface.tx_bytes is not None:
                tx = runtime.counters.update(
                    (interface.index, "tx"),
                    interface.tx_bytes,
                    interface.counter_bits,
                    device_rebooted,
                )
            views.append(
                InterfaceSnapshot(interface.name, rx, tx, interface.up, interface.speed_bytes)
            )
        runtime.counters.keep_only((i.index, d) for i in state.interfaces for d in ("rx", "tx"))
        runtime.interfaces = tuple(views)
        dropped = sum(1 for s in state.custom if s.name == PRIVACY_DROPPED)
        if dropped and not runtime.privacy_dropped:
            log.warning(
                "SNMP device %s: %d custom series not exported: a label value is not on "
                "the privacy allow-list (it could hold a MAC or IP address)",
                runtime.config.name,
                dropped,
            )
        runtime.privacy_dropped += dropped
        self.uniques.add(runtime.config.name, state.client_ids)
        # Drop the identifiers now that they are counted: they must not linger.
        runtime.state = dataclasses.replace(
            state,
            interfaces=(),  # kept as views with monotonic counters above
            client_ids=(),
            custom=tuple(s for s in state.custom if s.name != PRIVACY_DROPPED),
        )

    async def _wifi_loop(self, source: WifiSource) -> None:
        while True:
            try:
                await self.read_local(source)
            except Exception:
                log.exception("reading WiFi source %s failed", _source_key(source))
            await asyncio.sleep(source.interval)

    async def read_local(self, source: WifiSource) -> None:
        key = _source_key(source)
        if source.source == "iw":
            assert source.interface is not None
            reading = await read_stations(source.interface, within=5.0)
        else:
            assert source.path is not None
            reading = await asyncio.to_thread(read_leases, source.path)
        previous = self.local.get(key)
        if reading.error and (previous is None or previous.error != reading.error):
            log.warning("WiFi source %s: %s", key, reading.error)
        elif not reading.error and previous is not None and previous.error:
            log.info("WiFi source %s readable again", key)
        self.uniques.add(LOCAL_DEVICE, reading.clients)
        self.local[key] = LocalCount(len(reading.clients), reading.error)

    def snapshot(self) -> tuple[tuple[DeviceSnapshot, ...], LocalWifiSnapshot | None]:
        """The devices and the local WiFi sources as they are now."""
        devices = tuple(self._device_snapshot(r) for r in self.devices.values())
        local = None
        if self.wifi_sources:
            ssids, leases = self.local_counts()
            local = LocalWifiSnapshot(ssids, leases, self.uniques.count(LOCAL_DEVICE))
        return devices, local

    def _device_snapshot(self, runtime: DeviceRuntime) -> DeviceSnapshot:
        name = runtime.config.name
        base = DeviceSnapshot(
            name,
            runtime.up,
            runtime.duration,
            runtime.reboots,
            runtime.polls_ok,
            runtime.polls_failed,
            runtime.privacy_dropped,
        )
        state = runtime.state
        if state is None:
            return base
        return dataclasses.replace(
            base,
            uptime_seconds=state.uptime_seconds,
            interfaces=runtime.interfaces,
            wifi_clients=state.wifi_clients,
            unique_clients=None if state.wifi_clients is None else self.uniques.count(name),
            hotspot_users=state.hotspot_users,
            dhcp_leases=state.dhcp_leases,
            capsman_clients=state.capsman_clients,
            custom=state.custom,
        )

    def local_counts(self) -> tuple[dict[str, int], int | None]:
        """Clients per SSID from iw sources, and the count of active DHCP leases."""
        ssids: dict[str, int] = {}
        leases: int | None = None
        for source in self.wifi_sources:
            counted = self.local.get(_source_key(source))
            if counted is None or counted.error:
                continue
            if source.source == "iw":
                ssid = source.ssid or source.interface or ""
                ssids[ssid] = ssids.get(ssid, 0) + counted.clients
            else:
                leases = (leases or 0) + counted.clients
        return ssids, leases


def _source_key(source: WifiSource) -> str:
    return f"iw:{source.interface}" if source.source == "iw" else f"leases:{source.path}"
