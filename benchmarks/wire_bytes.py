"""Bytes on the wire per sample for remote write pushes of a typical site.

A site's snapshot is about a hundred series, like the agent's: the RTT histogram of
three probe targets (gateway, PoP, internet), the probe counters and gauges, the link
and power counters, two SNMP devices with their interfaces, WiFi and the push's own
metrics. No identity labels: the collector adds those. Values move as they would every
15 s (counters grow, RTTs vary, a little loss), so compression sees realistic data.

For a push of 1 snapshot, of 4 (a minute at 15 s) and of 240 (an hour of backlog after
an outage) it prints the protobuf size, the snappy body, and bytes per sample for both,
plus the HTTP request head the body travels with (TLS framing not counted), and the
time `encode` takes. Deterministic (seeded).

    python -m benchmarks.wire_bytes
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from agent.probes.stats import RTT_BUCKETS
from kipu.remote_write.client import PROTOCOL_VERSION
from kipu.remote_write.codec import Sample, Series, encode, normalise_labels, serialize

INTERVAL_S = 15
START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
# (name, role, typical RTT in seconds): LAN gateway, regional PoP, the internet over 4G.
TARGETS = [
    ("gateway", "gateway", 0.0006),
    ("pop-huancayo", "pop", 0.012),
    ("internet", "internet", 0.054),
]
DEVICES = {"router": ["ether1", "ether2", "wlan1", "bridge"], "ap": ["eth0", "ath0"]}
BATCHES = [1, 4, 240]
URL_PATH = "/api/v1/write"
HOST = "noc.example.pe"
TOKEN = "x" * 43  # secrets.token_urlsafe(32)


def series(name: str, **labels: str) -> Series:
    return normalise_labels({"__name__": name, **labels})


@dataclass
class Site:
    """A site's metrics, advanced one snapshot at a time."""

    rng: random.Random
    counters: dict[Series, float] = field(default_factory=dict)

    def add(self, key: Series, amount: float) -> float:
        self.counters[key] = self.counters.get(key, 0.0) + amount
        return self.counters[key]

    def snapshot(self, index: int) -> Iterator[tuple[Series, float]]:
        rng = self.rng
        now_s = (START_MS + index * INTERVAL_S * 1000) / 1000
        for target, role, base_rtt in TARGETS:
            sent = INTERVAL_S
            received = sent - (1 if rng.random() < 0.1 else 0)
            rtts = [base_rtt * rng.lognormvariate(0, 0.25) for _ in range(received)]
            for bound in (*RTT_BUCKETS, float("inf")):
                le = "+Inf" if bound == float("inf") else repr(bound)
                key = series("kipu_probe_rtt_seconds_bucket", target=target, role=role, le=le)
                yield key, self.add(key, sum(1 for rtt in rtts if rtt <= bound))
            labels = {"target": target, "role": role}
            yield (
                series("kipu_probe_rtt_seconds_sum", **labels),
                self.add(series("kipu_probe_rtt_seconds_sum", **labels), sum(rtts)),
            )
            for name, amount in [
                ("kipu_probe_rtt_seconds_count", received),
                ("kipu_probe_packets_sent_total", sent),
                ("kipu_probe_packets_received_total", received),
            ]:
                yield series(name, **labels), self.add(series(name, **labels), amount)
            yield series("kipu_probe_jitter_seconds", **labels), base_rtt * rng.uniform(0.05, 0.2)
            yield series("kipu_probe_success", **labels), 1.0
        yield series("kipu_link_up"), 1.0
        yield (
            series("kipu_link_up_seconds_total"),
            self.add(series("kipu_link_up_seconds_total"), 15),
        )
        yield series("kipu_link_down_seconds_total"), 312.0
        yield series("kipu_link_outages_total"), 3.0
        yield series("kipu_link_last_change_timestamp_seconds"), 1_767_100_000.25
        yield series("kipu_host_boot_time_seconds"), 1_767_000_000.0
        yield series("kipu_agent_offline_seconds_total"), 5_400.5
        yield series("kipu_agent_build_info", version="0.2.0"), 1.0
        for device, interfaces in DEVICES.items():
            yield series("kipu_snmp_up", device=device), 1.0
            yield series("kipu_snmp_duration_seconds", device=device), rng.uniform(0.02, 0.2)
            yield series("kipu_device_uptime_seconds", device=device), now_s - 1_767_000_000
            for interface in interfaces:
                labels = {"device": device, "interface": interface}
                for name, rate in [
                    ("kipu_interface_receive_bytes_total", 400_000),
                    ("kipu_interface_transmit_bytes_total", 60_000),
                ]:
                    key = series(name, **labels)
                    yield key, self.add(key, int(rate * INTERVAL_S * rng.uniform(0.2, 1.5)))
                yield series("kipu_interface_up", **labels), 1.0
                yield series("kipu_interface_speed_bytes", **labels), 125_000_000.0
        yield series("kipu_wifi_clients", device="ap", ssid="WiFi-Gratis"), rng.randint(3, 25)
        yield series("kipu_wifi_hotspot_users", device="ap"), rng.randint(3, 25)
        yield series("kipu_dhcp_leases", device="router"), rng.randint(5, 40)
        yield series("kipu_wifi_unique_clients", device="ap"), 40.0 + index // 20
        yield series("kipu_spool_bytes"), 4096.0 * (1 + index % 7)
        yield series("kipu_spool_samples"), 115.0 * (1 + index % 7)
        yield series("kipu_spool_dropped_samples_total"), 0.0
        for result in ("ok", "retry", "rejected"):
            key = series("kipu_push_requests_total", result=result)
            yield key, self.add(key, 1 if result == "ok" else 0)
        yield series("kipu_push_last_success_timestamp_seconds"), now_s - INTERVAL_S


