"""The research panel: department x month x institution type, from the ledger. Pure.

See docs/panel.md for the data dictionary. Each month is a calendar month in the
collector's time zone; every (department, institution type) with a site in the
inventory has a row every month, so the panel is balanced.
"""

from __future__ import annotations

import csv
import datetime
import functools
import io
import itertools
import zoneinfo
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from collector.config import MaintenanceWindow, Sla
from collector.inventory import INSTITUTION_TYPES, Site
from collector.ledger import HOUR, LINK_AT, TRAFFIC, TRAFFIC_AT, WIFI, WIFI_AT, Point
from collector.reports.sla import figures, overlap, period_of, service_start, windows_for
from collector.ubigeo import departments

COLUMNS = (
    "department_ubigeo",
    "department",
    "month",
    "institution_type",
    "sites_inventoried",
    "sites_connected",
    "sites_reporting",
    "availability_percent",
    "wifi_client_days",
    "traffic_gigabytes",
)


@dataclass
class Cell:
    """One row being summed."""

    department_ubigeo: str
    institution_type: str
    month: str
    inventoried: int = 0
    connected: int = 0
    reporting: int = 0
    up: float = 0.0
    measured: float = 0.0
    wifi_client_days: float = 0.0
    traffic_bytes: float = 0.0

    @property
    def availability(self) -> float | None:
        return None if self.measured <= 1e-6 else 100.0 * self.up / self.measured


def _stamp(point: Point, group: int) -> float:
    return point[HOUR] * 3600 + point[group] / 1000


def reported_within(points: Sequence[Point], start: float, end: float) -> bool:
    """Whether any sample of the points falls in [start, end)."""
    for point in points:
        for group in (LINK_AT, WIFI_AT, TRAFFIC_AT):
            if point[group] >= 0 and start <= _stamp(point, group) < end:
                return True
    return False


@functools.lru_cache(maxsize=4096)
def _day(hour: int, timezone: str) -> datetime.date:
    """The local date of an hour since the epoch (hours of an offset zone stay whole)."""
    return datetime.datetime.fromtimestamp(hour * 3600, zoneinfo.ZoneInfo(timezone)).date()


def wifi_client_days(points: Sequence[Point], start: float, end: float, timezone: str) -> float:
    """Sum over the days of [start, end) (in `timezone`) of the day's distinct clients:
    the largest `kipu_wifi_unique_clients` of the day's hourly points."""
    best: dict[datetime.date, float] = {}
    for point in points:
        if point[WIFI_AT] < 0:
            continue
        at = _stamp(point, WIFI_AT)
        if start <= at < end:
            if timezone_has_whole_hours(timezone):
                day = _day(point[HOUR], timezone)
            else:
                day = datetime.datetime.fromtimestamp(at, zoneinfo.ZoneInfo(timezone)).date()
            best[day] = max(best.get(day, 0.0), point[WIFI])
    return sum(best.values())


@functools.cache
def timezone_has_whole_hours(timezone: str) -> bool:
    """Whether every UTC offset of the zone (now and in the last years) is whole hours."""
    zone = zoneinfo.ZoneInfo(timezone)
    moments = (
        datetime.datetime(year, month, 15, tzinfo=zone)
        for year in range(2020, 2031)
        for month in (1, 4, 7, 10)
    )
    return all(
        (offset := m.utcoffset()) is not None and offset.total_seconds() % 3600 == 0
        for m in moments
    )


def traffic_bytes(points: Sequence[Point], start: float, end: float) -> float:
    """The traffic counters' growth within [start, end), spread evenly between points."""
    series = [(_stamp(p, TRAFFIC_AT), p[TRAFFIC]) for p in points if p[TRAFFIC_AT] >= 0]
    total = 0.0
    for (before, old), (after, new) in itertools.pairwise(series):
        if after <= before:
            continue
        grown = new - old if new >= old else new
        total += grown * overlap(before, after, [(start, end)]) / (after - before)
    return total


@dataclass(frozen=True)
class SiteMonth:
    """What one site adds to its row."""

    connected: bool
    reporting: bool
    up: float
    measured: float
    wifi_client_days: float
    traffic_bytes: float


