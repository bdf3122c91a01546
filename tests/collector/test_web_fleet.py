"""A fleet of simulated sites for the NOC page's tests, its browser tests and its
benchmark: an inventory over several projects (real INEI districts, names with
accents), and pushes as kipu agents send them, a day of history then a live snapshot.

Every site has a planned state: `reporting` sites push now, `silent` ones pushed a
while ago (the caller arranges the time), `never_seen` ones never push. Reporting
sites differ by access technology (a satellite link has ~600 ms), some have the link
down, some a power cut, and each history has a two-hour gap (the agent was off).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import yaml
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from collector.app import Collector, make_app
from collector.auth import TokenStore
from collector.config import load_config
from collector.inventory import parse_inventory
from collector.ubigeo import District, districts
from kipu.remote_write.codec import Sample, Series, decode, encode, normalise_labels

PROJECTS = (
    # project, site_id prefix, department code
    ("junin", "jun", "12"),
    ("huanuco", "hco", "10"),
    ("cusco", "cus", "08"),
    ("loreto", "lor", "16"),
    ("puno", "pun", "21"),
    ("ayacucho", "aya", "05"),
)
TYPES = ("school", "school", "health", "police", "plaza_wifi", "school", "health", "other")
TECHS = ("microwave", "4g", "fibre", "satellite", "radio", "satellite_leo", "microwave")
BASE_RTT = {
    "fibre": 0.008,
    "microwave": 0.025,
    "radio": 0.030,
    "4g": 0.060,
    "satellite": 0.610,
    "satellite_leo": 0.045,
}
STEP_MS = 300_000  # the collector's memory steps
DAY_STEPS = 288
GAP_STEPS = range(100, 124)  # two hours without data in each history
LIVE_AFTER_MS = 60_000  # the live snapshot comes a minute after the history's end
ROLES = ("pop", "internet")


@dataclass(frozen=True)
class FleetSite:
    site_id: str
    site_name: str
    project: str
    district: District
    institution_type: str
    institution_code: str
    access_tech: str
    latitude: float | None
    longitude: float | None
    state: str
    """The planned state: reporting, silent or never_seen."""
    link_up: bool
    power_cut: bool
    rtt: float
    """Seconds, towards the PoP."""
    loss: float
    wifi: int

    def inventory_row(self) -> dict[str, object]:
        row: dict[str, object] = {
            "site_id": self.site_id,
            "site_name": self.site_name,
            "project": self.project,
            "ubigeo": self.district.ubigeo,
            "institution_type": self.institution_type,
            "upstream_node": f"nodo-{self.project}-{self.district.ubigeo[2:4]}",
            "access_tech": self.access_tech,
        }
        if self.institution_code:
            row["institution_code"] = self.institution_code
        if self.latitude is not None:
            row["latitude"] = self.latitude
            row["longitude"] = self.longitude
        return row


def _name(kind: str, number: int, place: str) -> str:
    if kind == "school":
        return f"IE N° {30000 + number} {place}"
    if kind == "health":
        return f"Puesto de Salud {place}"
    if kind == "police":
        return f"Comisaría PNP {place}"
    if kind == "plaza_wifi":
        return f"Plaza WiFi {place}"
    return f"Municipalidad de {place}"


def _state(index: int) -> str:
    # 80 % reporting, 10 % silent, 10 % never seen, spread over every project.
    return {7: "silent", 9: "never_seen"}.get(index % 10, "reporting")


def fleet(count: int, projects: int = 3, seed: int = 7) -> list[FleetSite]:
    """`count` sites over the first `projects` of PROJECTS, always the same for a seed."""
    rng = random.Random(seed)
    chosen = PROJECTS[:projects]
    by_department: dict[str, list[District]] = {}
    for district in districts().values():
        by_department.setdefault(district.department_code, []).append(district)
    sites: list[FleetSite] = []
    for index in range(count):
        project, prefix, department = chosen[index % len(chosen)]
        number = index // len(chosen) + 1
        places = by_department[department]
        district = places[(number * 7) % len(places)]
        unplaced = index % 31 == 0
        if unplaced:
            # A district without known coordinates, so the inventory cannot place it.
            district = next(d for d in places if d.latitude is None)
        kind = TYPES[index % len(TYPES)]
        tech = TECHS[index % len(TECHS)]
        code = ""
        if kind == "school":
            code = f"{1_000_000 + index * 37:07d}"
        elif kind == "health":
            code = f"{index + 5000:08d}"
        latitude = longitude = None
        if district.latitude is not None and district.longitude is not None:
            latitude = round(district.latitude + rng.uniform(-0.05, 0.05), 5)
            longitude = round(district.longitude + rng.uniform(-0.05, 0.05), 5)
        sites.append(
            FleetSite(
                site_id=f"{prefix}-{number:04d}",
                site_name=_name(kind, number, district.district),
                project=project,
                district=district,
                institution_type=kind,
                institution_code=code,
                access_tech=tech,
                latitude=latitude,
                longitude=longitude,
                state=_state(index),
                link_up=index % 17 != 3,
                power_cut=index % 23 == 5,
                rtt=BASE_RTT[tech] * rng.uniform(0.8, 1.3),
                loss=rng.choice((0.0, 0.0, 0.0, 0.002, 0.01, 0.04)),
                wifi=rng.randint(0, 40) if kind in ("school", "plaza_wifi") else rng.randint(0, 6),
            )
        )
    return sites


def inventory_yaml(sites: list[FleetSite]) -> str:
    """The inventory file of `sites`."""
    return yaml.safe_dump(
        {"sites": [site.inventory_row() for site in sites]}, allow_unicode=True, sort_keys=False
    )


class SiteAgent:
    """What one site's agent pushes: counters that only grow, gauges that vary."""

    def __init__(self, site: FleetSite) -> None:
        self.site = site
        self.rng = random.Random(site.site_id)
        self.sent = dict.fromkeys(ROLES, 0.0)
        self.received = dict.fromkeys(ROLES, 0.0)
        self.rtt_sum = dict.fromkeys(ROLES, 0.0)
        self.offline = 0.0
        self.rx = 0.0
        self.tx = 0.0
        self.at_ms: int | None = None

    def _advance(self, at_ms: int, busy: float) -> None:
        seconds = 0.0 if self.at_ms is None else (at_ms - self.at_ms) / 1000
        self.at_ms = at_ms
        site = self.site
        for role in ROLES:
            probes = seconds  # one probe a second per role
            extra = 0.0 if role == "pop" else 0.015
            rtt = (site.rtt + extra) * (1 + 0.4 * busy) * self.rng.uniform(0.9, 1.1)
            received = probes * (1 - site.loss * (1 + busy))
            self.sent[role] += probes
            self.received[role] += received
            self.rtt_sum[role] += received * rtt
        self.rx += seconds * 2e6 * (0.2 + busy) / 8
        self.tx += seconds * 4e5 * (0.2 + busy) / 8

    def _snapshot(self, at_ms: int, busy: float, link_up: bool) -> Iterator[tuple[Series, float]]:
        site = self.site
        yield normalise_labels({"__name__": "kipu_link_up"}), 1.0 if link_up else 0.0
        wifi = round(site.wifi * busy)
        yield (
            normalise_labels(
                {"__name__": "kipu_wifi_clients", "device": "ap", "ssid": "WiFi-Gratis"}
            ),
            float(wifi),
        )
        yield normalise_labels({"__name__": "kipu_agent_offline_seconds_total"}), self.offline
        for role in ROLES:
            labels = {"target": f"{role}-1", "role": role}
            received = self.received[role]
            for name, value in (
                ("kipu_probe_rtt_seconds_sum", self.rtt_sum[role]),
                ("kipu_probe_rtt_seconds_count", received),
                ("kipu_probe_packets_sent_total", self.sent[role]),
                ("kipu_probe_packets_received_total", received),
            ):
                yield normalise_labels({"__name__": name, **labels}), round(value, 6)
        interface = {"device": "router", "interface": "ether1"}
        for name, value in (
            ("kipu_interface_receive_bytes_total", self.rx),
            ("kipu_interface_transmit_bytes_total", self.tx),
        ):
            yield normalise_labels({"__name__": name, **interface}), round(value)

    def history(self, end_ms: int, steps: int = DAY_STEPS) -> bytes:
        """A day of snapshots, one per step, ending at `end_ms` (a backlog batch)."""
        series: dict[Series, list[Sample]] = {}
        for step in range(steps):
            at_ms = end_ms - (steps - 1 - step) * STEP_MS
            busy = _daytime(at_ms)
            self._advance(at_ms, busy)
            if step in GAP_STEPS:
                continue  # the agent was off: counters went on, nothing was sent
            for labels, value in self._snapshot(at_ms, busy, True):
                series.setdefault(labels, []).append((at_ms, value))
        return encode(series)

    def live(self, at_ms: int) -> bytes:
        """The current snapshot; a site with a power cut shows offline time growing."""
        if self.site.power_cut:
            self.offline += 600.0
        busy = _daytime(at_ms)
        self._advance(at_ms, busy)
        return encode(
            {
                labels: [(at_ms, value)]
                for labels, value in self._snapshot(at_ms, busy, self.site.link_up)
            }
        )


