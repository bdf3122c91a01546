"""What the NOC page and the read API show, built from the collector's site views. Pure.

Scoping (the projects a viewer may see), the filters of the query string, the tree of
projects, regions and provinces with counts per state, the rows of the page, the map
and the sparklines, and the JSON objects of the API. No I/O and no clock: the caller
gives the views and the time.
"""

from __future__ import annotations

import datetime
import functools
import math
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from collector.inventory import INSTITUTION_TYPES, Site
from collector.liveness import STATES, SiteState
from collector.snapshots import History, Latest, Rollup, SiteView
from kipu.config.checks import SITE_ID_PATTERN

FILTERS = ("state", "project", "region", "type", "q")
"""Query parameters that narrow the sites, on the page and in the API."""
MAX_QUERY = 100  # characters of a search: longer is refused, not truncated
ROLE_PREFERENCE = ("pop", "internet", "backhaul", "gateway")
# Problems first: a NOC reads the top of each province.
STATE_ORDER: dict[str, int] = {"silent": 0, "never_seen": 1, "reporting": 2}
_SITE_ID = re.compile(SITE_ID_PATTERN)

# Peru's box (DESIGN: the map needs no tile server), equirectangular.
MAP_LATITUDES = (-18.4, 0.0)
MAP_LONGITUDES = (-81.4, -68.6)
MAP_SCALE = 20.0  # SVG units per degree


def fold(text: str) -> str:
    """`text` without accents and case, for searching ("Monzón" and "monzon" match)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def is_site_id(text: str) -> bool:
    """Whether `text` is well-formed as a site id (DESIGN §2)."""
    return _SITE_ID.fullmatch(text) is not None


# -- scope


@dataclass(frozen=True)
class Scope:
    """The projects a viewer may see; `projects` None: every project."""

    projects: frozenset[str] | None = None
    viewer: str | None = None
    """The viewer's name; None when the page is open (no viewers configured)."""

    @classmethod
    def of(cls, viewer: str, projects: Iterable[str]) -> Scope:
        """A viewer's scope from the `projects` of its configuration (`*`: all)."""
        listed = frozenset(projects)
        return cls(None if "*" in listed else listed, viewer)

    def sees(self, project: str) -> bool:
        """Whether the viewer may see the sites of `project`."""
        return self.projects is None or project in self.projects

    def views(self, views: Iterable[SiteView]) -> list[SiteView]:
        """The views of the projects in scope, in their order."""
        return [view for view in views if self.sees(view.site.project)]


# -- filters


class FilterError(ValueError):
    """A query parameter the page and the API refuse (400): an unknown name or value."""

    def __init__(
        self,
        parameter: str,
        value: str,
        known: Sequence[str],
        kind: Literal["parameter", "value", "length"] = "value",
    ) -> None:
        self.parameter, self.value, self.known, self.kind = parameter, value, tuple(known), kind
        super().__init__(self.message)

    @property
    def message(self) -> str:
        """The reason in English (the page says it in the viewer's language)."""
        known = ", ".join(self.known)
        if self.kind == "parameter":
            return f"unknown parameter {self.parameter!r}; known: {known}"
        if self.kind == "length":
            return f"{self.parameter}: longer than {MAX_QUERY} characters"
        return f"{self.parameter}: unknown value {self.value!r}; known: {known}"


@dataclass(frozen=True)
class Filters:
    """What the query string asks for; an empty set or text: no condition.

    Repeated values of one parameter are alternatives (`?state=silent&state=never_seen`);
    different parameters must all hold.
    """

    states: frozenset[str] = frozenset()
    projects: frozenset[str] = frozenset()
    regions: frozenset[str] = frozenset()
    types: frozenset[str] = frozenset()
    query: str = ""
    """As typed (stripped); matched folded."""

    @property
    def active(self) -> bool:
        """Whether any condition is set."""
        return bool(self.states or self.projects or self.regions or self.types or self.query)

    @functools.cached_property
    def _folded(self) -> str:
        return fold(self.query)

    def matches(self, view: SiteView, *, ignore_state: bool = False) -> bool:
        """Whether `view` meets every condition (`ignore_state`: all but the state)."""
        site = view.site
        if self.states and not ignore_state and view.state not in self.states:
            return False
        if self.projects and site.project not in self.projects:
            return False
        if self.regions and site.region not in self.regions:
            return False
        if self.types and site.institution_type not in self.types:
            return False
        return not self.query or self._folded in _haystack(site)

    def apply(self, views: Iterable[SiteView]) -> list[SiteView]:
        """The views that match, in their order."""
        return [view for view in views if self.matches(view)]


def _haystack(site: Site) -> str:
    return fold("\n".join((site.site_name, site.site_id, site.institution_code, site.ubigeo)))


