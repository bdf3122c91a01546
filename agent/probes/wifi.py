"""Local WiFi usage, when the agent runs on the access point itself.

Two sources: `iw dev IF station dump` (stations associated with an interface) and a
dnsmasq leases file (clients holding a DHCP lease). Parsing is pure; reading runs the
command or reads the file with a deadline. Station identifiers are returned as bytes
for the daily distinct count (hashed by the caller); they are never logged.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from pathlib import Path

IW_COMMAND = "iw"
_STATION = re.compile(r"^Station\s+([0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5})\b", re.MULTILINE)
_MAC = re.compile(r"^[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}$")


@dataclass(frozen=True)
class WifiReading:
    """Clients seen by one local source in one read."""

    source: str
    clients: tuple[bytes, ...]
    error: str | None = None


def mac_bytes(text: str) -> bytes:
    return bytes(int(part, 16) for part in text.split(":"))


def parse_station_dump(output: str) -> tuple[bytes, ...]:
    """Stations listed by `iw dev IF station dump`."""
    return tuple(dict.fromkeys(mac_bytes(m) for m in _STATION.findall(output)))


def parse_leases(content: str, now: float) -> tuple[bytes, ...]:
    """Clients with an unexpired lease in a dnsmasq leases file.

    Each line is ``EXPIRY MAC IP HOSTNAME CLIENT-ID``; expiry 0 means infinite. Lines of
    DHCPv6 (``duid ...``) and malformed lines are skipped.
    """
    clients: dict[bytes, None] = {}
    for line in content.splitlines():
        fields = line.split()
        if len(fields) < 3 or not fields[0].isdigit() or not _MAC.match(fields[1]):
            continue
        expiry = int(fields[0])
        if expiry == 0 or expiry > now:
            clients[mac_bytes(fields[1])] = None
    return tuple(clients)


async def read_stations(interface: str, within: float) -> WifiReading:
    """Run `iw dev INTERFACE station dump`; never raises."""
    source = f"iw:{interface}"
    try:
        process = await asyncio.create_subprocess_exec(
            IW_COMMAND,
            "dev",
            interface,
            "station",
            "dump",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as err:
        return WifiReading(source, (), f"cannot run {IW_COMMAND}: {err.strerror or err}")
    try:
        async with asyncio.timeout(within):
            out, err_out = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        return WifiReading(source, (), f"{IW_COMMAND} did not answer within {within:g}s")
    if process.returncode != 0:
        reason = err_out.decode(errors="replace").strip()[:200]
        return WifiReading(source, (), f"{IW_COMMAND} failed ({process.returncode}): {reason}")
    return WifiReading(source, parse_station_dump(out.decode(errors="replace")))


def read_leases(path: Path) -> WifiReading:
    """Read a dnsmasq leases file; never raises."""
    source = f"leases:{path}"
    try:
        content = path.read_text(errors="replace")
    except OSError as err:
        return WifiReading(source, (), f"cannot read {path}: {err.strerror or err}")
    return WifiReading(source, parse_leases(content, time.time()))
