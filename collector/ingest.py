"""What a push becomes: identity bound to the token, the site's limits. Pure.

A push has been authenticated (its token names a site) and decoded when it gets here.
`Ingest.admit` rewrites its identity labels and judges it against the site's limits:

- **Identity.** The collector never trusts identity labels in a push: `site_id`,
  `project` and `region` sent by the client are dropped and replaced by the ones bound
  to the token through the inventory, so a site can never write as another site.
- **Series limit.** A site may send at most `max_series_per_site` distinct series in a
  sliding window of about 15 minutes (two generations of 7.5 minutes). A push that
  would go beyond it is refused (429) as a whole.
- **The byte level.** Only label runs are decoded, once per distinct run a site sends
  (the agent sends the same hundred every interval): each site keeps the runs it sent
  in the series window, with the relabelled run to send instead. Samples travel as the
  client encoded them; their timestamps are read for the limits. A request of an
  unusual layout is decoded the general way first, with the same result.
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

import bisect
import math
from collections import OrderedDict
from dataclasses import dataclass, field

from collector.config import Limits
from collector.inventory import Site
from kipu.remote_write.codec import (
    Series,
    encode_labels,
    encode_samples,
    label_entry,
    parse_labels,
    parse_request,
    sample_timestamps,
    split_request,
    strip_labels,
    timeseries_entry,
)

IDENTITY_LABELS = frozenset({"site_id", "project", "region"})
IDENTITY_NAMES = frozenset(name.encode() for name in IDENTITY_LABELS)
SHAPES = 1 << 16  # label sets (identity aside) remembered across sites
SERIES_GENERATION = 450.0  # seconds: the series window is two generations
BURST_SECONDS = 5.0  # the backlog bucket holds this many seconds of samples


@dataclass(frozen=True)
class Admitted:
    raw: bytes  # the relabelled request, uncompressed
    # The series of the metrics the caller asked to see (`Ingest.watched`): relabelled
    # labels and their sample runs.
    watched: tuple[tuple[Series, bytes], ...]
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


# A label run a site sent, relabelled: (the run to send, its labels). The labels are
# kept only for watched metrics: a site's hundred series, kept whole, would cost
# kilobytes each. Plain tuples of bytes and strings, because the garbage collector
# stops tracking those (and the dicts holding only them): a million series of objects
# it tracks would make every full collection a pause of a second.
_Known = tuple[bytes, Series | None]


@dataclass
class _SiteLimits:
    level: float  # samples the bucket holds; negative: debt
    updated: float  # seconds
    generation_started: float
    # Label runs seen in this generation and the one before (disjoint: one seen again
    # moves to the current generation).
    current: dict[bytes, _Known] = field(default_factory=dict)
    previous: dict[bytes, _Known] = field(default_factory=dict)

    @property
    def active(self) -> int:
        return len(self.current) + len(self.previous)


@dataclass(frozen=True)
class _Shape:
    """A label set without identity labels, checked: its canonical run (sorted), where
    project, region and site_id go in it (byte offsets), its labels and metric name."""

    canonical: bytes
    cuts: tuple[int, int, int]
    series: Series
    name: str

    @classmethod
    def of(cls, series: Series) -> _Shape:
        kept = tuple(pair for pair in series if pair[0] not in IDENTITY_LABELS)
        names = [name for name, _ in kept]
        cuts = []
        for identity in ("project", "region", "site_id"):
            before = kept[: bisect.bisect_left(names, identity)]
            cuts.append(len(encode_labels(before)))
        name = dict(kept).get("__name__", "")
        return cls(encode_labels(kept), (cuts[0], cuts[1], cuts[2]), kept, name)


class _Anonymous:
    """The shapes seen lately, across all sites (least recently used dropped first)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._shapes: OrderedDict[bytes, _Shape] = OrderedDict()

    def get(self, run: bytes) -> _Shape | None:
        shape = self._shapes.get(run)
        if shape is not None:
            self._shapes.move_to_end(run)
        return shape

    def put(self, run: bytes, shape: _Shape) -> None:
        self._shapes[run] = shape
        if len(self._shapes) > self.size:
            self._shapes.popitem(last=False)


def relabel(series: Series, site: Site) -> Series:
    """The series with the site's identity in place of whatever the client sent."""
    identity = (("project", site.project), ("region", site.region), ("site_id", site.site_id))
    kept = [pair for pair in series if pair[0] not in IDENTITY_LABELS]
    return tuple(sorted(kept + list(identity)))


