"""Frozen snapshots of the collector's state, which `collector.metrics` renders."""

from __future__ import annotations

from dataclasses import dataclass, field

from collector.inventory import Site
from collector.liveness import SiteState

DIRECTIONS = ("receive", "transmit")
QUANTILES = ("0.5", "0.9")


@dataclass(frozen=True)
class Latest:
    """A site's latest values, from its pushes; None or empty: not known."""

    link_up: bool | None = None
    power_cut: bool = False
    """Its offline seconds grew since its previous push: it was off (a power cut)."""
    rtt_seconds: dict[str, float] = field(default_factory=dict)
    """Per target role: the mean RTT over the last minutes."""
    loss_ratio: dict[str, float] = field(default_factory=dict)
    """Per target role: lost probes over sent, over the last minutes."""
    wifi_clients: int | None = None
    """WiFi clients now, every access point and SSID of the site."""
    traffic_bps: dict[str, float] = field(default_factory=dict)
    """Per direction (receive, transmit): bits per second of its busiest interface."""
    updated: float | None = None
    """When these values were last updated (Unix time)."""


@dataclass(frozen=True)
class History:
    """A site's short memory: `points` steps of `step` seconds ending at `end`, oldest
    first; None where there was no data."""

    step: float
    end: float
    rtt_seconds: tuple[float | None, ...]
    """The mean RTT of the step, every role together."""
    loss_ratio: tuple[float | None, ...]
    link_up: tuple[float | None, ...]
    """The share of the step's observations with the link up (0 to 1)."""
    wifi_clients: tuple[float | None, ...]
    """The mean of the step's WiFi client counts."""

    @property
    def points(self) -> int:
        return len(self.rtt_seconds)


@dataclass(frozen=True)
class SiteView:
    site: Site
    state: SiteState
    last_push: float | None
    latest: Latest = field(default_factory=Latest)


@dataclass(frozen=True)
class RollupKey:
    project: str
    region: str
    province: str
    institution_type: str


@dataclass(frozen=True)
class Rollup:
    """Sites of one project, region, province and institution type, summed up."""

    key: RollupKey
    sites: dict[str, int]
    """Per state (reporting, silent, never_seen), every state present."""
    link_up_sites: int
    link_down_sites: int
    power_cut_sites: int
    wifi_clients: int
    traffic_bps: dict[str, float]
    """Per direction: the sum over the sites."""
    rtt_seconds: dict[str, dict[str, float]]
    """Per role, per quantile (0.5, 0.9): over the sites' recent mean RTTs."""
    loss_ratio: dict[str, float]
    """Per role: the mean over the sites."""


@dataclass(frozen=True)
class Histogram:
    """Counts per bucket (not cumulative; the last is +Inf), their sum and bounds."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    total: float


@dataclass(frozen=True)
class ForwardSnapshot:
    queue_bytes: int
    queue_samples: int
    dropped_samples: int
    corrupt_records: int
    requests: dict[str, int]
    rejected_samples: int
    undecodable_records: int
    last_success: float | None
    blocked: bool
    failing: bool
    syncs: int
    commits: int
    refused_full: int
    refused_disk: int


@dataclass(frozen=True)
class CollectorSnapshot:
    version: str
    sites: tuple[SiteView, ...]
    samples_received: dict[str, int]  # by project
    requests_rejected: dict[str, int]  # by reason
    requests_accepted: int
    request_duration: Histogram
    forward: ForwardSnapshot | None
    inventory_warnings: int
    active_series: int
    loop_lag: float
    loop_load: float
