"""SNMP polling against real responders: snmpsim recordings of each profile's devices
and Debian's snmpd (v2c and SNMPv3 authPriv)."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from pytest_aiohttp import AiohttpClient

from agent.app import Agent, make_app
from agent.config import load_config
from agent.probes.snmp import Credentials, Device, SnmpClient
from agent.profiles import BUILTIN
from tests.metrics_util import Scrape, eventually, parse
from tests.support.snmp import DEFAULT_V3_USER, Snmpd, SnmpSim


def device_yaml(name: str, port: int, profile: str, extra: str = "", **creds: str) -> str:
    auth = "".join(f"    {k}: {v}\n" for k, v in creds.items()) or f"    community: {name}\n"
    return (
        f"  - name: {name}\n    address: 127.0.0.1\n    port: {port}\n"
        f"    profile: {profile}\n    interval: 1s\n    timeout: 500ms\n    retries: 1\n"
        + auth
        + extra
    )


def write_config(tmp_path: Path, devices: str) -> Path:
    path = tmp_path / "agent.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            site_id: snmp-0001
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


Scraper = Callable[[], Awaitable[Scrape]]


async def start(aiohttp_client: AiohttpClient, config: Path) -> tuple[Agent, Scraper]:
    agent = Agent(await asyncio.to_thread(load_config, config), config)
    client = await aiohttp_client(make_app(agent))

    async def scrape() -> Scrape:
        response = await client.get("/metrics")
        return parse(await response.text())

    return agent, scrape


async def wait_up(scrape: Scraper, devices: list[str], up: float = 1) -> Scrape:
    found: list[Scrape] = []

    async def ready() -> bool:
        s = await scrape()
        if all(s.get("kipu_snmp_up", device=d) == up for d in devices):
            found.append(s)
            return True
        return False

    await eventually(ready, within=30)
    return found[-1]


def interfaces(s: Scrape, device: str) -> set[str]:
    return {
        dict(labels)["interface"]
        for name, labels in s.samples
        if name == "kipu_interface_up" and dict(labels)["device"] == device
    }


async def test_every_profile_against_its_recording(
    aiohttp_client: AiohttpClient, snmpsim: SnmpSim, tmp_path: Path
) -> None:
    port = snmpsim.port
    devices = "".join(
        device_yaml(name, port, profile)
        for name, profile in [
            ("mikrotik", "mikrotik"),
            ("switch24", "if_mib"),
            ("unifi", "ubiquiti_unifi"),
            ("airmax", "ubiquiti_airmax"),
            ("epmp", "cambium_epmp"),
        ]
    )
    _, scrape = await start(aiohttp_client, write_config(tmp_path, devices))
    s = await wait_up(scrape, ["mikrotik", "switch24", "unifi", "airmax", "epmp"])

    # MikroTik: two SSIDs, hotspot, DHCP, CAPsMAN, and 17 distinct stations today.
    assert s.value("kipu_wifi_clients", device="mikrotik", ssid="WiFi-Gratis-Plaza") == 14
    assert s.value("kipu_wifi_clients", device="mikrotik", ssid="IE-30012-Docentes") == 3
    assert s.value("kipu_wifi_hotspot_users", device="mikrotik") == 9
    assert s.value("kipu_dhcp_leases", device="mikrotik") == 21
    assert s.value("kipu_wifi_capsman_clients", device="mikrotik") == 0
    assert s.value("kipu_wifi_unique_clients", device="mikrotik") == 17
    assert {"ether1", "ether5", "wlan1", "wlan2"} <= interfaces(s, "mikrotik")
    assert s.value("kipu_interface_up", device="mikrotik", interface="ether3") == 0
    assert s.value("kipu_device_uptime_seconds", device="mikrotik") > 0
    assert s.types["kipu_interface_receive_bytes"] == "counter"

    # The 24-port switch: 26 interfaces, 9 of them down, speeds from ifHighSpeed.
    switch = interfaces(s, "switch24")
    assert len(switch) == 26
    down = [i for i in switch if s.value("kipu_interface_up", device="switch24", interface=i) == 0]
    assert len(down) == 9
    assert s.value("kipu_interface_speed_bytes", device="switch24", interface="ether5") == 12.5e6
    assert "kipu_wifi_clients" not in {n for n, lbl in s.samples if ("device", "switch24") in lbl}

    # UniFi: an SSID on two radios is one SSID; airMAX and ePMP: their station counts.
    assert s.value("kipu_wifi_clients", device="unifi", ssid="WiFi-Gratis") == 17
    assert s.value("kipu_wifi_clients", device="unifi", ssid="Posta-Salud") == 3
    assert s.value("kipu_wifi_clients", device="airmax", ssid="RED-JUNIN-PTMP-07") == 6
    assert interfaces(s, "airmax")  # from the 32-bit ifTable: airOS has no ifXTable
    assert s.value("kipu_wifi_clients", device="epmp", ssid="RED-JUNIN-EPMP-03") == 8
    for device in ("mikrotik", "switch24", "unifi", "airmax", "epmp"):
        assert 0 < s.value("kipu_snmp_duration_seconds", device=device) < 1


async def test_traffic_counters_grow(
    aiohttp_client: AiohttpClient, snmpsim: SnmpSim, tmp_path: Path
) -> None:
    _, scrape = await start(
        aiohttp_client, write_config(tmp_path, device_yaml("mikrotik", snmpsim.port, "mikrotik"))
    )
    first = (await wait_up(scrape, ["mikrotik"])).value(
        "kipu_interface_receive_bytes_total", device="mikrotik", interface="ether1"
    )

    async def grew() -> bool:
        s = await scrape()
        value = s.value("kipu_interface_receive_bytes_total", device="mikrotik", interface="ether1")
        return value > first

    await eventually(grew, within=15)


async def test_counter_wrap_and_device_reboot(
    aiohttp_client: AiohttpClient, snmpsim: SnmpSim, tmp_path: Path
) -> None:
    labels = {"device": "legacy32", "interface": "eth0"}
    _, scrape = await start(
        aiohttp_client, write_config(tmp_path, device_yaml("legacy32", snmpsim.port, "if_mib"))
    )
    s = await wait_up(scrape, ["legacy32"])
    # The device counted 4,294,960,000 bytes before the agent started: not our traffic.
    assert s.value("kipu_interface_receive_bytes_total", **labels) == 0
    in_octets = "1.3.6.1.2.1.2.2.1.10.2"  # eth0's ifInOctets (ifIndex 2), 32-bit

    # The counter wraps: 7,296 bytes to 2^32, then 1,000 more.
    snmpsim.set_values("legacy32", {in_octets: ("65", 1000)})

    async def value_is(expected: float) -> bool:
        s = await scrape()
        return s.value("kipu_interface_receive_bytes_total", **labels) == expected

    await eventually(lambda: value_is(7_296 + 1000), within=15)

    # The device reboots: uptime goes back and the counter restarts from zero.
    snmpsim.set_values("legacy32", {in_octets: ("65", 500), "1.3.6.1.2.1.1.3.0": ("67", 3000)})
    await eventually(lambda: value_is(7_296 + 1500), within=15)
    s = await scrape()
    assert s.value("kipu_device_reboots_total", device="legacy32") == 1
    assert s.value("kipu_device_uptime_seconds", device="legacy32") == 30


async def test_snmpd_smoke_v2c_and_v3(
    aiohttp_client: AiohttpClient, snmpd: Snmpd, tmp_path: Path
) -> None:
    v3 = "    v3:\n" + "".join(f"      {k}: {v}\n" for k, v in DEFAULT_V3_USER.items())
    wrong = dict(DEFAULT_V3_USER, auth_key="not-the-right-key")
    bad = "    v3:\n" + "".join(f"      {k}: {v}\n" for k, v in wrong.items())
    devices = (
        device_yaml("v2c", snmpd.port, "if_mib", community="public")
        + f"  - name: v3\n    address: 127.0.0.1\n    port: {snmpd.port}\n    interval: 1s\n"
        "    timeout: 500ms\n"
        + v3
        + f"  - name: badkey\n    address: 127.0.0.1\n    port: {snmpd.port}\n    interval: 1s\n"
        "    timeout: 500ms\n    retries: 0\n" + bad
    )
    agent, scrape = await start(aiohttp_client, write_config(tmp_path, devices))
    s = await wait_up(scrape, ["v2c", "v3"])
    assert "lo" in interfaces(s, "v2c")
    assert interfaces(s, "v3") == interfaces(s, "v2c")
    await wait_up(scrape, ["badkey"], up=0)
    assert agent.devices is not None
    runtime = agent.devices.devices["badkey"]
    assert runtime.error is not None
    assert "wrong" in runtime.error.lower() or "digest" in runtime.error.lower()
    assert agent.healthy()


async def test_a_second_poll_reads_no_rows_past_the_table(
    snmpsim: SnmpSim, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = await asyncio.to_thread(SnmpClient)
    received: list[int] = []
    original = client._hlapi.bulk_cmd

    async def counting(
        *args: object, **kwargs: object
    ) -> tuple[object, object, object, tuple[object, ...]]:
        answer = await original(*args, **kwargs)
        received.append(len(answer[3]))
        return answer  # type: ignore[no-any-return]

    monkeypatch.setattr(client._hlapi, "bulk_cmd", counting)
    device = Device("r48", "127.0.0.1", snmpsim.port, Credentials(community="router48"), 2.0, 1)
    profile = BUILTIN["if_mib"]
    try:
        first = await client.poll(device, profile.scalars, profile.columns, 10)
        first_count = sum(received)
        received.clear()
        second = await client.poll(device, profile.scalars, profile.columns, 10)
    finally:
        client.close()
    assert first.ok
    assert second.ok
    assert first.columns.keys() == second.columns.keys()
    assert all(len(rows) == 48 for rows in second.columns.values())
    # 9 columns of 48 rows: the second poll decodes at most one row past each column.
    assert sum(received) <= 9 * 49 < first_count
