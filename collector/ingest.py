"""What a push becomes: identity bound to the token, the site's limits. Pure.

A push has been authenticated (its token names a site) and decoded when it gets here.
`Ingest.admit` rewrites its identity labels and judges it against the site's limits:

- **Identity.** The collector never trusts identity labels in a push: `site_id`,
  `project` and `region` sent by the client are dropped and replaced by the ones bound
  to the token through the inventory, so a site can never write as another site.
- **Series limit.** A site may send at most `max_series_per_site` distinct series in a
  sliding window of about 15 minutes (two generations of 7.5 minutes). A push that
  would go beyond it is refused (429) as a whole.
- **Live before backlog.** Samples newer than `live_window` (5 minutes by default) are
  live: they are never paced, only the series limit applies, so a site's current
  state reaches the NOC even while its backlog is being paced. Older samples are
  backlog: they spend from a per-site bucket refilled at
  `max_samples_per_second_per_site`. A push holding backlog while the bucket is in
  debt is refused (429, Retry-After: the seconds until the debt is paid); a push
  admitted may drive the bucket into debt, so a site's large backlog batches pass one
  after another at the configured average rate, whatever their size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from collector.config import Limits
from collector.inventory import Site
from kipu.remote_write.codec import Sample, Series

IDENTITY_LABELS = frozenset({"site_id", "project", "region"})
SERIES_GENERATION = 450.0  # seconds: the series window is two generations
BURST_SECONDS = 5.0  # the backlog bucket holds this many seconds of samples


@dataclass(frozen=True)
class Admitted:
    series: dict[Series, list[Sample]]  # relabelled
    samples: int
    backlog_samples: int
    first_ms: int
    last_ms: int


@dataclass(frozen=True)
class Refused:
    status: int
    reason: str  # kipu_collector_requests_rejected_total's label
    message: str
    retry_after: float | None = None


@dataclass
class _SiteLimits:
    level: float  # samples the bucket holds; negative: debt
    updated: float  # seconds
    current: set[int] = field(default_factory=set)  # series hashes of this generation
    previous: set[int] = field(default_factory=set)
    generation_started: float = 0.0


def relabel(series: Series, site: Site) -> Series:
    """The series with the site's identity in place of whatever the client sent."""
    identity = (("project", site.project), ("region", site.region), ("site_id", site.site_id))
    kept = [pair for pair in series if pair[0] not in IDENTITY_LABELS]
    return tuple(sorted(kept + list(identity)))


class Ingest:
    """The per-site limits (see the module docstring)."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._sites: dict[str, _SiteLimits] = {}

    def admit(
        self, site: Site, decoded: dict[Series, list[Sample]], now: float
    ) -> Admitted | Refused:
        """Relabel a decoded push and judge it; `now` in seconds (Unix time)."""
        limits = self.limits
        state = self._sites.get(site.site_id)
        if state is None:
            state = _SiteLimits(limits.max_samples_per_second_per_site * BURST_SECONDS, now)
            state.generation_started = now
            self._sites[site.site_id] = state
        relabelled: dict[Series, list[Sample]] = {}
        for labels, samples in decoded.items():
            relabelled.setdefault(relabel(labels, site), []).extend(samples)
        refused = self._check_series(state, relabelled, now)
        if refused is not None:
            return refused
        live_from = int((now - limits.live_window) * 1000)
        total = backlog = 0
        first = last = None
        for samples in relabelled.values():
            for stamp, _ in samples:
                total += 1
                if stamp < live_from:
                    backlog += 1
                first = stamp if first is None or stamp < first else first
                last = stamp if last is None or stamp > last else last
        if backlog:
            refused = self._pace(state, backlog, now)
            if refused is not None:
                return refused
        self._remember_series(state, relabelled)
        return Admitted(relabelled, total, backlog, first or 0, last or 0)

    def forget(self, keep: set[str]) -> None:
        """Drop the limits of sites no longer in the inventory."""
        for site_id in [s for s in self._sites if s not in keep]:
            del self._sites[site_id]

    def active_series(self, site_id: str) -> int:
        state = self._sites.get(site_id)
        return 0 if state is None else len(state.current | state.previous)

    def _check_series(
        self, state: _SiteLimits, series: dict[Series, list[Sample]], now: float
    ) -> Refused | None:
        elapsed = now - state.generation_started
        if elapsed >= 2 * SERIES_GENERATION:
            state.previous, state.current = set(), set()
            state.generation_started = now
        elif elapsed >= SERIES_GENERATION:
            state.previous, state.current = state.current, set()
            state.generation_started = now
        known = state.current | state.previous if state.previous else state.current
        new = sum(1 for s in series if hash(s) not in known)
        if len(known) + new <= self.limits.max_series_per_site:
            return None
        return Refused(
            429,
            "series_limit",
            f"site has {len(known)} series and this push adds {new}: the limit is "
            f"{self.limits.max_series_per_site} series per site",
            2 * SERIES_GENERATION,
        )

    def _remember_series(self, state: _SiteLimits, series: dict[Series, list[Sample]]) -> None:
        state.current.update(hash(s) for s in series)

    def _pace(self, state: _SiteLimits, backlog: int, now: float) -> Refused | None:
        rate = self.limits.max_samples_per_second_per_site
        capacity = rate * BURST_SECONDS
        state.level = min(capacity, state.level + rate * max(0.0, now - state.updated))
        state.updated = now
        if state.level < 0:
            wait = math.ceil(-state.level / rate)
            return Refused(
                429,
                "rate_limit",
                f"backlog over {rate:g} samples/s for this site: send it again in {wait} s "
                "(live samples are not paced)",
                float(wait),
            )
        state.level -= backlog
        return None