def site_month(  # noqa: PLR0917 - the inputs, each needed
    site: Site,
    points: Sequence[Point],
    first_seen: int | None,
    start: float,
    end: float,
    timezone: str,
    sla: Sla,
    windows: Sequence[MaintenanceWindow],
) -> SiteMonth:
    """One site's figures of the month [start, end)."""
    # Points come in hour order: the first holds the earliest sample.
    seen = [_stamp(p, g) for p in points[:1] for g in (LINK_AT, WIFI_AT, TRAFFIC_AT) if p[g] >= 0]
    earliest = min([*seen, *([] if first_seen is None else [first_seen / 1000])], default=None)
    connected = earliest is not None and earliest < end
    up = measured = 0.0
    period = period_of(site, start, end, timezone)
    # A site not connected yet has no service to measure: it stays out of the
    # availability (its absence is in sites_connected).
    if period is not None and connected:
        own = figures(points, *period, windows_for(site, windows))
        measured = own.measured(sla.rule(site.project))
        if measured > 1e-6:
            up = own.up
        else:
            measured = 0.0
    return SiteMonth(
        connected,
        reported_within(points, start, end),
        up,
        measured,
        wifi_client_days(points, start, end, timezone),
        traffic_bytes(points, start, end),
    )


def cells(  # noqa: PLR0917 - the panel's inputs, each needed
    sites: Sequence[Site],
    stream: Iterable[tuple[str, list[Point]]],
    first_seen: dict[str, int],
    month: str,
    start: float,
    end: float,
    timezone: str,
    sla: Sla,
    windows: Sequence[MaintenanceWindow],
) -> list[Cell]:
    """One month's rows, by department code and institution type, from each site's
    points as `stream` yields them."""
    by_id = {site.site_id: site for site in sites}
    own: dict[str, SiteMonth] = {}

    def figure(site: Site, points: Sequence[Point]) -> SiteMonth:
        first = first_seen.get(site.site_id)
        return site_month(site, points, first, start, end, timezone, sla, windows)

    for site_id, points in stream:
        if site_id in by_id:
            own[site_id] = figure(by_id[site_id], points)
    found: dict[tuple[str, str], Cell] = {}
    for site in sites:
        key = (site.ubigeo[:2], site.institution_type)
        cell = found.setdefault(key, Cell(key[0], key[1], month))
        since = service_start(site, timezone)
        if since is not None and since >= end:
            continue
        mine = own.get(site.site_id) or figure(site, ())
        cell.inventoried += 1
        cell.connected += mine.connected
        cell.reporting += mine.reporting
        cell.up += mine.up
        cell.measured += mine.measured
        cell.wifi_client_days += mine.wifi_client_days
        cell.traffic_bytes += mine.traffic_bytes
    order = {kind: i for i, kind in enumerate(INSTITUTION_TYPES)}
    return [found[k] for k in sorted(found, key=lambda k: (k[0], order.get(k[1], 99), k[1]))]


def month_range(first: str, last: str) -> list[str]:
    """The months from `first` to `last` (YYYY-MM), both included."""
    year, number = (int(p) for p in first.split("-"))
    end = tuple(int(p) for p in last.split("-"))
    months = []
    while (year, number) <= end:
        months.append(f"{year:04d}-{number:02d}")
        year, number = (year + 1, 1) if number == 12 else (year, number + 1)
    return months


def to_csv(found: Iterable[Cell]) -> str:
    """UTF-8 text, comma-separated, `.` decimals, a header row."""
    names = departments()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for cell in found:
        availability = cell.availability
        writer.writerow(
            [
                cell.department_ubigeo,
                names.get(cell.department_ubigeo, ""),
                cell.month,
                cell.institution_type,
                cell.inventoried,
                cell.connected,
                cell.reporting,
                "" if availability is None else f"{availability:.3f}",
                f"{cell.wifi_client_days:.0f}",
                f"{cell.traffic_bytes / 1e9:.3f}",
            ]
        )
    return out.getvalue()
