"""No client address leaves the agent through a custom SNMP profile, end to end.

snmpsim serves the `privacy` recording, whose tables hold client MAC and IP addresses
in every notation devices use (raw octets, Cisco dotted quads, spaced hex, colon, dash,
bare hex, IPv6 text, ifIndex + IPv4 indexes) beside legitimate rows; a real agent polls
it with a custom profile mapping all of them to labels.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from pytest_aiohttp import AiohttpClient

from agent.app import Agent, make_app
from agent.config import load_config
from agent.probes.snmp import without_row_indexes
from tests.metrics_util import Scrape, eventually, parse
from tests.support.snmp import SNMP_DATA_DIR, SnmpSim, copy_recordings
from tests.support.snmp_recordings import (
    PRIVACY_CHAINS,
    PRIVACY_CLIENTS,
    PRIVACY_NAMES,
    PRIVACY_SSIDS,
    PRIVACY_STATIONS,
    build_privacy,
    privacy_ips,
    privacy_macs,
)

DEVICE = "wlc"
PROFILE = f"""\
if_mib: true
metrics:
  - name: kipu_test_name_bytes_total
    oid: {PRIVACY_NAMES}.3
    type: counter
    labels: [{{name: entry, oid: {PRIVACY_NAMES}.2}}]
  - name: kipu_test_client_bytes_total
    oid: {PRIVACY_CLIENTS}.2
    type: counter
    labels: [{{name: interface, index_part: 0}}]
  - name: kipu_test_client_ip_bytes_total
    oid: {PRIVACY_CLIENTS}.2
    type: counter
    labels: [{{name: ip, oid: {PRIVACY_CLIENTS}.3}}, {{name: address, oid: {PRIVACY_CLIENTS}.4}}]
  - name: kipu_test_client_address_bytes_total
    oid: {PRIVACY_CLIENTS}.2
    type: counter
    labels: [{{name: address, oid: {PRIVACY_CLIENTS}.4}}]
  - name: kipu_test_station_signal_dbm
    oid: {PRIVACY_STATIONS}.2
    labels: [{{name: station}}]
  - name: kipu_test_station_interface_signal_dbm
    oid: {PRIVACY_STATIONS}.2
    labels: [{{name: interface, index_part: 6}}]
  - name: kipu_test_chain_signal_dbm
    oid: {PRIVACY_CHAINS}.2
    labels: [{{name: path}}, {{name: chain, index_part: 1}}]
wifi: {{clients: {PRIVACY_SSIDS}.3, ssid: {PRIVACY_SSIDS}.2}}
"""
# Per poll: 11 names holding an address, 3 client rows x 3 metrics (indexed by an
# address, or naming one), 3 stations x 2 metrics (indexed by MAC), 1 SSID (a MAC).
DROPPED_PER_POLL = 11 + 3 * 3 + 3 * 2 + 1

MAC_TEXT = re.compile(
    r"(?<![0-9a-f])(?:[0-9a-f]{2}([:\- ._])(?:[0-9a-f]{2}\1){4}[0-9a-f]{2}"
    r"|[0-9a-f]{4}([.:-])[0-9a-f]{4}\2[0-9a-f]{4})(?![0-9a-f])"
)


@pytest.fixture
def snmp_data(tmp_path: Path) -> Path:
    """Serve only the privacy recording (overrides the shared fixture for `snmpsim`)."""
    return copy_recordings(tmp_path / "snmp_data", ["privacy"])


def mac_notations(mac: bytes) -> set[str]:
    quads = [mac.hex()[i : i + 4] for i in (0, 4, 8)]
    return {
        mac.hex(":"),
        mac.hex("-"),
        mac.hex(" "),
        mac.hex("."),
        mac.hex("_"),
        mac.hex(),
        ":".join(f"{b:x}" for b in mac),
        ".".join(quads),
        "-".join(quads),
        ".".join(str(b) for b in mac),  # as a table index
        mac.decode("latin-1"),  # raw octets shown as text
    }


def ip_notations(text: str) -> set[str]:
    ip = ipaddress.ip_address(text)
    found = {str(ip), ip.exploded, ip.packed.hex(), ".".join(str(b) for b in ip.packed)}
    found.add(ip.packed.decode("latin-1"))
    if ip.version == 4:
        found.add(str(ip).replace(".", "-"))
    return found


def secrets() -> set[str]:
    """Every client address of the recording in every notation, lower case."""
    found: set[str] = set()
    for mac in privacy_macs():
        found |= mac_notations(mac)
    for ip in privacy_ips():
        found |= ip_notations(ip)
    return {s.lower() for s in found}


def device_yaml(port: int, profile: Path) -> str:
    return (
        f"  - name: {DEVICE}\n    address: 127.0.0.1\n    port: {port}\n"
        f"    profile: {profile}\n    interval: 1s\n    timeout: 500ms\n    retries: 1\n"
        "    community: privacy\n"
    )


def write_config(tmp_path: Path, devices: str) -> Path:
    path = tmp_path / "agent.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            site_id: privacy-0001
            state_dir: {tmp_path / "state"}
            probes:
              interval: 100ms
              timeout: 500ms
              targets:
                - {{name: gw, address: 127.0.0.1, role: gateway}}
            snmp:
            """
        )
        + devices
    )
    return path