def _daytime(at_ms: int) -> float:
    """0.1 at night to 1 at midday (Lima time), for WiFi clients and traffic."""
    hour = ((at_ms / 3_600_000) - 5) % 24
    return 0.1 + 0.9 * max(0.0, math.sin(math.pi * (hour - 6) / 14)) if 6 <= hour <= 20 else 0.1


@functools.lru_cache(maxsize=4096)
def pushes(site: FleetSite, now_ms: int) -> tuple[bytes, ...]:
    """What a site that reports at `now_ms` has sent: its day, then its live snapshot
    (the same for the same arguments: tests at one clock build them once)."""
    agent = SiteAgent(site)
    return (agent.history(now_ms - LIVE_AFTER_MS), agent.live(now_ms))


# -- a collector in this process, fed by the fleet

Client = TestClient[web.Request, web.Application]
SILENT_FOR = 900.0  # seconds since a silent site's last push
# Every in-process collector of a test run has this time on its clock, so the pushes
# of the fleet are built once.
FLEET_NOW = float(int(time.time()))


class Clock:
    """The collector's clock, set by the test (silent sites pushed "a while ago")."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def basic(name: str, password: str) -> dict[str, str]:
    """The Authorization header of HTTP Basic credentials."""
    token = base64.b64encode(f"{name}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@dataclass
class WebNoc:
    collector: Collector
    client: Client
    clock: Clock
    sites: list[FleetSite]
    headers: dict[str, str] = field(default_factory=dict)
    """Sent with every request (credentials)."""

    def by_state(self, state: str) -> list[FleetSite]:
        return [site for site in self.sites if site.state == state]

    async def get(
        self, path: str, headers: dict[str, str] | None = None
    ) -> tuple[int, str, dict[str, str]]:
        sent = {**self.headers, **(headers or {})}
        response = await self.client.get(path, headers=sent)
        text = await response.text()
        assert response.status < 500, f"{path}: {response.status}\n{text}"
        return response.status, text, dict(response.headers)


async def start_web_noc(
    aiohttp_client: AiohttpClient, directory: Path, sites: list[FleetSite], extra: str = ""
) -> WebNoc:
    """A collector on loopback with `sites`, each in its planned state, its latest
    values and its history pushed through the write endpoint."""

    def prepare() -> tuple[Path, dict[str, str]]:
        (directory / "sites.yaml").write_text(inventory_yaml(sites), encoding="utf-8")
        path = directory / "collector.yaml"
        path.write_text(f"inventory: sites.yaml\nstate_dir: state\n{extra}", encoding="utf-8")
        config = load_config(path)
        pushing = [site.site_id for site in sites if site.state != "never_seen"]
        return path, TokenStore(config.state_dir).issue_many(pushing)

    path, tokens = await asyncio.to_thread(prepare)
    config = await asyncio.to_thread(load_config, path)
    clock = Clock(FLEET_NOW)
    collector = Collector(config, path, clock=clock)
    client = await aiohttp_client(make_app(collector))
    now = clock.now
    for state, at in (("silent", now - SILENT_FOR), ("reporting", now)):
        clock.now = at
        for site in sites:
            if site.state != state:
                continue
            for body in pushes(site, int(at * 1000)):
                response = await client.post(
                    "/api/v1/write",
                    data=body,
                    headers={
                        "Authorization": f"Bearer {tokens[site.site_id]}",
                        "Content-Encoding": "snappy",
                        "Content-Type": "application/x-protobuf",
                    },
                )
                assert response.status == 204, await response.text()
    clock.now = now
    return WebNoc(collector, client, clock, sites)


# -- reading the page as structure, not by string search


@dataclass
class PageRow:
    site_id: str
    row_class: str
    cells: list[str]


@dataclass
class Dot:
    site_id: str
    state: str


@dataclass
class Page:
    """What the NOC page shows: its rows, group headings, map dots, links and text."""

    rows: list[PageRow] = field(default_factory=list)
    summaries: list[str] = field(default_factory=list)
    """The text of each project and region heading, with its counts."""
    captions: list[str] = field(default_factory=list)
    """The text of each province heading, with its counts."""
    dots: list[Dot] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)
    """(text, href) of every HTML link."""
    paths: list[str] = field(default_factory=list)
    """The `d` of every SVG path with class spark (the sparklines)."""
    texts: list[str] = field(default_factory=list)
    """Every piece of text outside style and script."""
    meta_refresh: str | None = None
    html_lang: str | None = None

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.texts).split())

    def site_ids(self) -> list[str]:
        return [row.site_id for row in self.rows]

    def row(self, site_id: str) -> PageRow:
        return next(row for row in self.rows if row.site_id == site_id)

    def link(self, text: str) -> str:
        return next(href for label, href in self.links if label == text)


class _PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = Page()
        self._row: PageRow | None = None
        self._cell: list[str] | None = None
        self._summary: list[str] | None = None
        self._caption: list[str] | None = None
        self._link: tuple[str, list[str]] | None = None
        self._svg_href: str | None = None
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {name: value or "" for name, value in attrs}
        if tag == "html":
            self.page.html_lang = found.get("lang")
        elif tag in ("style", "script"):
            self._skip += 1
        elif tag == "meta" and found.get("http-equiv") == "refresh":
            self.page.meta_refresh = found.get("content")
        elif tag == "tr" and found.get("class", "").startswith("r-"):
            self._row = PageRow("", found["class"], [])
        elif tag == "td" and self._row is not None:
            self._cell = []
            self._row.cells.append("")
        elif tag == "summary":
            self._summary = []
        elif tag == "caption":
            self._caption = []
        elif tag == "a":
            href = found.get("href", "")
            self._svg_href = href
            self._link = (href, [])
            if self._row is not None and not self._row.site_id and href.startswith("/sites/"):
                self._row.site_id = href.removeprefix("/sites/").split("?")[0]
        elif tag == "circle" and self._svg_href:
            site_id = self._svg_href.removeprefix("/sites/").split("?")[0]
            self.page.dots.append(Dot(site_id, found.get("class", "")))
        elif tag == "path" and found.get("class") == "spark":
            self.page.paths.append(found.get("d", ""))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script"):
            self._skip -= 1
        elif tag == "tr" and self._row is not None:
            self._row.cells = [" ".join(cell.split()) for cell in self._row.cells]
            self.page.rows.append(self._row)
            self._row = self._cell = None
        elif tag == "summary" and self._summary is not None:
            self.page.summaries.append(" ".join("".join(self._summary).split()))
            self._summary = None
        elif tag == "caption" and self._caption is not None:
            self.page.captions.append(" ".join("".join(self._caption).split()))
            self._caption = None
        elif tag == "a" and self._link is not None:
            href, parts = self._link
            self.page.links.append((" ".join("".join(parts).split()), href))
            self._link = None
            self._svg_href = None

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        self.page.texts.append(data)
        for collecting in (self._summary, self._caption):
            if collecting is not None:
                collecting.append(data)
        if self._link is not None:
            self._link[1].append(data)
        if self._row is not None and self._cell is not None:
            self._row.cells[-1] += data


def parse_page(text: str) -> Page:
    """The structure of a page of the NOC."""
    parser = _PageParser()
    parser.feed(text)
    parser.close()
    return parser.page


# -- the fleet itself


def test_the_fleet_is_a_valid_inventory_with_every_state_in_every_project() -> None:
    sites = fleet(60)
    inventory = parse_inventory(inventory_yaml(sites), "fleet.yaml", "yaml")
    assert len(inventory.sites) == 60
    assert inventory.projects() == ["cusco", "huanuco", "junin"]
    for project, _, _ in PROJECTS[:3]:
        states = {s.state for s in sites if s.project == project}
        assert states == {"reporting", "silent", "never_seen"}
    assert any(s.latitude is None for s in sites), "some site must be unplaced"
    assert any(not s.link_up for s in sites if s.state == "reporting")
    assert any(s.power_cut for s in sites if s.state == "reporting")


def test_an_agent_s_history_has_a_gap_and_its_counters_only_grow() -> None:
    site = fleet(1)[0]
    history, live = pushes(site, 1_800_000_000_000)
    series = decode(history)
    sent = next(v for k, v in series.items() if dict(k)["__name__"].endswith("sent_total"))
    assert len(sent) == DAY_STEPS - len(GAP_STEPS)
    values = [value for _, value in sent]
    assert values == sorted(values)
    (last,) = next(v for k, v in decode(live).items() if k in series and "sent" in str(k))
    assert last[1] > values[-1]
