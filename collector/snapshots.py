"""Frozen snapshots of the collector's state, which `collector.metrics` renders."""

from __future__ import annotations

from dataclasses import dataclass

from collector.inventory import Site
from collector.liveness import SiteState


@dataclass(frozen=True)
class SiteView:
    site: Site
    state: SiteState
    last_push: float | None


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