class Ingest:
    """The per-site limits (see the module docstring)."""

    def __init__(self, limits: Limits, watched: frozenset[str] = frozenset()) -> None:
        self.limits = limits
        self.watched = watched  # metric names whose series `admit` hands back
        self._sites: dict[str, _SiteLimits] = {}
        self._shapes: _Anonymous = _Anonymous(SHAPES)

    def admit(self, site: Site, raw: bytes, now: float) -> Admitted | Refused:
        """Relabel an uncompressed push and judge it; `now` in seconds (Unix time).

        Raises `kipu.remote_write.codec.RemoteWriteDecodeError` for a push that does not
        decode.
        """
        limits = self.limits
        state = self._state(site.site_id, now)
        parts = split_request(raw)
        if parts is None:  # an unusual layout: decode it all, then go the same way
            parts = [(encode_labels(s), encode_samples(v)) for s, v in parse_request(raw).items()]
        resolved: list[tuple[_Known, bytes]] = []
        seen: dict[bytes, _Known] = {}
        for labels_run, samples_run in parts:
            if not samples_run:
                continue
            known = seen.get(labels_run) or state.current.get(labels_run)
            if known is None:
                known = state.previous.get(labels_run)
                if known is None:
                    known = self._relabel(labels_run, site)
            seen[labels_run] = known
            resolved.append((known, samples_run))
        new = sum(1 for run in seen if run not in state.current and run not in state.previous)
        if state.active + new > limits.max_series_per_site:
            return Refused(
                429,
                "series_limit",
                f"site has {state.active} series and this push adds {new}: the limit is "
                f"{limits.max_series_per_site} series per site",
                2 * SERIES_GENERATION,
            )
        live_from = int((now - limits.live_window) * 1000)
        total = backlog = 0
        first = last = None
        for _, samples_run in resolved:
            stamps = sample_timestamps(samples_run)
            if not stamps:
                continue
            low, high = min(stamps), max(stamps)
            total += len(stamps)
            if low < live_from:
                backlog += sum(1 for stamp in stamps if stamp < live_from)
            first = low if first is None or low < first else first
            last = high if last is None or high > last else last
        if backlog:
            refused = self._pace(state, backlog, now)
            if refused is not None:
                return refused
        for run, known in seen.items():
            state.previous.pop(run, None)
            state.current[run] = known
        raw_out = b"".join(timeseries_entry(known[0], samples) for known, samples in resolved)
        return Admitted(
            raw_out,
            tuple((known[1], samples) for known, samples in resolved if known[1] is not None),
            total,
            backlog,
            first or 0,
            last or 0,
        )

    def _relabel(self, run: bytes, site: Site) -> _Known:
        """The relabelled run of a label run this site did not send lately.

        Every site sends the same series but for its own identity labels: with those
        cut out, the rest is decoded and checked once for all sites (`_Anonymous`), and
        each site's run is put together from it at the byte level.
        """
        anonymous = strip_labels(run, IDENTITY_NAMES)
        if anonymous is None:  # an unusual layout: the general way
            series = relabel(parse_labels(run), site)
            return encode_labels(series), self._watched(series)
        shape = self._shapes.get(anonymous)
        if shape is None:
            shape = _Shape.of(parse_labels(anonymous))
            self._shapes.put(anonymous, shape)
        identity = (
            label_entry("project", site.project),
            label_entry("region", site.region),
            label_entry("site_id", site.site_id),
        )
        canonical, cuts = shape.canonical, shape.cuts
        pieces = [canonical[: cuts[0]], identity[0]]
        pieces += [canonical[cuts[0] : cuts[1]], identity[1]]
        pieces += [canonical[cuts[1] : cuts[2]], identity[2], canonical[cuts[2] :]]
        watched = None
        if shape.name in self.watched:
            watched = relabel(shape.series, site)
        return b"".join(pieces), watched

    def _watched(self, series: Series) -> Series | None:
        return series if dict(series).get("__name__") in self.watched else None

    def forget(self, keep: set[str]) -> None:
        """Drop the limits of sites no longer in the inventory."""
        for site_id in [s for s in self._sites if s not in keep]:
            del self._sites[site_id]

    def active_series(self, site_id: str) -> int:
        state = self._sites.get(site_id)
        return 0 if state is None else state.active

    def _state(self, site_id: str, now: float) -> _SiteLimits:
        state = self._sites.get(site_id)
        if state is None:
            capacity = self.limits.max_samples_per_second_per_site * BURST_SECONDS
            state = _SiteLimits(capacity, now, now)
            self._sites[site_id] = state
        elapsed = now - state.generation_started
        if elapsed >= 2 * SERIES_GENERATION:
            state.previous, state.current = {}, {}
            state.generation_started = now
        elif elapsed >= SERIES_GENERATION:
            state.previous, state.current = state.current, {}
            state.generation_started = now
        return state

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
