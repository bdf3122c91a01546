"""The collector's metrics: the only module of the collector that touches prometheus-client.

`CollectorMetrics.collect()` renders the current `CollectorSnapshot` at each scrape:
`kipu_site_info` and the liveness of every inventoried site, `kipu_sites` per project,
region, institution type and state, and the collector's own ingest and queue figures.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder

from collector.inventory import Site
from collector.liveness import STATES
from collector.rollup import rollups
from collector.snapshots import CollectorSnapshot, ForwardSnapshot, Histogram, Rollup
from collector.speedtest import DIRECTIONS as SPEEDTEST_DIRECTIONS
from collector.speedtest import SpeedTestSnapshot

Source = Callable[[], CollectorSnapshot]
SITE_LABELS = ["site_id", "project", "region"]
INFO_LABELS = list(Site.__dataclass_fields__)


class CollectorMetrics:
    def __init__(self, source: Source) -> None:
        self.source = source

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        snap = self.source()
        build = GaugeMetricFamily(
            "kipu_collector_build_info", "kipu-collector version.", labels=["version"]
        )
        build.add_metric([snap.version], 1)
        yield build
        yield from _site_states(snap)
        yield from _rollup_families(rollups(snap.sites))  # here, in the render's thread
        yield from _ingest_families(snap)
        if snap.forward is not None:
            yield from _forward_families(snap.forward)


def _site_states(snap: CollectorSnapshot) -> Iterator[Metric]:
    counts: Counter[tuple[str, str, str, str]] = Counter()
    groups: set[tuple[str, str, str]] = set()
    for view in snap.sites:
        site = view.site
        group = (site.project, site.region, site.institution_type)
        groups.add(group)
        counts[(*group, view.state)] += 1
    sites = GaugeMetricFamily(
        "kipu_sites",
        "Inventoried sites by state.",
        labels=["project", "region", "institution_type", "state"],
    )
    for group in sorted(groups):
        for state in STATES:  # every state, zero too: a panel of a state never goes blank
            sites.add_metric([*group, state], counts[(*group, state)])
    yield sites


# --- the families with one series per site, written by hand ------------------------------
#
# With 10,000 sites, these are 30,000 lines per scrape, most of them the same each time:
# prometheus-client would build an object per line and take half a second. Their label
# sets are escaped once per site (cached; a reloaded inventory brings new Site objects)
# and the lines are joined as text, in the same format, for both content types.


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    return "{" + ",".join(f'{name}="{_escape(value)}"' for name, value in pairs) + "}"


@functools.lru_cache(maxsize=1 << 16)
def _site_labels(site: Site) -> tuple[str, str]:
    """The label sets of a site: all its inventory fields, and its identity."""
    fields = site.info_labels()
    every = _labels((name, fields[name]) for name in INFO_LABELS)
    identity = _labels((name, fields[name]) for name in SITE_LABELS)
    return every, identity


def _float(value: float) -> str:
    return repr(float(value))


def site_lines(snap: CollectorSnapshot) -> str:
    """`kipu_site_info`, `kipu_site_last_push_timestamp_seconds`, `kipu_site_reporting`
    and `kipu_site_contracted_bits_per_second` in the exposition format (valid in both
    content types)."""
    info = [
        "# HELP kipu_site_info Every inventoried site, with its inventory fields.",
        "# TYPE kipu_site_info gauge",
    ]
    last = [
        "# HELP kipu_site_last_push_timestamp_seconds When the site last pushed.",
        "# TYPE kipu_site_last_push_timestamp_seconds gauge",
    ]
    reporting = [
        "# HELP kipu_site_reporting Whether the site pushed within silent_after.",
        "# TYPE kipu_site_reporting gauge",
    ]
    contracted = [
        "# HELP kipu_site_contracted_bits_per_second The inventory's contracted speed "
        "(contracted_down_mbps, contracted_up_mbps), as a number rules can compare with.",
        "# TYPE kipu_site_contracted_bits_per_second gauge",
    ]
    for view in snap.sites:
        every, identity = _site_labels(view.site)
        info.append(f"kipu_site_info{every} 1.0")
        for direction, mbps in (
            ("download", view.site.contracted_down_mbps),
            ("upload", view.site.contracted_up_mbps),
        ):
            if mbps is not None:
                labels = identity[:-1] + f',direction="{direction}"}}'
                contracted.append(f"kipu_site_contracted_bits_per_second{labels} {mbps * 1e6!r}")
        if view.last_push is not None:
            last.append(f"kipu_site_last_push_timestamp_seconds{identity} {_float(view.last_push)}")
        up = "1.0" if view.state == "reporting" else "0.0"
        reporting.append(f"kipu_site_reporting{identity} {up}")
    return "\n".join([*info, *last, *reporting, *contracted]) + "\n"


ROLLUP_LABELS = ["project", "region", "province", "institution_type"]


def _rollup_families(rollups: tuple[Rollup, ...]) -> Iterator[Metric]:
    up = GaugeMetricFamily(
        "kipu_rollup_link_up_sites", "Reporting sites with the link up.", labels=ROLLUP_LABELS
    )
    down = GaugeMetricFamily(
        "kipu_rollup_link_down_sites", "Reporting sites with the link down.", labels=ROLLUP_LABELS
    )
    power = GaugeMetricFamily(
        "kipu_rollup_power_cut_sites",
        "Reporting sites whose offline seconds grew in the last hour (a power cut).",
        labels=ROLLUP_LABELS,
    )
    wifi = GaugeMetricFamily(
        "kipu_rollup_wifi_clients", "WiFi clients of the reporting sites.", labels=ROLLUP_LABELS
    )
    traffic = GaugeMetricFamily(
        "kipu_rollup_traffic_bits_per_second",
        "Traffic of the reporting sites (each site's busiest interface).",
        labels=[*ROLLUP_LABELS, "direction"],
    )
    rtt = GaugeMetricFamily(
        "kipu_rollup_rtt_seconds",
        "Quantiles of the reporting sites' mean RTT over the last 5 minutes.",
        labels=[*ROLLUP_LABELS, "role", "quantile"],
    )
    loss = GaugeMetricFamily(
        "kipu_rollup_loss_ratio",
        "Mean of the reporting sites' loss over the last 5 minutes.",
        labels=[*ROLLUP_LABELS, "role"],
    )
    for rollup in rollups:
        key = rollup.key
        labels = [key.project, key.region, key.province, key.institution_type]
        up.add_metric(labels, rollup.link_up_sites)
        down.add_metric(labels, rollup.link_down_sites)
        power.add_metric(labels, rollup.power_cut_sites)
        wifi.add_metric(labels, rollup.wifi_clients)
        for direction, bps in rollup.traffic_bps.items():
            traffic.add_metric([*labels, direction], bps)
        for role, quantiles in rollup.rtt_seconds.items():
            for q, seconds in quantiles.items():
                rtt.add_metric([*labels, role, q], seconds)
        for role, ratio in rollup.loss_ratio.items():
            loss.add_metric([*labels, role], ratio)
    yield from (up, down, power, wifi, traffic, rtt, loss)


def _ingest_families(snap: CollectorSnapshot) -> Iterator[Metric]:
    received = CounterMetricFamily(
        "kipu_collector_samples_received",
        "Samples accepted from sites.",
        labels=["project"],
    )
    for project, count in sorted(snap.samples_received.items()):
        received.add_metric([project], count)
    rejected = CounterMetricFamily(
        "kipu_collector_requests_rejected", "Pushes refused, by reason.", labels=["reason"]
    )
    for reason, count in sorted(snap.requests_rejected.items()):
        rejected.add_metric([reason], count)
    accepted = CounterMetricFamily(
        "kipu_collector_requests_accepted", "Pushes accepted (204).", value=snap.requests_accepted
    )
    yield from (received, rejected, accepted)
    yield _histogram(
        "kipu_collector_request_duration_seconds",
        "Time to answer a push, acknowledgement on disk included.",
        snap.request_duration,
    )
    yield GaugeMetricFamily(
        "kipu_collector_inventory_warnings",
        "Doubtful rows in the inventory (outside Peru, names unlike INEI's).",
        value=snap.inventory_warnings,
    )
    yield GaugeMetricFamily(
        "kipu_collector_loop_lag_seconds",
        "How late the event loop wakes up (smoothed); backlog waits while it is high.",
        value=snap.loop_lag,
    )
    yield GaugeMetricFamily(
        "kipu_collector_loop_load_ratio",
        "Share of the time the event loop's thread works (smoothed); backlog waits past 0.7.",
        value=snap.loop_load,
    )
    yield GaugeMetricFamily(
        "kipu_collector_active_series",
        "Distinct series sites sent in the last 7.5 to 15 minutes.",
        value=snap.active_series,
    )


def _forward_families(forward: ForwardSnapshot) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "kipu_collector_forward_queue_bytes",
        "Bytes waiting in the forward queue.",
        value=forward.queue_bytes,
    )
    yield GaugeMetricFamily(
        "kipu_collector_forward_queue_samples",
        "Samples waiting in the forward queue.",
        value=forward.queue_samples,
    )
    yield CounterMetricFamily(
        "kipu_collector_forward_dropped_samples",
        "Samples the queue dropped (never while it refuses new pushes first).",
        value=forward.dropped_samples,
    )
    yield CounterMetricFamily(
        "kipu_collector_forward_corrupt_records",
        "Damaged records of the queue skipped.",
        value=forward.corrupt_records,
    )
    requests = CounterMetricFamily(
        "kipu_collector_forward_requests",
        "Requests to the store by outcome.",
        labels=["result"],
    )
    for result, count in forward.requests.items():
        requests.add_metric([result], count)
    yield requests
    yield CounterMetricFamily(
        "kipu_collector_forward_rejected_samples",
        "Samples the store refused on their own (dropped).",
        value=forward.rejected_samples,
    )
    yield CounterMetricFamily(
        "kipu_collector_forward_undecodable_records",
        "Queued records that could not be read back (dropped).",
        value=forward.undecodable_records,
    )
    if forward.last_success is not None:
        yield GaugeMetricFamily(
            "kipu_collector_forward_last_success_timestamp_seconds",
            "When the store last accepted a request.",
            value=forward.last_success,
        )
    yield GaugeMetricFamily(
        "kipu_collector_forward_blocked",
        "Whether the store refuses the collector (401, 403, 404, 407).",
        value=int(forward.blocked),
    )
    yield GaugeMetricFamily(
        "kipu_collector_forward_failing",
        "Whether the last request to the store failed.",
        value=int(forward.failing),
    )
    yield CounterMetricFamily(
        "kipu_collector_forward_syncs",
        "fdatasync rounds of the queue (group commit).",
        value=forward.syncs,
    )
    yield CounterMetricFamily(
        "kipu_collector_forward_commits",
        "Pushes made durable; commits / syncs is how many shared an fdatasync.",
        value=forward.commits,
    )
    refused = CounterMetricFamily(
        "kipu_collector_forward_refused",
        "Pushes the queue could not take (503).",
        labels=["reason"],
    )
    refused.add_metric(["full"], forward.refused_full)
    refused.add_metric(["disk"], forward.refused_disk)
    yield refused


def _histogram(name: str, help_text: str, histogram: Histogram) -> Metric:
    family = HistogramMetricFamily(name, help_text)
    cumulative, buckets = 0, []
    for bound, count in zip((*histogram.bounds, float("inf")), histogram.counts, strict=True):
        cumulative += count
        buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
    family.add_metric([], buckets, histogram.total)
    return family


class SpeedTestMetrics:
    """The bytes the speed-test endpoints served, in all and per site."""

    def __init__(self, snapshot: SpeedTestSnapshot) -> None:
        self.snapshot = snapshot

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        total = CounterMetricFamily(
            "kipu_collector_speedtest_bytes",
            "Bytes served by the speed-test endpoints, by direction.",
            labels=["direction"],
        )
        per_site = CounterMetricFamily(
            "kipu_collector_speedtest_site_bytes",
            "Bytes served by the speed-test endpoints, by site and direction.",
            labels=["site_id", "direction"],
        )
        sums: Counter[str] = Counter(dict.fromkeys(SPEEDTEST_DIRECTIONS, 0))
        for (site_id, direction), count in sorted(self.snapshot.bytes_by_site.items()):
            sums[direction] += count
            per_site.add_metric([site_id, direction], count)
        for direction, count in sorted(sums.items()):
            total.add_metric([direction], count)
        yield from (total, per_site)


def render(
    snapshot: CollectorSnapshot,
    accept: str | None,
    speedtest: SpeedTestSnapshot | None = None,
) -> tuple[bytes, str]:
    """Encode a snapshot (and the process's own figures) as Prometheus text or
    OpenMetrics, by the Accept header."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(CollectorMetrics(lambda: snapshot))
    if speedtest is not None:
        registry.register(SpeedTestMetrics(speedtest))
    ProcessCollector(registry=registry)
    encoder, content_type = choose_encoder(accept or "")
    body = encoder(registry)
    sites = site_lines(snapshot).encode()
    if body.endswith(OPENMETRICS_END):  # the per-site families go before its end mark
        return body[: -len(OPENMETRICS_END)] + sites + OPENMETRICS_END, content_type
    return body + sites, content_type


OPENMETRICS_END = b"# EOF\n"