Scraper = Callable[[], Awaitable[tuple[str, Scrape]]]


async def start(aiohttp_client: AiohttpClient, config: Path) -> Scraper:
    agent = Agent(await asyncio.to_thread(load_config, config), config)
    client = await aiohttp_client(make_app(agent))

    async def scrape() -> tuple[str, Scrape]:
        response = await client.get("/metrics")
        text = await response.text()
        return text, parse(text)

    return scrape


async def wait_polls(scrape: Scraper, polls: int) -> tuple[str, Scrape]:
    """The first scrape after `polls` good polls of the device."""
    found: list[tuple[str, Scrape]] = []

    async def ready() -> bool:
        text, s = await scrape()
        if (s.get("kipu_snmp_polls_total", device=DEVICE, result="ok") or 0) >= polls:
            found.append((text, s))
            return True
        return False

    await eventually(ready, within=30)
    return found[-1]


def test_recording_on_disk_matches_its_generator() -> None:
    on_disk = (SNMP_DATA_DIR / "privacy.snmprec").read_text(encoding="iso-8859-1")
    assert on_disk == build_privacy(), (
        "privacy.snmprec is stale: run `python -m tests.support.snmp_recordings`"
    )


def test_snmp_errors_name_the_column_not_the_row() -> None:
    column = "1.3.6.1.4.1.14988.1.1.1.2.1.3"
    message = f"device returned a non-increasing OID {column}.164.195.240.17.34.51.5"
    assert without_row_indexes(message, [column]) == (
        f"device returned a non-increasing OID {column}"
    )
    scalar = "1.3.6.1.2.1.1.3.0"
    assert without_row_indexes(f"no {scalar}", [column]) == f"no {scalar}"


async def test_no_client_address_in_metrics_or_logs(
    aiohttp_client: AiohttpClient,
    snmpsim: SnmpSim,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    profile = tmp_path / "wlc.yaml"
    profile.write_text(PROFILE)
    scrape = await start(aiohttp_client, write_config(tmp_path, device_yaml(snmpsim.port, profile)))
    text, s = await wait_polls(scrape, 2)

    # The legitimate rows are exported, and nothing else of those tables.
    assert s.label_values("kipu_test_name_bytes_total", "entry") == {
        "ether1",
        "WiFi Gratis Plaza",
        "Estación",
        "sfp-sfpplus1",
    }
    assert s.value("kipu_test_name_bytes_total", device=DEVICE, entry="Estación") == 3_000
    chains = {
        (dict(labels)["path"], dict(labels)["chain"]): value
        for (name, labels), value in s.samples.items()
        if name == "kipu_test_chain_signal_dbm"
    }
    assert chains == {("1.1", "1"): -58, ("1.2", "2"): -60, ("2.1", "1"): -66}
    assert s.value("kipu_wifi_clients", device=DEVICE, ssid="WiFi Gratis Plaza") == 12
    assert s.value("kipu_wifi_clients", device=DEVICE, ssid="Estación") == 3
    assert s.label_values("kipu_wifi_clients", "ssid") == {"WiFi Gratis Plaza", "Estación"}
    assert s.label_values("kipu_interface_up", "interface") == {"ether1", "wlan1"}
    for metric in (
        "kipu_test_client_bytes_total",
        "kipu_test_client_ip_bytes_total",
        "kipu_test_client_address_bytes_total",
        "kipu_test_station_signal_dbm",
        "kipu_test_station_interface_signal_dbm",
    ):
        assert metric not in s.names(), f"{metric} exported a row keyed by an address"

    # Every refused series is counted, at every poll.
    polls = s.value("kipu_snmp_polls_total", device=DEVICE, result="ok")
    dropped = s.value("kipu_snmp_privacy_dropped_series_total", device=DEVICE)
    assert dropped == DROPPED_PER_POLL * polls
    assert any("custom series not exported" in r.getMessage() for r in caplog.records)

    places = {"metrics": text, "log": caplog.text}
    for path in (tmp_path / "state").rglob("*"):
        if path.is_file():
            places[str(path)] = path.read_bytes().decode("latin-1")
    for place, content in places.items():
        haystack = content.lower()
        for secret in secrets():
            assert secret not in haystack, f"{secret!r} found in {place}"
        assert not MAC_TEXT.search(haystack), f"a MAC address in {place}"
