"""Frozen snapshots of the agent's state: components produce them, `metrics` renders them.

Nothing here does work: the prober, the device poller, the checks, the link, the pusher
and the agent each offer a `snapshot()` made of these types, so the metrics module never
reaches into the program's object graph and no module needs the agent to import it.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.probes.stats import StatsSnapshot

LOCAL_DEVICE = "local"
"""The `device` label of the agent's own WiFi sources."""


@dataclass(frozen=True)
class TargetSnapshot:
    name: str
    role: str
    stats: StatsSnapshot


@dataclass(frozen=True)
class LinkSnapshot:
    up: bool | None
    up_seconds: float
    down_seconds: float
    outages: int
    last_change: float | None
    offline_seconds: float


@dataclass(frozen=True)
class CustomSample:
    """A sample of a custom SNMP profile's metric."""

    name: str
    kind: str  # gauge | counter
    help: str
    labels: tuple[tuple[str, str], ...]
    value: float


@dataclass(frozen=True)
class InterfaceSnapshot:
    """An interface with counters made monotonic."""

    name: str
    rx_bytes: int | None
    tx_bytes: int | None
    up: bool | None
    speed_bytes: float | None


@dataclass(frozen=True)
class DeviceSnapshot:
    """One SNMP device. The readings are None (and not exported) while it is down."""

    name: str
    up: bool | None
    duration: float
    reboots: int
    polls_ok: int
    polls_failed: int
    privacy_dropped: int
    uptime_seconds: float | None = None
    interfaces: tuple[InterfaceSnapshot, ...] = ()
    wifi_clients: dict[str, int] | None = None
    unique_clients: int | None = None
    hotspot_users: int | None = None
    dhcp_leases: int | None = None
    capsman_clients: int | None = None
    custom: tuple[CustomSample, ...] = ()


@dataclass(frozen=True)
class LocalWifiSnapshot:
    """The agent's own WiFi sources, summed."""

    clients_per_ssid: dict[str, int]
    dhcp_leases: int | None
    unique_clients: int


@dataclass(frozen=True)
class PushSnapshot:
    spool_bytes: int
    spool_samples: int
    spool_dropped_samples: int
    spool_corrupt_records: int
    requests: dict[str, int]
    """Requests by result: ok, retry (blocked included), rejected."""
    rejected_samples: int
    undecodable_records: int
    last_success: float | None
    blocked: bool
    clock_offset: float | None
    snapshots: int
    restamped_samples: int
    held_snapshots: int
    held_dropped_samples: int
    invalid_series: int


@dataclass(frozen=True)
class CheckSnapshot:
    """An application check: its last run and its runs by result."""

    name: str
    kind: str
    success: bool | None
    """None until the first run ends."""
    phases: tuple[tuple[str, float], ...]
    """Seconds per phase in the last run (every phase of the kind, 0 when not reached)."""
    runs: tuple[tuple[str, int], ...]
    """Runs by result, every result (0 too)."""
    tls_expiry: float | None
    """When the certificate last seen on a verified handshake expires (Unix time)."""


@dataclass(frozen=True)
class ThroughputSnapshot:
    """The throughput tests: last readings, runs by result, data spent."""

    bits_per_second: tuple[tuple[str, float], ...]
    """The last successful reading per direction."""
    runs: tuple[tuple[str, str, int], ...]
    """(direction, result, count), every pair."""
    bytes_total: tuple[tuple[str, int], ...]
    """Bytes spent per direction, since the state folder was made."""
    last_run: float | None


@dataclass(frozen=True)
class AgentSnapshot:
    version: str
    boot_time: float | None
    targets: tuple[TargetSnapshot, ...]
    link: LinkSnapshot
    devices: tuple[DeviceSnapshot, ...] = ()
    local_wifi: LocalWifiSnapshot | None = None
    push: PushSnapshot | None = None
    checks: tuple[CheckSnapshot, ...] = ()
    throughput: ThroughputSnapshot | None = None
