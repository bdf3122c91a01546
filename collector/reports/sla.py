"""The monthly SLA report: each institution's availability with the contract's exclusions.

Pure: points of the ledger, the month's bounds, the windows and the rules come in; rows
come out. The accounting, per site, over its period P (the calendar month in the
collector's time zone, from `in_service_since` when that falls inside it):

- Consecutive link points p, q of the ledger cover the time between them. The growth
  of each counter from p to q (a value lower than the one before is a counter reset:
  the growth is the new value, as Prometheus' `increase`) is spread evenly over
  [p, q]: up, down and power-off (`kipu_agent_offline_seconds_total`) time. What the
  three leave of the gap is **unknown**; if they add up to more than the gap (clocks),
  they are scaled down to it.
- Time of P inside a maintenance window is **maintenance**, whatever it was; the other
  columns count time outside the windows. Time of P no pair of points covers (before
  the first point, after the last) is unknown too: never silently up.
- period = up + down + power_off + maintenance + unknown, and
  availability = 100 * up / (period - maintenance - excluded), where excluded is the
  power-off time when `exclude_power_cuts` holds plus the unknown time when
  `unknown_as: excluded`. Nothing left to measure: no availability, no verdict.
- Outages: the growth of `kipu_link_outages_total` between p and q, counted in the
  month holding q, unless [p, q] lies wholly inside maintenance.
"""

from __future__ import annotations

import csv
import datetime
import io
import math
import zoneinfo
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from collector.config import MaintenanceWindow, Sla, SlaRule
from collector.inventory import Site
from collector.ledger import (
    DOWN,
    HOUR,
    LINK_AT,
    OFFLINE,
    OUTAGES,
    UP,
    Point,
)

COLUMNS = (
    "site_id",
    "site_name",
    "project",
    "region",
    "province",
    "district",
    "ubigeo",
    "institution_type",
    "institution_code",
    "access_tech",
    "period_hours",
    "up_hours",
    "down_hours",
    "power_off_hours",
    "maintenance_hours",
    "unknown_hours",
    "availability_percent",
    "outages",
    "target_percent",
    "meets_target",
)
FORMULA = "availability_percent = 100 * up / (period - maintenance - excluded)"

Interval = tuple[float, float]


@dataclass(frozen=True)
class Outage:
    """Down time in one run of consecutive point pairs (as fine as the hourly points)."""

    start: float
    end: float
    down: float  # seconds


@dataclass(frozen=True)
class Figures:
    """A site's accounting over its period, in seconds."""

    start: float
    end: float
    up: float
    down: float
    power_off: float
    maintenance: float
    unknown: float
    outages: int
    episodes: tuple[Outage, ...] = ()

    @property
    def period(self) -> float:
        return self.end - self.start

    def measured(self, rule: SlaRule) -> float:
        """The denominator: the period without maintenance and the excluded time."""
        excluded = self.power_off if rule.exclude_power_cuts else 0.0
        if rule.unknown_as == "excluded":
            excluded += self.unknown
        return self.period - self.maintenance - excluded

    def availability(self, rule: SlaRule) -> float | None:
        measured = self.measured(rule)
        if measured <= 1e-6:
            return None
        return min(100.0, max(0.0, 100.0 * self.up / measured))


@dataclass(frozen=True)
class Row:
    """One line of the report."""

    site: Site
    figures: Figures
    rule: SlaRule

    @property
    def availability(self) -> float | None:
        value = self.figures.availability(self.rule)
        return None if value is None else round(value, 3)

    @property
    def meets_target(self) -> bool | None:
        value = self.availability  # judged as shown
        return None if value is None else value >= self.rule.target_percent


