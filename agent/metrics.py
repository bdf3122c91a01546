"""The agent's metrics: the only module that touches prometheus-client.

`AgentCollector.collect()` renders the agent's current `AgentSnapshot` at each scrape,
so the series of a removed target or a silent device disappear with it. It knows the
snapshot types only, never the components that produce them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder

from agent.probes.stats import RTT_BUCKETS
from agent.snapshots import (
    LOCAL_DEVICE,
    AgentSnapshot,
    CheckSnapshot,
    DeviceSnapshot,
    LinkSnapshot,
    LocalWifiSnapshot,
    PushSnapshot,
    TargetSnapshot,
    ThroughputSnapshot,
)

TARGET_LABELS = ["target", "role"]
Registry = CollectorRegistry
Source = Callable[[], AgentSnapshot]


class AgentCollector:
    """Renders the agent's snapshot (from `source`) as metric families."""

    def __init__(self, source: Source) -> None:
        self.source = source

    def describe(self) -> list[Metric]:
        return []  # the families depend on the configuration: no fixed description

    def collect(self) -> Iterator[Metric]:
        snap = self.source()
        build = GaugeMetricFamily(
            "kipu_agent_build_info", "kipu-agent version.", labels=["version"]
        )
        build.add_metric([snap.version], 1)
        yield build
        yield from _probe_families(snap.targets)
        yield from _link_families(snap.link)
        yield from _device_families(snap.devices, snap.local_wifi)
        if snap.push is not None:
            yield from _push_families(snap.push)
        if snap.checks:
            yield from _check_families(snap.checks)
        if snap.throughput is not None:
            yield from _throughput_families(snap.throughput)
        if snap.boot_time is not None:
            yield GaugeMetricFamily(
                "kipu_host_boot_time_seconds",
                "When the host booted (kernel btime).",
                value=snap.boot_time,
            )


def _probe_families(targets: tuple[TargetSnapshot, ...]) -> Iterator[Metric]:
    rtt = HistogramMetricFamily(
        "kipu_probe_rtt_seconds", "ICMP echo round-trip time.", labels=TARGET_LABELS
    )
    sent = CounterMetricFamily(
        "kipu_probe_packets_sent", "ICMP echo requests sent.", labels=TARGET_LABELS
    )
    received = CounterMetricFamily(
        "kipu_probe_packets_received", "ICMP echo replies received.", labels=TARGET_LABELS
    )
    jitter = GaugeMetricFamily(
        "kipu_probe_jitter_seconds",
        "Smoothed RTT variation (RFC 3550 interarrival jitter).",
        labels=TARGET_LABELS,
    )
    success = GaugeMetricFamily(
        "kipu_probe_success", "Whether the last probe got a reply.", labels=TARGET_LABELS
    )
    for target in targets:
        labels = [target.name, target.role]
        stats = target.stats
        cumulative, buckets = 0, []
        for bound, count in zip((*RTT_BUCKETS, float("inf")), stats.bucket_counts, strict=True):
            cumulative += count
            buckets.append((_le(bound), cumulative))
        rtt.add_metric(labels, buckets, stats.rtt_sum)
        sent.add_metric(labels, stats.sent)
        received.add_metric(labels, stats.received)
        jitter.add_metric(labels, stats.jitter)
        if stats.success is not None:
            success.add_metric(labels, 1 if stats.success else 0)
    yield from (rtt, sent, received, jitter, success)


def _link_families(link: LinkSnapshot) -> Iterator[Metric]:
    if link.up is not None:
        yield GaugeMetricFamily(
            "kipu_link_up", "Whether the link is up (link.up_when holds).", value=int(link.up)
        )
    yield CounterMetricFamily(
        "kipu_link_up_seconds", "Seconds the link was up.", value=link.up_seconds
    )
    yield CounterMetricFamily(
        "kipu_link_down_seconds", "Seconds the link was down.", value=link.down_seconds
    )
    yield CounterMetricFamily(
        "kipu_link_outages", "Transitions of the link from up to down.", value=link.outages
    )
    if link.last_change is not None:
        yield GaugeMetricFamily(
            "kipu_link_last_change_timestamp_seconds",
            "When the link last changed state.",
            value=link.last_change,
        )
    yield CounterMetricFamily(
        "kipu_agent_offline_seconds",
        "Seconds the agent was not running (power cuts, most often).",
        value=link.offline_seconds,
    )


