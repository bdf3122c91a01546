"""SNMP through a lossy or dead path (nftables in the device's namespace), and privacy:
no client MAC or IP address in metrics, logs, state files or pushed data."""

from __future__ import annotations

import re
import signal
import textwrap
import time
from pathlib import Path

from demo.netns import Testbed
from kipu.remote_write.codec import decode
from kipu.spool import Spool
from tests.agent.test_netns_process import site_agent
from tests.agent_process import AgentProcess, free_port, loopback_get
from tests.metrics_util import wait_until
from tests.support.fixtures import requires_netns, requires_snmpsim
from tests.support.receiver import Receiver
from tests.support.snmp import SnmpSim, parse_snmprec

pytestmark = [requires_netns, requires_snmpsim]


def write(path: Path, body: str) -> Path:
    path.write_text(textwrap.dedent(body))
    return path


def test_loss_retries_dead_device_and_icmp_undisturbed(tmp_path: Path, snmp_data: Path) -> None:
    with Testbed(targets=2) as bed:
        icmp_address, device_address = bed.target_addresses
        bed.set(icmp_address, delay=0.020)
        with SnmpSim(snmp_data, netns=bed.far_ns, host=device_address) as sim:
            config = write(
                tmp_path / "a.yaml",
                f"""\
                site_id: snmp-ns-01
                state_dir: {tmp_path / "state"}
                probes:
                  interval: 50ms
                  timeout: 500ms
                  targets:
                    - {{name: pop, address: {icmp_address}, role: pop}}
                snmp:
                  - name: router
                    address: {device_address}
                    port: {sim.port}
                    profile: mikrotik
                    community: mikrotik
                    interval: 1s
                    timeout: 200ms
                    retries: 4
                """,
            )
            with site_agent(bed, tmp_path, config) as agent:
                labels = {"device": "router"}

                def polls(result: str) -> float:
                    found = agent.scrape().get("kipu_snmp_polls_total", result=result, **labels)
                    return found or 0.0

                wait_until(lambda: polls("ok") >= 1, timeout=30)
                # 30% of requests lost: retries carry nearly every poll through.
                bed.udp_loss(sim.port, 0.3)
                ok, failed = polls("ok"), polls("error")
                wait_until(lambda: polls("ok") + polls("error") >= ok + failed + 8, timeout=40)
                assert polls("error") - failed <= 1
                # The device dies: every request times out after 5 tries of 200 ms.
                bed.udp_drop_all(sim.port)
                wait_until(lambda: agent.scrape().get("kipu_snmp_up", **labels) == 0, timeout=20)
                before, began = agent.scrape(), time.monotonic()
                failed = polls("error")
                wait_until(lambda: polls("error") >= failed + 3, timeout=20)
                after, ended = agent.scrape(), time.monotonic()
                duration = after.value("kipu_snmp_duration_seconds", **labels)
                assert 0.9 <= duration <= 1.4, duration
                # Meanwhile the ICMP probes kept their cadence and their accuracy.
                pop = {"target": "pop", "role": "pop"}
                count = after.value("kipu_probe_rtt_seconds_count", **pop) - before.value(
                    "kipu_probe_rtt_seconds_count", **pop
                )
                total = after.value("kipu_probe_rtt_seconds_sum", **pop) - before.value(
                    "kipu_probe_rtt_seconds_sum", **pop
                )
                assert count >= 0.8 * (ended - began) / 0.05, count
                assert abs(total / count - 0.020) < 0.001
                # The device comes back.
                bed.udp_loss_clear()
                wait_until(lambda: agent.scrape().get("kipu_snmp_up", **labels) == 1, timeout=20)
            # Logged when the state changes, not at every failed poll: "is down" once for the
            # dead device (the loss phase may add one), "answers" at the first answer and
            # again after each time down.
            downs = agent.log().count(f"SNMP device router ({device_address}) is down")
            assert downs in (1, 2), downs
            assert agent.log().count("SNMP device router answers") == downs + 1


MAC = re.compile(r"(?<![0-9A-Fa-f:])([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}(?![0-9A-Fa-f:])")

STATION_DUMP = (
    "Station 3c:28:6d:0a:11:22 (on wlan0)\n\tsignal:  \t-61 dBm\n"
    "Station f4:0f:24:33:44:55 (on wlan0)\n\tsignal:  \t-72 dBm\n"
)
LEASES = "0 3c:28:6d:0a:11:22 192.168.88.23 android-1a2b *\n0 f4:0f:24:33:44:56 192.168.88.40 * *\n"


