"""A device that stops answering: its readings stop being exported and pushed (stale
markers), `kipu_snmp_up 0` remains; when it answers again its counters carry on."""

from __future__ import annotations

from pathlib import Path

from pytest_aiohttp import AiohttpClient

from kipu.remote_write.codec import is_stale_marker
from tests.agent.test_snmp import device_yaml, start, wait_up, write_config
from tests.metrics_util import eventually
from tests.support.receiver import Receiver
from tests.support.snmp import SnmpSim

DEVICE = {"device": "mikrotik"}
READINGS = (
    "kipu_device_uptime_seconds",
    "kipu_wifi_clients",
    "kipu_interface_receive_bytes_total",
    "kipu_interface_up",
    "kipu_dhcp_leases",
)


async def test_a_silent_device_keeps_only_its_up_gauge(
    aiohttp_client: AiohttpClient, snmpsim: SnmpSim, tmp_path: Path
) -> None:
    with Receiver() as receiver:
        config = write_config(tmp_path, device_yaml("mikrotik", snmpsim.port, "mikrotik"))
        config.write_text(
            config.read_text() + f"push:\n  url: {receiver.url}\n  interval: 100ms\n  timeout: 2s\n"
            "  spread: 0s\n  clock_settle: 0s\n"
        )
        _, scrape = await start(aiohttp_client, config)
        before = await wait_up(scrape, ["mikrotik"])
        for name in READINGS:
            assert any(
                n == name and ("device", "mikrotik") in labels for n, labels in before.samples
            )
        rx_before = max(
            v
            for (n, labels), v in before.samples.items()
            if n == "kipu_interface_receive_bytes_total" and ("device", "mikrotik") in labels
        )

        snmpsim.stop()
        silent = await wait_up(scrape, ["mikrotik"], up=0)
        for name in READINGS:
            assert not any(
                n == name and ("device", "mikrotik") in labels for n, labels in silent.samples
            ), name
        assert silent.value("kipu_snmp_polls_total", result="error", **DEVICE) >= 1

        async def stale_pushed() -> bool:
            clients = receiver.series("kipu_wifi_clients")
            return bool(clients) and is_stale_marker(clients[-1][1])

        await eventually(stale_pushed, within=15)
        assert receiver.series("kipu_snmp_up")[-1][1] == 0.0

        snmpsim.restart()
        back = await wait_up(scrape, ["mikrotik"])
        rx_back = max(
            v
            for (n, labels), v in back.samples.items()
            if n == "kipu_interface_receive_bytes_total" and ("device", "mikrotik") in labels
        )
        assert rx_back >= rx_before  # the counter carried on, it did not restart