def parse_filters(
    pairs: Iterable[tuple[str, str]],
    views: Sequence[SiteView],
    *,
    allowed: Sequence[str] = FILTERS,
    ignored: Sequence[str] = (),
) -> Filters:
    """The filters of a query string's (name, value) pairs; FilterError when refused.

    `views` are the sites in the viewer's scope: a project or region outside them is
    unknown (a scoped viewer learns nothing of other projects). Regions match without
    accents or case (`?region=junin`). An empty value is no condition (an HTML form
    sends its empty fields). Names in `ignored` are accepted and left to the caller.
    """
    projects = sorted({view.site.project for view in views})
    regions: dict[str, str] = {}
    for view in views:
        regions.setdefault(fold(view.site.region), view.site.region)
    found: dict[str, set[str]] = defaultdict(set)
    query = ""
    for name, raw in pairs:
        if name in ignored:
            continue
        if name not in allowed:
            raise FilterError(name, raw, [*allowed, *ignored], "parameter")
        value = raw.strip()
        if not value:
            continue
        if name == "q":
            if len(value) > MAX_QUERY:
                raise FilterError(name, value, (), "length")
            query = value
        elif name == "state":
            found[name].add(_known(name, value, STATES))
        elif name == "type":
            found[name].add(_known(name, value, INSTITUTION_TYPES))
        elif name == "project":
            found[name].add(_known(name, value, projects))
        elif name == "region":
            region = regions.get(fold(value))
            if region is None:
                raise FilterError(name, value, sorted(regions.values()))
            found[name].add(region)
    return Filters(
        states=frozenset(found["state"]),
        projects=frozenset(found["project"]),
        regions=frozenset(found["region"]),
        types=frozenset(found["type"]),
        query=query,
    )


def _known(name: str, value: str, known: Sequence[str]) -> str:
    if value not in known:
        raise FilterError(name, value, known)
    return value


# -- rows of the page


@dataclass(frozen=True)
class Ago:
    """How long ago, in the largest whole unit that fits (the page says "3 min ago")."""

    number: int
    unit: Literal["s", "min", "h", "d"]


def ago(seconds: float) -> Ago:
    """`seconds` in the past as an `Ago` (a time in the future is 0 s: clock skew)."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return Ago(int(seconds), "s")
    if seconds < 3600:
        return Ago(int(seconds // 60), "min")
    if seconds < 48 * 3600:
        return Ago(int(seconds // 3600), "h")
    return Ago(int(seconds // 86400), "d")


def preferred_role(values: dict[str, float]) -> str | None:
    """The role whose latency the page shows: `pop`, else the closest to it, else any."""
    for role in ROLE_PREFERENCE:
        if role in values:
            return role
    return min(values) if values else None


@dataclass(frozen=True)
class Row:
    """One site as a line of the page."""

    site: Site
    state: SiteState
    last_push: str | None
    """RFC 3339, UTC."""
    ago: Ago | None
    link_up: bool | None
    latency_ms: float | None
    loss_percent: float | None
    role: str | None
    """The role of the latency and loss shown."""
    wifi_clients: int | None
    power_cut: bool


def row(view: SiteView, now: float) -> Row:
    """The page's line for `view` at `now`."""
    latest = view.latest
    role = preferred_role(latest.rtt_seconds) or preferred_role(latest.loss_ratio)
    rtt = latest.rtt_seconds.get(role) if role else None
    loss = latest.loss_ratio.get(role) if role else None
    return Row(
        site=view.site,
        state=view.state,
        last_push=rfc3339(view.last_push),
        ago=None if view.last_push is None else ago(now - view.last_push),
        link_up=latest.link_up,
        latency_ms=None if rtt is None else rtt * 1000,
        loss_percent=None if loss is None else loss * 100,
        role=role,
        wifi_clients=latest.wifi_clients,
        power_cut=latest.power_cut,
    )


def state_counts(views: Iterable[SiteView]) -> dict[str, int]:
    """Sites per state, every state present."""
    counts: dict[str, int] = dict.fromkeys(STATES, 0)
    for view in views:
        counts[view.state] += 1
    return counts


# -- the tree: projects -> regions -> provinces -> sites


@dataclass(frozen=True)
class Group:
    """A project, a region or a province, with its sites' counts per state."""

    name: str
    counts: dict[str, int]
    children: tuple[Group, ...] = ()
    rows: tuple[Row, ...] = ()
    """A province's sites (empty above)."""

    @property
    def total(self) -> int:
        """Sites in the group."""
        return sum(self.counts.values())