def _device_families(
    devices: tuple[DeviceSnapshot, ...], local: LocalWifiSnapshot | None
) -> Iterator[Metric]:
    if not devices and local is None:
        return
    up = GaugeMetricFamily(
        "kipu_snmp_up", "Whether the last SNMP poll succeeded.", labels=["device"]
    )
    duration = GaugeMetricFamily(
        "kipu_snmp_duration_seconds", "How long the last SNMP poll took.", labels=["device"]
    )
    uptime = GaugeMetricFamily(
        "kipu_device_uptime_seconds", "Device uptime (sysUpTime).", labels=["device"]
    )
    reboots = CounterMetricFamily(
        "kipu_device_reboots", "Reboots seen (sysUpTime went back).", labels=["device"]
    )
    polls = CounterMetricFamily(
        "kipu_snmp_polls", "SNMP polls by result.", labels=["device", "result"]
    )
    privacy = CounterMetricFamily(
        "kipu_snmp_privacy_dropped_series",
        "Custom-profile series not exported: a label could hold an address.",
        labels=["device"],
    )
    iface = ["device", "interface"]
    rx = CounterMetricFamily(
        "kipu_interface_receive_bytes", "Bytes received, across wraps and reboots.", labels=iface
    )
    tx = CounterMetricFamily(
        "kipu_interface_transmit_bytes", "Bytes sent, across wraps and reboots.", labels=iface
    )
    if_up = GaugeMetricFamily("kipu_interface_up", "ifOperStatus is up.", labels=iface)
    speed = GaugeMetricFamily(
        "kipu_interface_speed_bytes", "Interface speed in bytes per second.", labels=iface
    )
    clients = GaugeMetricFamily(
        "kipu_wifi_clients", "WiFi clients associated, per SSID.", labels=["device", "ssid"]
    )
    hotspot = GaugeMetricFamily(
        "kipu_wifi_hotspot_users", "Users logged in to the hotspot.", labels=["device"]
    )
    leases = GaugeMetricFamily("kipu_dhcp_leases", "Active DHCP leases.", labels=["device"])
    capsman = GaugeMetricFamily(
        "kipu_wifi_capsman_clients", "Clients registered through CAPsMAN.", labels=["device"]
    )
    uniques = GaugeMetricFamily(
        "kipu_wifi_unique_clients", "Distinct WiFi clients seen today.", labels=["device"]
    )
    custom: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}
    for device in devices:
        name = device.name
        if device.up is not None:
            up.add_metric([name], int(device.up))
            duration.add_metric([name], device.duration)
        reboots.add_metric([name], device.reboots)
        polls.add_metric([name, "ok"], device.polls_ok)
        polls.add_metric([name, "error"], device.polls_failed)
        privacy.add_metric([name], device.privacy_dropped)
        if device.uptime_seconds is not None:
            uptime.add_metric([name], device.uptime_seconds)
        for interface in device.interfaces:
            labels = [name, interface.name]
            if interface.rx_bytes is not None:
                rx.add_metric(labels, interface.rx_bytes)
            if interface.tx_bytes is not None:
                tx.add_metric(labels, interface.tx_bytes)
            if interface.up is not None:
                if_up.add_metric(labels, int(interface.up))
            if interface.speed_bytes is not None:
                speed.add_metric(labels, interface.speed_bytes)
        if device.wifi_clients is not None:
            for ssid, count in sorted(device.wifi_clients.items()):
                clients.add_metric([name, ssid], count)
        if device.unique_clients is not None:
            uniques.add_metric([name], device.unique_clients)
        if device.hotspot_users is not None:
            hotspot.add_metric([name], device.hotspot_users)
        if device.dhcp_leases is not None:
            leases.add_metric([name], device.dhcp_leases)
        if device.capsman_clients is not None:
            capsman.add_metric([name], device.capsman_clients)
        for sample in device.custom:
            family = custom.get(sample.name)
            if family is None:
                kind = CounterMetricFamily if sample.kind == "counter" else GaugeMetricFamily
                family = kind(
                    sample.name,
                    sample.help or sample.name,
                    labels=["device", *(k for k, _ in sample.labels)],
                )
                custom[sample.name] = family
            family.add_metric([name, *(v for _, v in sample.labels)], sample.value)
    if local is not None:
        for ssid, count in sorted(local.clients_per_ssid.items()):
            clients.add_metric([LOCAL_DEVICE, ssid], count)
        if local.dhcp_leases is not None:
            leases.add_metric([LOCAL_DEVICE], local.dhcp_leases)
        uniques.add_metric([LOCAL_DEVICE], local.unique_clients)
    yield from (up, duration, uptime, reboots, polls)
    if devices:
        yield privacy
    yield from (rx, tx, if_up, speed, clients, hotspot, leases, capsman, uniques)
    yield from custom.values()


