"""Live rollups per project, region, province and institution type. Pure.

From every inventoried site's state and latest values (`collector.memory`):

- sites per state (`reporting`, `silent`, `never_seen`, every state present);
- among reporting sites: sites with the link up and down (a site whose link state is
  not known yet counts in neither), sites with a suspected power cut, WiFi clients
  (sum), traffic per direction (sum of each site's busiest interface);
- latency per role across sites: the median and the 90th percentile of the sites'
  recent mean RTT (linear interpolation between closest ranks, as numpy's default);
- loss per role: the mean of the sites' recent loss ratios.

A silent site's last values are not current: it counts only in the site states.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from collector.liveness import STATES
from collector.snapshots import DIRECTIONS, QUANTILES, Rollup, RollupKey, SiteView


def quantile(values: list[float], q: float) -> float:
    """The `q` quantile of `values` (not empty), interpolating linearly between ranks."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def rollups(views: Iterable[SiteView]) -> tuple[Rollup, ...]:
    """One rollup per (project, region, province, institution type), sorted by key."""
    groups: dict[RollupKey, list[SiteView]] = defaultdict(list)
    for view in views:
        site = view.site
        key = RollupKey(site.project, site.region, site.province, site.institution_type)
        groups[key].append(view)
    return tuple(_rollup(key, groups[key]) for key in sorted(groups, key=_order))


def _order(key: RollupKey) -> tuple[str, str, str, str]:
    return (key.project, key.region, key.province, key.institution_type)


def _rollup(key: RollupKey, views: list[SiteView]) -> Rollup:
    states: dict[str, int] = dict.fromkeys(STATES, 0)
    up = down = power_cut = wifi = 0
    traffic = dict.fromkeys(DIRECTIONS, 0.0)
    rtt: dict[str, list[float]] = defaultdict(list)
    loss: dict[str, list[float]] = defaultdict(list)
    for view in views:
        states[view.state] += 1
        if view.state != "reporting":
            continue
        latest = view.latest
        if latest.link_up is True:
            up += 1
        elif latest.link_up is False:
            down += 1
        power_cut += latest.power_cut
        wifi += latest.wifi_clients or 0
        for direction, bps in latest.traffic_bps.items():
            traffic[direction] = traffic.get(direction, 0.0) + bps
        for role, seconds in latest.rtt_seconds.items():
            rtt[role].append(seconds)
        for role, ratio in latest.loss_ratio.items():
            loss[role].append(ratio)
    return Rollup(
        key=key,
        sites=states,
        link_up_sites=up,
        link_down_sites=down,
        power_cut_sites=power_cut,
        wifi_clients=wifi,
        traffic_bps=traffic,
        rtt_seconds={
            role: {q: quantile(values, float(q)) for q in QUANTILES}
            for role, values in sorted(rtt.items())
        },
        loss_ratio={role: sum(values) / len(values) for role, values in sorted(loss.items())},
    )
