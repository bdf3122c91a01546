"""What the collector remembers of each site without a time-series database.

From the series a site pushes, the collector keeps (`SiteMemory`):

- **the latest values**: link up or down, a suspected power cut, each role's mean RTT
  and loss over the last five minutes, WiFi clients, and the traffic of its busiest
  interface. They are updated only by samples newer than those already seen, so a
  backlog arriving late never overwrites the present.
- **a short memory**: 24 hours in 5-minute steps (288 steps) of the mean RTT, the loss,
  the share of observations with the link up, and the mean WiFi clients. Late samples
  (a backlog) fill the steps they belong to. About 8 KB per site that pushed (10,000
  sites: 80 MB), nothing for sites that never did.

Pure: the caller gives the samples and the time; no clock, no I/O.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from array import array
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from collector.snapshots import History, Latest
from kipu.remote_write.codec import Series, is_stale_marker, sample_values

WATCHED = frozenset(
    {
        "kipu_link_up",
        "kipu_agent_offline_seconds_total",
        "kipu_probe_rtt_seconds_sum",
        "kipu_probe_rtt_seconds_count",
        "kipu_probe_packets_sent_total",
        "kipu_probe_packets_received_total",
        "kipu_wifi_clients",
        "kipu_interface_receive_bytes_total",
        "kipu_interface_transmit_bytes_total",
    }
)
"""The metrics whose series the collector reads (`Ingest.watched`)."""

WINDOW = 300.0  # seconds over which RTT and loss are averaged
POWER_CUT_MEMORY = 3600.0  # a power cut stays suspected this long after it shows
STEP = 300.0
STEPS = 288  # 24 h

_ROLE_COUNTERS = (
    "kipu_probe_rtt_seconds_sum",
    "kipu_probe_rtt_seconds_count",
    "kipu_probe_packets_sent_total",
    "kipu_probe_packets_received_total",
)
_TRAFFIC = {
    "kipu_interface_receive_bytes_total": "receive",
    "kipu_interface_transmit_bytes_total": "transmit",
}


# A role's probe counters, summed over its targets, at one time: (at, rtt_sum,
# rtt_count, sent, received). A plain tuple of floats: the garbage collector stops
# tracking it, where ten thousand sites of objects would slow every full collection.
_Point = tuple[float, float, float, float, float]
_AT, _RTT_SUM, _RTT_COUNT, _SENT, _RECEIVED = range(5)


class _Steps:
    """The 24-hour ring of 5-minute steps: sums and counts per step."""

    __slots__ = (
        "loss_lost",
        "loss_sent",
        "rtt_count",
        "rtt_sum",
        "slot",
        "up",
        "up_n",
        "wifi",
        "wifi_n",
    )

    def __init__(self) -> None:
        zeros = [0.0] * STEPS
        self.slot = array("l", [-1] * STEPS)  # which 5-minute step each cell holds
        self.rtt_sum = array("f", zeros)
        self.rtt_count = array("f", zeros)
        self.loss_lost = array("f", zeros)
        self.loss_sent = array("f", zeros)
        self.up = array("f", zeros)
        self.up_n = array("f", zeros)
        self.wifi = array("f", zeros)
        self.wifi_n = array("f", zeros)

    def cell(self, at: float) -> int:
        number = int(at // STEP)
        index = number % STEPS
        if self.slot[index] != number:  # a step of the day before: start it afresh
            self.slot[index] = number
            for column in (
                self.rtt_sum,
                self.rtt_count,
                self.loss_lost,
                self.loss_sent,
                self.up,
                self.up_n,
                self.wifi,
                self.wifi_n,
            ):
                column[index] = 0.0
        return index


@dataclass
class _Site:
    latest: dict[Series, tuple[int, float]] = field(default_factory=dict)  # ms, value
    previous: dict[Series, tuple[int, float]] = field(default_factory=dict)
    roles: dict[str, deque[_Point]] = field(default_factory=dict)
    power_cut_at: float | None = None
    updated: float | None = None
    steps: _Steps | None = None
    # The newest sample of each probe counter the steps have taken (ms, value), by
    # (metric, target, role).
    counted: dict[tuple[str, str, str], tuple[int, float]] = field(default_factory=dict)
    cached: Latest | None = None  # `latest` as of the last push (power cut aside)


class SiteMemory:
    """Latest values and short memory of every site (see the module docstring)."""

    def __init__(self) -> None:
        self._sites: dict[str, _Site] = {}

    def observe(self, site_id: str, series: Iterable[tuple[Series, bytes]], now: float) -> None:
        """Take the watched series of one accepted push (labels and sample runs)."""
        state = self._sites.setdefault(site_id, _Site())
        state.cached = None
        changed_roles: set[str] = set()
        newest = 0
        for labels, run in series:
            found = dict(labels)
            name = found.get("__name__", "")
            samples = sample_values(run)
            self._into_steps(state, name, found, samples)
            stamp, value = max(samples)
            if math.isnan(value) and not is_stale_marker(value):
                continue
            known = state.latest.get(labels)
            if known is not None and stamp <= known[0]:
                continue  # a backlog sample: the present is already known
            if known is not None:
                state.previous[labels] = known
            state.latest[labels] = (stamp, value)
            newest = max(newest, stamp)
            if name in _ROLE_COUNTERS:
                changed_roles.add(found.get("role", "other"))
            offline = name == "kipu_agent_offline_seconds_total"
            if offline and known is not None and value > known[1]:
                state.power_cut_at = stamp / 1000
        for role in changed_roles:
            self._role_point(state, role, newest / 1000)
        if newest:
            state.updated = max(state.updated or 0.0, newest / 1000)
        # Now rather than at the next scrape: a scrape reads 10,000 sites at once, on the
        # event loop, while pushes spread the same work over the interval.
        state.cached = self._latest(state)

    def forget(self, keep: set[str]) -> None:
        for site_id in [s for s in self._sites if s not in keep]:
            del self._sites[site_id]

    def latest(self, site_id: str, now: float) -> Latest:
        state = self._sites.get(site_id)
        if state is None:
            return Latest()
        if state.cached is None:
            state.cached = self._latest(state)
        power_cut = state.power_cut_at is not None and now - state.power_cut_at <= POWER_CUT_MEMORY
        if power_cut == state.cached.power_cut:
            return state.cached
        return dataclasses.replace(state.cached, power_cut=power_cut)

    def _latest(self, state: _Site) -> Latest:
        link_up = wifi = None
        traffic: dict[str, float] = {}
        for labels, (stamp, value) in state.latest.items():
            name = labels_name(labels)
            if is_stale_marker(value):
                continue
            if name == "kipu_link_up":
                link_up = value >= 1
            elif name == "kipu_wifi_clients":
                wifi = (wifi or 0) + int(value)
            elif name in _TRAFFIC:
                before = state.previous.get(labels)
                if before is not None and stamp > before[0] and value >= before[1]:
                    bps = (value - before[1]) * 8 / ((stamp - before[0]) / 1000)
                    direction = _TRAFFIC[name]
                    traffic[direction] = max(traffic.get(direction, 0.0), bps)
        rtt: dict[str, float] = {}
        loss: dict[str, float] = {}
        for role, points in state.roles.items():
            if len(points) < 2:
                continue
            first, last = points[0], points[-1]
            counted = last[_RTT_COUNT] - first[_RTT_COUNT]
            if counted > 0:
                rtt[role] = (last[_RTT_SUM] - first[_RTT_SUM]) / counted
            sent = last[_SENT] - first[_SENT]
            if sent > 0:
                lost = sent - (last[_RECEIVED] - first[_RECEIVED])
                loss[role] = min(1.0, max(0.0, lost / sent))
        return Latest(link_up, False, rtt, loss, wifi, traffic, state.updated)

    def history(self, site_id: str, now: float) -> History | None:
        state = self._sites.get(site_id)
        if state is None or state.steps is None:
            return None
        steps = state.steps
        last = int(now // STEP)
        rtt: list[float | None] = []
        loss: list[float | None] = []
        up: list[float | None] = []
        wifi: list[float | None] = []
        for number in range(last - STEPS + 1, last + 1):
            index = number % STEPS
            if steps.slot[index] != number:
                rtt.append(None)
                loss.append(None)
                up.append(None)
                wifi.append(None)
                continue
            rtt.append(_ratio(steps.rtt_sum[index], steps.rtt_count[index]))
            loss.append(_ratio(steps.loss_lost[index], steps.loss_sent[index]))
            up.append(_ratio(steps.up[index], steps.up_n[index]))
            wifi.append(_ratio(steps.wifi[index], steps.wifi_n[index]))
        return History(STEP, (last + 1) * STEP, tuple(rtt), tuple(loss), tuple(up), tuple(wifi))

    # -- inside

    def _role_point(self, state: _Site, role: str, at: float) -> None:
        totals = dict.fromkeys(_ROLE_COUNTERS, 0.0)
        for labels, (_, value) in state.latest.items():
            found = dict(labels)
            name = found.get("__name__", "")
            if name in totals and found.get("role", "other") == role and not math.isnan(value):
                totals[name] += value
        point: _Point = (at, *(totals[name] for name in _ROLE_COUNTERS))  # type: ignore[assignment]
        points = state.roles.setdefault(role, deque())
        if points and (
            point[_RTT_COUNT] < points[-1][_RTT_COUNT] or point[_SENT] < points[-1][_SENT]
        ):
            points.clear()  # the agent restarted: its counters began again
        if points and at <= points[-1][_AT]:
            return
        points.append(point)
        while len(points) > 2 and points[1][_AT] <= at - WINDOW:
            points.popleft()

    def _into_steps(
        self, state: _Site, name: str, labels: dict[str, str], samples: list[tuple[int, float]]
    ) -> None:
        if name not in ("kipu_link_up", "kipu_wifi_clients", *_ROLE_COUNTERS):
            return
        if state.steps is None:
            state.steps = _Steps()
        steps = state.steps
        if name == "kipu_link_up":
            for stamp, value in samples:
                if not math.isnan(value):
                    index = steps.cell(stamp / 1000)
                    steps.up[index] += 1.0 if value >= 1 else 0.0
                    steps.up_n[index] += 1
        elif name == "kipu_wifi_clients":
            for stamp, value in samples:
                if not math.isnan(value):
                    index = steps.cell(stamp / 1000)
                    steps.wifi[index] += value
                    steps.wifi_n[index] += 1
        else:
            self._counter_into_steps(state, steps, name, labels, samples)

    def _counter_into_steps(
        self,
        state: _Site,
        steps: _Steps,
        name: str,
        labels: dict[str, str],
        samples: list[tuple[int, float]],
    ) -> None:
        """Each increase of a probe counter goes to the step of the sample showing it.

        A batch continuing the newest sample seen is chained to it; an older batch (a
        backlog) counts the increases within itself, which land in its own steps.
        """
        key = (name, labels.get("target", ""), labels.get("role", "other"))
        points = sorted(p for p in samples if not math.isnan(p[1]))
        if not points:
            return
        last = state.counted.get(key)
        if last is not None and last[0] < points[0][0]:
            points.insert(0, last)
        for (before, old), (stamp, value) in itertools.pairwise(points):
            if stamp <= before or value < old:
                continue  # the same instant, or the agent restarted
            index = steps.cell(stamp / 1000)
            delta = value - old
            if name == "kipu_probe_rtt_seconds_sum":
                steps.rtt_sum[index] += delta
            elif name == "kipu_probe_rtt_seconds_count":
                steps.rtt_count[index] += delta
            elif name == "kipu_probe_packets_sent_total":
                steps.loss_sent[index] += delta
                steps.loss_lost[index] += delta
            else:  # received: what was sent and not received is lost
                steps.loss_lost[index] -= delta
        if last is None or points[-1][0] > last[0]:
            state.counted[key] = points[-1]


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole > 0 else None


def labels_name(series: Series) -> str:
    for name, value in series:
        if name == "__name__":
            return value
    return ""
