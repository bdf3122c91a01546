"""The agent's metrics: the only module that touches prometheus-client.

`AgentCollector.collect()` builds every family from the agent's current state at
each scrape, so the series of a removed target disappear with it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder

from agent.probes.stats import RTT_BUCKETS
from agent.version import __version__

if TYPE_CHECKING:
    from agent.app import Agent

TARGET_LABELS = ["target", "role"]
LOCAL_DEVICE = "local"  # the `device` label of the agent's own WiFi sources
Registry = CollectorRegistry


class AgentCollector:
    """Exposes an Agent's probes, link and host state."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def describe(self) -> list[Metric]:
        return []  # the families depend on the configuration: no fixed description

    def collect(self) -> Iterator[Metric]:
        agent = self.agent
        build = GaugeMetricFamily(
            "kipu_agent_build_info", "kipu-agent version.", labels=["version"]
        )
        build.add_metric([__version__], 1)
        yield build
        yield from self._probe_families()
        yield from self._link_families()
        yield from self._device_families()
        yield from self._push_families()

        boot = agent.boot_time()
        if boot is not None:
            yield GaugeMetricFamily(
                "kipu_host_boot_time_seconds", "When the host booted (kernel btime).", value=boot
            )

    def _probe_families(self) -> Iterator[Metric]:
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
        for runtime in self.agent.prober.targets.values():
            labels = [runtime.target.name, runtime.target.role]
            snap = runtime.stats.snapshot()
            cumulative, buckets = 0, []
            for bound, count in zip((*RTT_BUCKETS, float("inf")), snap.bucket_counts, strict=True):
                cumulative += count
                buckets.append((_le(bound), cumulative))
            rtt.add_metric(labels, buckets, snap.rtt_sum)
            sent.add_metric(labels, snap.sent)
            received.add_metric(labels, snap.received)
            jitter.add_metric(labels, snap.jitter)
            if snap.success is not None:
                success.add_metric(labels, 1 if snap.success else 0)
        yield from (rtt, sent, received, jitter, success)

    def _link_families(self) -> Iterator[Metric]:
        link = self.agent.link
        link.advance(time.monotonic())
        counters = link.counters
        if link.up is not None:
            yield GaugeMetricFamily(
                "kipu_link_up", "Whether the link is up (link.up_when holds).", value=int(link.up)
            )
        yield CounterMetricFamily(
            "kipu_link_up_seconds", "Seconds the link was up.", value=counters.up_seconds
        )
        yield CounterMetricFamily(
            "kipu_link_down_seconds", "Seconds the link was down.", value=counters.down_seconds
        )
        yield CounterMetricFamily(
            "kipu_link_outages", "Transitions of the link from up to down.", value=counters.outages
        )
        if counters.last_change is not None:
            yield GaugeMetricFamily(
                "kipu_link_last_change_timestamp_seconds",
                "When the link last changed state.",
                value=counters.last_change,
            )
        yield CounterMetricFamily(
            "kipu_agent_offline_seconds",
            "Seconds the agent was not running (power cuts, most often).",
            value=counters.offline_seconds,
        )

    def _device_families(self) -> Iterator[Metric]:
        poller = self.agent.devices
        if poller is None or (not poller.devices and not poller.wifi_sources):
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
        iface = ["device", "interface"]
        rx = CounterMetricFamily(
            "kipu_interface_receive_bytes",
            "Bytes received, across wraps and reboots.",
            labels=iface,
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
        for name, runtime in poller.devices.items():
            if runtime.up is not None:
                up.add_metric([name], int(runtime.up))
                duration.add_metric([name], runtime.duration)
            reboots.add_metric([name], runtime.reboots)
            polls.add_metric([name, "ok"], runtime.polls_ok)
            polls.add_metric([name, "error"], runtime.polls_failed)
            state = runtime.state
            if state is None:
                continue
            if state.uptime_seconds is not None:
                uptime.add_metric([name], state.uptime_seconds)
            for view in runtime.interfaces:
                labels = [name, view.name]
                if view.rx_bytes is not None:
                    rx.add_metric(labels, view.rx_bytes)
                if view.tx_bytes is not None:
                    tx.add_metric(labels, view.tx_bytes)
                if view.up is not None:
                    if_up.add_metric(labels, int(view.up))
                if view.speed_bytes is not None:
                    speed.add_metric(labels, view.speed_bytes)
            if state.wifi_clients is not None:
                for ssid, count in sorted(state.wifi_clients.items()):
                    clients.add_metric([name, ssid], count)
                uniques.add_metric([name], poller.uniques.count(name))
            if state.hotspot_users is not None:
                hotspot.add_metric([name], state.hotspot_users)
            if state.dhcp_leases is not None:
                leases.add_metric([name], state.dhcp_leases)
            if state.capsman_clients is not None:
                capsman.add_metric([name], state.capsman_clients)
            for sample in state.custom:
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
        if poller.wifi_sources:
            ssids, local_leases = poller.local_counts()
            for ssid, count in sorted(ssids.items()):
                clients.add_metric([LOCAL_DEVICE, ssid], count)
            if local_leases is not None:
                leases.add_metric([LOCAL_DEVICE], local_leases)
            uniques.add_metric([LOCAL_DEVICE], poller.uniques.count(LOCAL_DEVICE))
        yield from (
            up,
            duration,
            uptime,
            reboots,
            polls,
            rx,
            tx,
            if_up,
            speed,
            clients,
            hotspot,
            leases,
            capsman,
            uniques,
        )
        yield from custom.values()

    def _push_families(self) -> Iterator[Metric]:
        pusher = self.agent.pusher
        if pusher is None:
            return
        spool, stats = pusher.spool, pusher.stats
        yield GaugeMetricFamily(
            "kipu_spool_bytes", "Bytes waiting in the spool.", value=spool.bytes
        )
        yield GaugeMetricFamily(
            "kipu_spool_samples", "Samples waiting in the spool.", value=spool.samples
        )
        yield CounterMetricFamily(
            "kipu_spool_dropped_samples",
            "Samples dropped: spool full (max_spool) or disk full.",
            value=spool.dropped_samples,
        )
        requests = CounterMetricFamily(
            "kipu_push_requests", "Remote write requests by outcome.", labels=["result"]
        )
        for result, count in stats.requests.items():
            requests.add_metric([result], count)
        yield requests
        if stats.last_success is not None:
            yield GaugeMetricFamily(
                "kipu_push_last_success_timestamp_seconds",
                "When a push last succeeded.",
                value=stats.last_success,
            )
        yield CounterMetricFamily(
            "kipu_push_rejected_samples",
            "Samples the receiver refused for good (dropped).",
            value=stats.rejected_samples,
        )
        yield CounterMetricFamily(
            "kipu_push_restamped_samples",
            "Samples held while the clock was untrusted, then re-stamped.",
            value=stats.restamped_samples,
        )
        yield GaugeMetricFamily(
            "kipu_push_held_snapshots",
            "Snapshots held until the clock is trusted.",
            value=len(pusher.held),
        )
        yield CounterMetricFamily(
            "kipu_push_snapshots", "Snapshots taken for pushing.", value=stats.snapshots
        )


def snapshot(registry: CollectorRegistry) -> list[tuple[dict[str, str], float]]:
    """Every sample the registry exposes now, as (labels with __name__, value)."""
    samples = []
    for family in registry.collect():
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            samples.append(({"__name__": sample.name, **sample.labels}, float(sample.value)))
    return samples


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


def make_registry(agent: Agent) -> CollectorRegistry:
    """A registry with the agent's families and the process's own (CPU, memory)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(AgentCollector(agent))
    ProcessCollector(registry=registry)
    return registry


def render(registry: CollectorRegistry, accept: str | None) -> tuple[bytes, str]:
    """Encode the registry as Prometheus text or OpenMetrics, by the Accept header."""
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type