def _push_families(push: PushSnapshot) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "kipu_spool_bytes", "Bytes waiting in the spool.", value=push.spool_bytes
    )
    yield GaugeMetricFamily(
        "kipu_spool_samples", "Samples waiting in the spool.", value=push.spool_samples
    )
    yield CounterMetricFamily(
        "kipu_spool_dropped_samples",
        "Samples dropped: spool full (max_spool) or disk full.",
        value=push.spool_dropped_samples,
    )
    yield CounterMetricFamily(
        "kipu_spool_corrupt_records",
        "Damaged spool records skipped (since the agent started).",
        value=push.spool_corrupt_records,
    )
    requests = CounterMetricFamily(
        "kipu_push_requests", "Remote write requests by outcome.", labels=["result"]
    )
    for result, count in push.requests.items():
        requests.add_metric([result], count)
    yield requests
    if push.last_success is not None:
        yield GaugeMetricFamily(
            "kipu_push_last_success_timestamp_seconds",
            "When a push last succeeded.",
            value=push.last_success,
        )
    yield GaugeMetricFamily(
        "kipu_push_blocked",
        "Whether the receiver refuses us (401, 403, 404, 407): data kept, sender paused.",
        value=int(push.blocked),
    )
    if push.clock_offset is not None:
        yield GaugeMetricFamily(
            "kipu_agent_clock_offset_seconds",
            "The agent's clock minus the receiver's (its Date header).",
            value=push.clock_offset,
        )
    yield CounterMetricFamily(
        "kipu_push_rejected_samples",
        "Samples the receiver refused on their own (dropped).",
        value=push.rejected_samples,
    )
    yield CounterMetricFamily(
        "kipu_push_undecodable_records",
        "Spooled records that could not be decoded (dropped).",
        value=push.undecodable_records,
    )
    yield CounterMetricFamily(
        "kipu_push_invalid_series",
        "Series left out of a snapshot: labels remote write cannot carry.",
        value=push.invalid_series,
    )
    yield CounterMetricFamily(
        "kipu_push_restamped_samples",
        "Samples held while the clock was untrusted, then re-stamped.",
        value=push.restamped_samples,
    )
    yield GaugeMetricFamily(
        "kipu_push_held_snapshots",
        "Snapshots held until the clock is trusted.",
        value=push.held_snapshots,
    )
    yield CounterMetricFamily(
        "kipu_push_held_dropped_samples",
        "Samples of held snapshots dropped: more than 12 hours held.",
        value=push.held_dropped_samples,
    )
    yield CounterMetricFamily(
        "kipu_push_snapshots", "Snapshots taken for pushing.", value=push.snapshots
    )


def _check_families(checks: tuple[CheckSnapshot, ...]) -> Iterator[Metric]:
    success = GaugeMetricFamily(
        "kipu_check_success", "Whether the check's last run succeeded.", labels=["check", "kind"]
    )
    duration = GaugeMetricFamily(
        "kipu_check_duration_seconds",
        "Seconds each phase of the check's last run took.",
        labels=["check", "kind", "phase"],
    )
    runs = CounterMetricFamily(
        "kipu_check_runs",
        "Runs of the check by result: ok or why it failed.",
        labels=["check", "kind", "result"],
    )
    expiry = GaugeMetricFamily(
        "kipu_check_tls_expiry_timestamp_seconds",
        "When the server's certificate expires (last verified handshake).",
        labels=["check"],
    )
    for check in checks:
        if check.success is not None:
            success.add_metric([check.name, check.kind], int(check.success))
        for phase, seconds in check.phases:
            duration.add_metric([check.name, check.kind, phase], seconds)
        for result, count in check.runs:
            runs.add_metric([check.name, check.kind, result], count)
        if check.tls_expiry is not None:
            expiry.add_metric([check.name], check.tls_expiry)
    yield from (success, duration, runs, expiry)


def _throughput_families(throughput: ThroughputSnapshot) -> Iterator[Metric]:
    reading = GaugeMetricFamily(
        "kipu_throughput_bits_per_second",
        "Goodput of the last successful throughput test, by direction.",
        labels=["direction"],
    )
    for direction, bits in throughput.bits_per_second:
        reading.add_metric([direction], bits)
    runs = CounterMetricFamily(
        "kipu_throughput_runs",
        "Throughput tests by direction and result (ok, budget, error, timeout).",
        labels=["direction", "result"],
    )
    for direction, result, count in throughput.runs:
        runs.add_metric([direction, result], count)
    spent = CounterMetricFamily(
        "kipu_throughput_bytes",
        "Data spent by throughput tests, by direction (kept across restarts).",
        labels=["direction"],
    )
    for direction, count in throughput.bytes_total:
        spent.add_metric([direction], count)
    yield from (reading, runs, spent)
    if throughput.last_run is not None:
        yield GaugeMetricFamily(
            "kipu_throughput_last_run_timestamp_seconds",
            "When the last throughput test ended.",
            value=throughput.last_run,
        )


def samples(registry: CollectorRegistry) -> list[tuple[dict[str, str], float]]:
    """Every sample the registry exposes now, as (labels with __name__, value)."""
    found = []
    for family in registry.collect():
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            found.append(({"__name__": sample.name, **sample.labels}, float(sample.value)))
    return found


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


def make_registry(source: Source) -> CollectorRegistry:
    """A registry with the agent's families and the process's own (CPU, memory)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AgentCollector(source))
    ProcessCollector(registry=registry)
    return registry


def render(registry: CollectorRegistry, accept: str | None) -> tuple[bytes, str]:
    """Encode the registry as Prometheus text or OpenMetrics, by the Accept header."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type