def batch(snapshots: int, seed: int = 1) -> dict[Series, list[Sample]]:
    site = Site(random.Random(seed))
    out: dict[Series, list[Sample]] = {}
    for index in range(snapshots):
        # Snapshots are taken by a timer, so their times wander by a few milliseconds.
        timestamp = START_MS + index * INTERVAL_S * 1000 + site.rng.randint(0, 20)
        for key, value in site.snapshot(index):
            out.setdefault(key, []).append((timestamp, float(value)))
    return out


def request_head(body_length: int) -> int:
    """Bytes of the HTTP/1.1 request line and headers the client sends with a body."""
    headers = {
        "Host": HOST,
        "Accept": "*/*",
        "Accept-Encoding": "gzip, deflate",
        "User-Agent": "kipu-agent/0.2.0",
        "Content-Encoding": "snappy",
        "Content-Type": "application/x-protobuf",
        "X-Prometheus-Remote-Write-Version": PROTOCOL_VERSION,
        "Authorization": f"Bearer {TOKEN}",
        "Content-Length": str(body_length),
    }
    lines = [f"POST {URL_PATH} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    return len("\r\n".join(lines).encode())


def encode_ms(data: dict[Series, list[Sample]]) -> float:
    runs = []
    for _ in range(5):
        started = time.perf_counter()
        encode(data)
        runs.append((time.perf_counter() - started) * 1000)
    return statistics.median(runs)


def main() -> None:
    print(f"{len(batch(1))} series per snapshot, one snapshot every {INTERVAL_S} s\n")
    header = (
        f"{'snapshots':>9} {'samples':>8} {'protobuf B':>11} {'B/sample':>8} "
        f"{'snappy B':>9} {'B/sample':>8} {'+HTTP head':>10} {'B/sample':>8} {'encode ms':>9}"
    )
    print(header)
    print("-" * len(header))
    for snapshots in BATCHES:
        data = batch(snapshots)
        samples = sum(len(points) for points in data.values())
        raw = len(serialize(data))
        body = len(encode(data))
        wire = body + request_head(body)
        print(
            f"{snapshots:>9} {samples:>8} {raw:>11} {raw / samples:>8.1f} "
            f"{body:>9} {body / samples:>8.1f} {wire:>10} {wire / samples:>8.1f} "
            f"{encode_ms(data):>9.2f}"
        )


if __name__ == "__main__":
    main()
