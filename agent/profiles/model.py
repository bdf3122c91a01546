"""What a poll says about a device, and the IF-MIB reading every profile shares. Pure.

A profile (`Profile`) names the scalars and table columns to poll and turns a `Reading`
into a `DeviceState`: interfaces with traffic counters, WiFi clients per SSID, hotspot
users, DHCP leases, and the station identifiers used (hashed, in memory) for the daily
count of distinct clients.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from agent.probes.snmp import Reading, Value
from agent.snapshots import CustomSample

SYS_UPTIME = "1.3.6.1.2.1.1.3.0"  # SNMPv2-MIB sysUpTime, TimeTicks (1/100 s)
IF_DESCR = "1.3.6.1.2.1.2.2.1.2"
IF_SPEED = "1.3.6.1.2.1.2.2.1.5"  # bits/s, Gauge32
IF_OPER_STATUS = "1.3.6.1.2.1.2.2.1.8"  # up(1)
IF_IN_OCTETS = "1.3.6.1.2.1.2.2.1.10"  # Counter32
IF_OUT_OCTETS = "1.3.6.1.2.1.2.2.1.16"
IF_NAME = "1.3.6.1.2.1.31.1.1.1.1"
IF_HC_IN_OCTETS = "1.3.6.1.2.1.31.1.1.1.6"  # Counter64
IF_HC_OUT_OCTETS = "1.3.6.1.2.1.31.1.1.1.10"
IF_HIGH_SPEED = "1.3.6.1.2.1.31.1.1.1.15"  # Mbit/s


@dataclass(frozen=True)
class Interface:
    """One interface as read in one poll. Counters are the device's raw values."""

    index: str
    name: str
    rx_bytes: int | None
    tx_bytes: int | None
    counter_bits: int  # 64 for ifHC*, 32 for the old ifIn/OutOctets
    up: bool | None
    speed_bytes: float | None  # bytes per second


@dataclass(frozen=True)
class DeviceState:
    """What a poll says about a device. `client_ids` never leave the process unhashed."""

    uptime_seconds: float | None = None
    interfaces: tuple[Interface, ...] = ()
    wifi_clients: dict[str, int] | None = None  # SSID -> clients; None: not a WiFi device
    hotspot_users: int | None = None
    dhcp_leases: int | None = None
    capsman_clients: int | None = None
    client_ids: tuple[bytes, ...] = ()
    custom: tuple[CustomSample, ...] = ()


@dataclass(frozen=True)
class Profile:
    """The OIDs a kind of device is polled for and how to read them."""

    name: str
    scalars: tuple[str, ...]
    columns: tuple[str, ...]
    extract: Callable[[Reading], DeviceState] = field(compare=False)


def text(value: Value | None) -> str:
    """An OCTET STRING as text (UTF-8, else Latin-1); '' for None."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8").strip("\x00")
        except UnicodeDecodeError:
            return value.decode("latin-1").strip("\x00")
    return str(value)


def number(value: Value | None) -> int | None:
    return value if isinstance(value, int) else None


def mac_of_index(index: str) -> bytes | None:
    """The MAC address at the start of a table index like ``0.12.66.170.1.2.5``."""
    parts = index.split(".")
    if len(parts) < 6:
        return None
    try:
        return bytes(int(p) for p in parts[:6])
    except ValueError:
        return None


IF_MIB_SCALARS = (SYS_UPTIME,)
IF_MIB_COLUMNS = (
    IF_NAME,
    IF_DESCR,
    IF_HC_IN_OCTETS,
    IF_HC_OUT_OCTETS,
    IF_IN_OCTETS,
    IF_OUT_OCTETS,
    IF_HIGH_SPEED,
    IF_SPEED,
    IF_OPER_STATUS,
)


def interfaces(reading: Reading) -> tuple[Interface, ...]:
    """Interfaces from IF-MIB, preferring 64-bit counters and ifName where present."""
    col = reading.columns
    indexes = set(col.get(IF_OPER_STATUS, {})) | set(col.get(IF_DESCR, {}))
    indexes |= set(col.get(IF_NAME, {})) | set(col.get(IF_HC_IN_OCTETS, {}))
    found = []
    for index in sorted(indexes, key=_index_key):
        name = text(col.get(IF_NAME, {}).get(index)) or text(col.get(IF_DESCR, {}).get(index))
        hc_in = number(col.get(IF_HC_IN_OCTETS, {}).get(index))
        hc_out = number(col.get(IF_HC_OUT_OCTETS, {}).get(index))
        rx: int | None
        tx: int | None
        if hc_in is not None and hc_out is not None:
            rx, tx, bits = hc_in, hc_out, 64
        else:
            rx = number(col.get(IF_IN_OCTETS, {}).get(index))
            tx = number(col.get(IF_OUT_OCTETS, {}).get(index))
            bits = 32
        status = number(col.get(IF_OPER_STATUS, {}).get(index))
        high = number(col.get(IF_HIGH_SPEED, {}).get(index))
        low = number(col.get(IF_SPEED, {}).get(index))
        if high:  # Mbit/s; ifSpeed saturates at 4.29 Gbit/s
            speed: float | None = high * 1_000_000 / 8
        elif low is not None:
            speed = low / 8
        else:
            speed = None
        found.append(
            Interface(
                index=index,
                name=name or f"if{index}",
                rx_bytes=rx,
                tx_bytes=tx,
                counter_bits=bits,
                up=None if status is None else status == 1,
                speed_bytes=speed,
            )
        )
    return tuple(found)


def uptime(reading: Reading) -> float | None:
    ticks = number(reading.scalars.get(SYS_UPTIME))
    return None if ticks is None else ticks / 100


def _index_key(index: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in index.split("."))
    except ValueError:
        return (1 << 62,)


def _if_mib(reading: Reading) -> DeviceState:
    return DeviceState(uptime_seconds=uptime(reading), interfaces=interfaces(reading))


def clients_by_ssid(ssids: dict[str, Value], counts: dict[str, Value]) -> dict[str, int]:
    clients: dict[str, int] = {}
    for index, ssid_value in ssids.items():
        ssid = text(ssid_value)
        clients[ssid] = clients.get(ssid, 0) + (number(counts.get(index)) or 0)
    return clients