def union(intervals: Iterable[Interval]) -> list[Interval]:
    """Intervals merged where they touch or overlap, in order."""
    merged: list[Interval] = []
    for start, end in sorted(i for i in intervals if i[1] > i[0]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def overlap(start: float, end: float, intervals: Sequence[Interval]) -> float:
    """The length of [start, end) inside `intervals` (disjoint)."""
    total = 0.0
    for low, high in intervals:
        if high <= start:
            continue
        if low >= end:
            break
        total += min(end, high) - max(start, low)
    return total


def _growth(before: float, after: float) -> float:
    # NaN (no value yet) compares false: no growth from or to it.
    if after >= before:
        return after - before
    return after if after == after and before == before else 0.0  # noqa: PLR0124 - NaN


def figures(
    points: Sequence[Point], start: float, end: float, windows: Sequence[Interval]
) -> Figures:
    """The accounting of [start, end) from a site's points (in hour order) and its
    maintenance windows (see the module docstring)."""
    windows = union(windows)
    inside = union((max(low, start), min(high, end)) for low, high in windows)
    maintenance = overlap(start, end, inside)
    up = down = power_off = outages = 0.0
    episodes: list[Outage] = []
    before = old_up = old_down = old_off = old_out = math.nan
    for point in points:
        if point[LINK_AT] < 0:
            continue
        after = point[HOUR] * 3600 + point[LINK_AT] / 1000
        # A counter missing from a sample keeps its last value: no growth is invented.
        new_up, new_down, new_off, new_out = point[UP], point[DOWN], point[OFFLINE], point[OUTAGES]
        new_up = old_up if math.isnan(new_up) else new_up
        new_down = old_down if math.isnan(new_down) else new_down
        new_off = old_off if math.isnan(new_off) else new_off
        new_out = old_out if math.isnan(new_out) else new_out
        gap = after - before  # NaN for the first point: skipped below
        if gap > 0 and after > start and before < end:
            grown_up = _growth(old_up, new_up)
            grown_down = _growth(old_down, new_down)
            grown_off = _growth(old_off, new_off)
            grown_out = _growth(old_out, new_out)
            counts = start < after <= end and grown_out > 0
            if counts and (not windows or overlap(before, after, windows) < gap):
                outages += grown_out
            if start <= before and after <= end:
                covered = gap
            else:
                covered = min(after, end) - max(before, start)
            if covered > 0:
                outside = covered - overlap(before, after, inside) if inside else covered
                accounted = grown_up + grown_down + grown_off
                share = outside / (accounted if accounted > gap else gap)
                up += grown_up * share
                down += grown_down * share
                power_off += grown_off * share
                if grown_down > 0 and outside > 0:
                    low, high = max(before, start), min(after, end)
                    if episodes and episodes[-1].end == low:
                        last = episodes[-1]
                        episodes[-1] = Outage(last.start, high, last.down + grown_down * share)
                    else:
                        episodes.append(Outage(low, high, grown_down * share))
        before, old_up, old_down, old_off, old_out = after, new_up, new_down, new_off, new_out
    unknown = max(0.0, (end - start) - maintenance - up - down - power_off)
    return Figures(
        start,
        end,
        up,
        down,
        power_off,
        maintenance,
        unknown,
        round(outages),
        tuple(episodes),
    )


def service_start(site: Site, timezone: str) -> float | None:
    """The first instant of the site's `in_service_since` date in `timezone`."""
    if site.in_service_since is None:
        return None
    day = site.in_service_since
    zone = zoneinfo.ZoneInfo(timezone)
    return datetime.datetime(day.year, day.month, day.day, tzinfo=zone).timestamp()


def period_of(site: Site, start: float, end: float, timezone: str) -> tuple[float, float] | None:
    """The site's part of the month [start, end); None when it was not in service yet."""
    since = service_start(site, timezone)
    if since is not None:
        start = max(start, since)
    return (start, end) if start < end else None


def windows_for(site: Site, windows: Sequence[MaintenanceWindow]) -> list[Interval]:
    """The maintenance windows that select the site, as seconds."""
    return [(w.start_seconds, w.end_seconds) for w in windows if w.selects(site)]


def rows(  # noqa: PLR0917 - the report's inputs, each needed
    sites: Iterable[Site],
    stream: Iterable[tuple[str, list[Point]]],
    start: float,
    end: float,
    timezone: str,
    sla: Sla,
    windows: Sequence[MaintenanceWindow],
) -> list[Row]:
    """The report's rows, in site_id order, from each site's points as `stream` yields
    them (sites not in service yet are left out; sites without points are all unknown)."""
    by_id = {site.site_id: site for site in sites}
    found: dict[str, Row | None] = {}

    def row(site: Site, points: Sequence[Point]) -> Row | None:
        period = period_of(site, start, end, timezone)
        if period is None:
            return None
        own = figures(points, *period, windows_for(site, windows))
        return Row(site, own, sla.rule(site.project))

    for site_id, points in stream:
        site = by_id.get(site_id)
        if site is not None:
            found[site_id] = row(site, points)
    for site_id, site in by_id.items():
        if site_id not in found:
            found[site_id] = row(site, ())
    return [r for _, r in sorted(found.items()) if r is not None]


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.3f}"


def csv_values(row: Row) -> list[str]:
    """The row as the CSV's columns (`COLUMNS`)."""
    site, own = row.site, row.figures
    availability, meets = row.availability, row.meets_target
    return [
        site.site_id,
        site.site_name,
        site.project,
        site.region,
        site.province,
        site.district,
        site.ubigeo,
        site.institution_type,
        site.institution_code,
        site.access_tech,
        _hours(own.period),
        _hours(own.up),
        _hours(own.down),
        _hours(own.power_off),
        _hours(own.maintenance),
        _hours(own.unknown),
        "" if availability is None else f"{availability:.3f}",
        str(own.outages),
        f"{row.rule.target_percent:g}",
        "" if meets is None else ("true" if meets else "false"),
    ]


def to_csv(found: Iterable[Row]) -> str:
    """UTF-8 text, comma-separated, `.` decimals, a header row."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in found:
        writer.writerow(csv_values(row))
    return out.getvalue()