def tree(views: Iterable[SiteView], now: float) -> tuple[Group, ...]:
    """Projects, their regions, their provinces and their sites, sorted by name; sites
    with the problems first."""
    nested: dict[str, dict[str, dict[str, list[SiteView]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    for view in views:
        site = view.site
        nested[site.project][site.region][site.province].append(view)
    projects = []
    for project, regions in sorted(nested.items()):
        region_groups = []
        for region, provinces in sorted(regions.items(), key=lambda item: fold(item[0])):
            province_groups = []
            for province, members in sorted(provinces.items(), key=lambda item: fold(item[0])):
                members.sort(key=lambda v: (STATE_ORDER[v.state], fold(v.site.site_name)))
                rows = tuple(row(view, now) for view in members)
                province_groups.append(Group(province, state_counts(members), rows=rows))
            region_groups.append(Group(region, _sum(province_groups), tuple(province_groups)))
        projects.append(Group(project, _sum(region_groups), tuple(region_groups)))
    return tuple(projects)


def _sum(groups: Iterable[Group]) -> dict[str, int]:
    counts: dict[str, int] = dict.fromkeys(STATES, 0)
    for group in groups:
        for state, count in group.counts.items():
            counts[state] += count
    return counts


# -- the map


@dataclass(frozen=True)
class Dot:
    x: float
    y: float
    site_id: str
    site_name: str
    state: SiteState


@dataclass(frozen=True)
class Map:
    """Sites on an equirectangular view of Peru's box, in SVG units."""

    width: float
    height: float
    dots: tuple[Dot, ...]
    unplaced: tuple[Site, ...]
    """Sites without coordinates, or with coordinates outside the box."""


def project_point(latitude: float, longitude: float) -> tuple[float, float] | None:
    """SVG coordinates of a point, None outside Peru's box."""
    south, north = MAP_LATITUDES
    west, east = MAP_LONGITUDES
    if not (south <= latitude <= north and west <= longitude <= east):
        return None
    return (
        round((longitude - west) * MAP_SCALE, 1),
        round((north - latitude) * MAP_SCALE, 1),
    )


def map_size() -> tuple[float, float]:
    """Width and height of the map, in SVG units."""
    return (
        round((MAP_LONGITUDES[1] - MAP_LONGITUDES[0]) * MAP_SCALE, 1),
        round((MAP_LATITUDES[1] - MAP_LATITUDES[0]) * MAP_SCALE, 1),
    )


def site_map(views: Iterable[SiteView]) -> Map:
    """The sites as dots coloured by state; those without a place are listed apart."""
    dots: list[Dot] = []
    unplaced: list[Site] = []
    for view in views:
        site = view.site
        point = None
        if site.latitude is not None and site.longitude is not None:
            point = project_point(site.latitude, site.longitude)
        if point is None:
            unplaced.append(site)
        else:
            dots.append(Dot(point[0], point[1], site.site_id, site.site_name, view.state))
    # Problems on top: SVG paints in document order.
    dots.sort(key=lambda dot: -STATE_ORDER[dot.state])
    width, height = map_size()
    return Map(width, height, tuple(dots), tuple(sorted(unplaced, key=lambda s: s.site_id)))


def backdrop(points: Iterable[tuple[float | None, float | None]]) -> str:
    """An SVG path of dots, one per point (district capitals draw Peru's shape without
    any map data); drawn with a round line cap, a zero-length line is a dot."""
    seen: set[tuple[int, int]] = set()
    parts: list[str] = []
    for latitude, longitude in points:
        if latitude is None or longitude is None:
            continue
        point = project_point(latitude, longitude)
        if point is None:
            continue
        # Whole units (0.05°, ~5 km) are detail enough, and keep the page light.
        cell = (round(point[0]), round(point[1]))
        if cell not in seen:
            seen.add(cell)
            parts.append(f"M{cell[0]} {cell[1]}h0")
    return "".join(parts)


# -- sparklines


@dataclass(frozen=True)
class Sparkline:
    """A series as an SVG path (gaps where there was no data) with its scale."""

    path: str
    width: float
    height: float
    top: float
    """The value at the top edge."""
    last: float | None
    """The newest known value."""
    points: int
    """How many steps hold a value."""


def sparkline(
    values: Sequence[float | None],
    *,
    height: float = 40.0,
    top: float | None = None,
    floor: float = 1.0,
    scale: float = 1.0,
) -> Sparkline:
    """`values` (oldest first) times `scale`, one SVG unit per step; `top` fixes the
    scale's upper end, else it is the largest value but at least `floor` (a loss of
    0.2 % does not fill the height). A run of values is one line; a lone value between
    gaps is a short dash, so it stays visible."""
    scaled = [None if v is None or not math.isfinite(v) else v * scale for v in values]
    known = [v for v in scaled if v is not None]
    upper = top if top is not None else max(max(known, default=0.0), floor)
    if upper <= 0:
        upper = 1.0
    parts: list[str] = []
    previous_known = False
    for index, value in enumerate(scaled):
        if value is None:
            previous_known = False
            continue
        y = round(height - min(value, upper) / upper * height, 1)
        lone = not previous_known and (index + 1 >= len(scaled) or scaled[index + 1] is None)
        if lone:
            parts.append(f"M{index} {y}h1")
        else:
            parts.append(f"{'L' if previous_known else 'M'}{index} {y}")
        previous_known = True
    last = next((v for v in reversed(scaled) if v is not None), None)
    return Sparkline("".join(parts), float(len(values)), height, upper, last, len(known))


@dataclass(frozen=True)
class SiteDetail:
    """The site page: its line, latest values and sparklines of its short memory."""

    row: Row
    latest: Latest
    history: History | None
    sparklines: dict[str, Sparkline] = field(default_factory=dict)
    """rtt (ms), loss (%), link_up (%), wifi (clients); empty before the first push."""


def site_detail(view: SiteView, history: History | None, now: float) -> SiteDetail:
    """Everything the site page shows."""
    lines: dict[str, Sparkline] = {}
    if history is not None:
        lines = {
            "rtt": sparkline(history.rtt_seconds, scale=1000),
            "loss": sparkline(history.loss_ratio, scale=100, floor=5),
            "link_up": sparkline(history.link_up, scale=100, top=100),
            "wifi": sparkline(history.wifi_clients),
        }
    return SiteDetail(row(view, now), view.latest, history, lines)


# -- JSON


def rfc3339(stamp: float | None) -> str | None:
    """A Unix time as RFC 3339 in UTC (`2026-03-01T12:00:00Z`), None as None."""
    if stamp is None:
        return None
    moment = datetime.datetime.fromtimestamp(stamp, datetime.UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _number(value: float | None) -> float | None:
    # JSON has no NaN or infinity.
    return value if value is not None and math.isfinite(value) else None


def _numbers(values: dict[str, float]) -> dict[str, float | None]:
    return {key: _number(value) for key, value in sorted(values.items())}


def latest_object(latest: Latest) -> dict[str, object]:
    """A site's latest values in the API."""
    return {
        "link_up": latest.link_up,
        "power_cut": latest.power_cut,
        "rtt_seconds": _numbers(latest.rtt_seconds),
        "loss_ratio": _numbers(latest.loss_ratio),
        "wifi_clients": latest.wifi_clients,
        "traffic_bps": _numbers(latest.traffic_bps),
        "updated": rfc3339(latest.updated),
    }


def site_object(view: SiteView) -> dict[str, object]:
    """A site in the API: inventory fields (DESIGN §2 names), state, last push, latest."""
    site = view.site
    return {
        "site_id": site.site_id,
        "site_name": site.site_name,
        "project": site.project,
        "region": site.region,
        "province": site.province,
        "district": site.district,
        "ubigeo": site.ubigeo,
        "institution_type": site.institution_type,
        "institution_code": site.institution_code,
        "upstream_node": site.upstream_node,
        "access_tech": site.access_tech,
        "latitude": site.latitude,
        "longitude": site.longitude,
        "in_service_since": (
            None if site.in_service_since is None else site.in_service_since.isoformat()
        ),
        "contracted_down_mbps": site.contracted_down_mbps,
        "contracted_up_mbps": site.contracted_up_mbps,
        "state": view.state,
        "last_push": rfc3339(view.last_push),
        "latest": latest_object(view.latest),
    }


def history_object(history: History) -> dict[str, object]:
    """A site's short memory in the API: 5-minute steps, oldest first, null for none."""

    def series(values: tuple[float | None, ...]) -> list[float | None]:
        return [_number(v) for v in values]

    return {
        "step_seconds": history.step,
        "start": rfc3339(history.end - history.step * history.points),
        "end": rfc3339(history.end),
        "rtt_seconds": series(history.rtt_seconds),
        "loss_ratio": series(history.loss_ratio),
        "link_up": series(history.link_up),
        "wifi_clients": series(history.wifi_clients),
    }


def rollup_object(rollup: Rollup) -> dict[str, object]:
    """A rollup row in the API, as the `kipu_rollup_*` metrics have it."""
    key = rollup.key
    return {
        "project": key.project,
        "region": key.region,
        "province": key.province,
        "institution_type": key.institution_type,
        "sites": dict(rollup.sites),
        "link_up_sites": rollup.link_up_sites,
        "link_down_sites": rollup.link_down_sites,
        "power_cut_sites": rollup.power_cut_sites,
        "wifi_clients": rollup.wifi_clients,
        "traffic_bps": _numbers(rollup.traffic_bps),
        "rtt_seconds": {
            role: _numbers(quantiles) for role, quantiles in sorted(rollup.rtt_seconds.items())
        },
        "loss_ratio": _numbers(rollup.loss_ratio),
    }