def client_identifiers(snmp_data: Path) -> set[str]:
    """Every client MAC and IP address in the MikroTik recording and the local sources,
    in every form they could be written in."""
    records = parse_snmprec((snmp_data / "mikrotik.snmprec").read_text())
    found: set[str] = {"192.168.88.23", "192.168.88.40"}
    macs = {
        bytes.fromhex("3c286d0a1122"),
        bytes.fromhex("f40f24334455"),
        bytes.fromhex("f40f24334456"),
    }
    for oid, (tag, value) in records.items():
        if oid.startswith("1.3.6.1.4.1.14988.1.1.1.2.1.3."):  # registration table index
            macs.add(bytes(int(p) for p in oid.split(".")[-7:-1]))
        if oid.startswith("1.3.6.1.4.1.14988.1.1.5.1.1.5."):  # hotspot user IP
            found.add(str(value))
        if oid.startswith("1.3.6.1.4.1.14988.1.1.5.1.1.6."):  # hotspot user MAC
            macs.add(bytes.fromhex(str(value)) if tag.endswith("x") else str(value).encode())
    for mac in macs:
        found |= {
            mac.hex(":"),
            mac.hex("-"),
            mac.hex(),
            mac.hex(":").upper(),
            ".".join(str(b) for b in mac),
        }
    return found


def test_no_client_address_anywhere(tmp_path: Path, snmpsim: SnmpSim, snmp_data: Path) -> None:
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    # No WiFi hardware here: `iw` prints a station dump recorded from a real AP.
    iw = fake_bin / "iw"
    iw.write_text(f"#!/bin/sh\ncat <<'EOF'\n{STATION_DUMP}EOF\n")
    iw.chmod(0o755)
    leases = tmp_path / "dhcp.leases"
    leases.write_text(LEASES)
    receiver = Receiver().start()
    try:
        config = write(
            tmp_path / "a.yaml",
            f"""\
            site_id: privacy-01
            state_dir: {tmp_path / "state"}
            probes:
              interval: 200ms
              targets: [{{name: gw, address: 127.0.0.1, role: gateway}}]
            snmp:
              - {{name: router, address: 127.0.0.1, port: {snmpsim.port}, profile: mikrotik,
                  community: mikrotik, interval: 1s}}
            wifi:
              - {{source: iw, interface: wlan0, ssid: WiFi-Gratis, interval: 200ms}}
              - {{source: dnsmasq_leases, path: {leases}, interval: 200ms}}
            push:
              url: {receiver.url}
              interval: 200ms
              spread: 0s
              clock_settle: 0s
            """,
        )
        agent = AgentProcess(
            config,
            free_port(),
            tmp_path / "agent.log",
            extra_args=["--log.level=debug"],
            env={"PATH": f"{fake_bin}:/usr/sbin:/usr/bin:/sbin:/bin"},
        )
        with agent:
            wait_until(
                lambda: agent.scrape().get("kipu_wifi_unique_clients", device="router") == 17,
                timeout=30,
            )
            scrape = agent.scrape()
            assert scrape.value("kipu_wifi_clients", device="local", ssid="WiFi-Gratis") == 2
            assert scrape.value("kipu_dhcp_leases", device="local") == 2
            assert scrape.value("kipu_wifi_unique_clients", device="local") == 3
            wait_until(lambda: bool(receiver.series("kipu_wifi_unique_clients")), timeout=20)
            receiver.stop()  # let the spool hold data too
            wait_until(lambda: agent.scrape().value("kipu_spool_samples") > 0, timeout=20)
            _, metrics_text = loopback_get("127.0.0.1", agent.port, "/metrics")
            assert agent.stop(signal.SIGTERM) == 0
        places = {"metrics": metrics_text.decode(), "log": agent.log()}
        for path in (tmp_path / "state").rglob("*"):
            if path.is_file():
                places[str(path)] = path.read_bytes().decode("latin-1")
        spool = Spool(tmp_path / "state" / "spool", 1 << 30)
        spool.open()
        pushed = [r.payload for r in spool.oldest(10**6)]
        spool.close()
        assert pushed
        with receiver.lock:
            labels = [v for s, _, _ in receiver.samples for _, v in s]
        for payload in pushed:
            labels += [v for series in decode(payload) for _, v in series]
        places["pushed labels"] = "\n".join(labels)
    finally:
        receiver.__exit__(None, None, None)
    secrets = client_identifiers(snmp_data)
    for place, text in places.items():
        for secret in secrets:
            assert secret not in text, f"{secret} found in {place}"
        assert not MAC.search(text), f"a MAC address in {place}: {MAC.search(text)}"
