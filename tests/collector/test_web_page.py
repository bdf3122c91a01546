"""The NOC page on loopback, fed by 60 simulated sites over three projects: the tree
and its counts, each row's values, filters and search, the site page and its
sparklines, the map, both languages, compression. Pages are read as structure."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from pytest_aiohttp import AiohttpClient

from collector.web.model import fold
from tests.collector.test_web_fleet import (
    FleetSite,
    WebNoc,
    fleet,
    parse_page,
    start_web_noc,
)

SPANISH = {"Accept-Language": "es-PE,es;q=0.9"}
ENGLISH = {"Accept-Language": "en-GB,en;q=0.8"}
COLUMNS = (
    "site",
    "institution",
    "district",
    "access",
    "state",
    "last_push",
    "link",
    "latency",
    "loss",
    "wifi",
    "power",
)
STATE_ES = {"reporting": "reportando", "silent": "silencioso", "never_seen": "nunca visto"}


@pytest.fixture
async def noc(aiohttp_client: AiohttpClient, tmp_path: Path) -> WebNoc:
    sites = await asyncio.to_thread(fleet, 60)
    return await start_web_noc(aiohttp_client, tmp_path, sites)


def cells(noc_page_row: list[str]) -> dict[str, str]:
    return dict(zip(COLUMNS, noc_page_row, strict=True))


async def test_every_site_is_in_the_tree_with_its_state(noc: WebNoc) -> None:
    status, text, headers = await noc.get("/", SPANISH)
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    page = parse_page(text)
    assert sorted(page.site_ids()) == sorted(site.site_id for site in noc.sites)
    for site in noc.sites:
        row = page.row(site.site_id)
        assert row.row_class == f"r-{site.state}"
        # The state in words beside its colour.
        assert cells(row.cells)["state"] == STATE_ES[site.state]
    assert {"reporting", "silent", "never_seen"} == {s.state for s in noc.sites}


async def test_counts_per_state_at_every_level(noc: WebNoc) -> None:
    page = parse_page((await noc.get("/", SPANISH))[1])
    for project in ("junin", "huanuco", "cusco"):
        states = Counter(site.state for site in noc.sites if site.project == project)
        heading = next(s for s in page.summaries if s.startswith(f"Proyecto {project} "))
        expected = " ".join(f"{STATE_ES[state]} {states[state]}" for state in STATE_ES)
        assert heading == f"Proyecto {project} {expected}"
    # Provinces: the counts of each caption add up to the sites listed.
    total = Counter[str]()
    for caption in page.captions:
        for state, label in STATE_ES.items():
            found = re.search(rf"{label} (\d+)", caption)
            assert found is not None, caption
            total[state] += int(found.group(1))
    assert total == Counter(site.state for site in noc.sites)


async def test_a_row_shows_what_the_collector_knows(noc: WebNoc) -> None:
    page = parse_page((await noc.get("/", SPANISH))[1])
    views = {view.site.site_id: view for view in noc.collector.site_views()}
    for site in noc.by_state("reporting"):
        row = cells(page.row(site.site_id).cells)
        latest = views[site.site_id].latest
        assert row["site"] == f"{site.site_name} {site.site_id}"
        assert row["district"] == site.district.district
        assert row["last_push"] == "hace 0 s"
        assert row["link"] == ("arriba" if site.link_up else "caído")
        rtt_ms = latest.rtt_seconds["pop"] * 1000
        assert row["latency"] == f"{rtt_ms:.0f} ms"
        assert 0.5 * site.rtt * 1000 < rtt_ms < 2 * site.rtt * 1000
        assert row["loss"] == f"{latest.loss_ratio['pop'] * 100:.1f} %"
        assert row["wifi"] == str(latest.wifi_clients)
        assert row["power"] == ("¿corte de energía?" if site.power_cut else "")
        if site.institution_code:
            assert row["institution"].endswith(site.institution_code)
    for site in noc.by_state("never_seen"):
        row = cells(page.row(site.site_id).cells)
        assert (row["last_push"], row["link"], row["latency"], row["wifi"]) == (
            "nunca",
            "—",
            "—",
            "—",
        )
    for site in noc.by_state("silent"):
        assert cells(page.row(site.site_id).cells)["last_push"] == "hace 15 min"


async def test_satellite_sites_show_their_long_latency(noc: WebNoc) -> None:
    page = parse_page((await noc.get("/?q=&type=", SPANISH))[1])
    satellites = [s for s in noc.by_state("reporting") if s.access_tech == "satellite"]
    assert satellites
    for site in satellites:
        latency = cells(page.row(site.site_id).cells)["latency"]
        assert 450 <= int(latency.removesuffix(" ms")) <= 1200


def listed(text: str) -> set[str]:
    return set(parse_page(text).site_ids())


def ids(sites: list[FleetSite]) -> set[str]:
    return {site.site_id for site in sites}


@pytest.mark.parametrize(
    ("query", "keep"),
    [
        ("state=silent", lambda s: s.state == "silent"),
        ("state=never_seen&state=silent", lambda s: s.state != "reporting"),
        ("project=junin", lambda s: s.project == "junin"),
        ("region=Hu%C3%A1nuco", lambda s: s.district.department == "Huánuco"),
        ("region=HUANUCO", lambda s: s.district.department == "Huánuco"),
        ("type=health", lambda s: s.institution_type == "health"),
        (
            "project=cusco&type=school&state=reporting",
            lambda s: (
                s.project == "cusco" and s.institution_type == "school" and s.state == "reporting"
            ),
        ),
        ("state=&project=&region=&type=&q=", lambda s: True),
    ],
)
async def test_filters_narrow_the_list(noc: WebNoc, query: str, keep: object) -> None:
    assert callable(keep)
    status, text, _ = await noc.get(f"/?{query}")
    assert status == 200
    expected = {site.site_id for site in noc.sites if keep(site)}
    assert expected, "the filter must keep some sites"
    assert listed(text) == expected
    page = parse_page(text)
    # The map shows the same sites.
    placed = {dot.site_id for dot in page.dots}
    assert placed <= expected
    assert {s.site_id for s in noc.sites if s.latitude is not None} & expected == placed


async def test_search_ignores_accents_and_case(noc: WebNoc) -> None:
    accented = next(s for s in noc.sites if fold(s.site_name) != s.site_name.lower())
    word = next(w for w in accented.site_name.split() if fold(w) != w.lower())
    plain = fold(word).upper()  # "MONZON" for "Monzón"
    expected = {s.site_id for s in noc.sites if fold(word) in fold(s.site_name)}
    assert listed((await noc.get(f"/?q={plain}"))[1]) == expected
    assert listed((await noc.get(f"/?q={word}"))[1]) == expected
    school = next(s for s in noc.sites if s.institution_code)
    assert listed((await noc.get(f"/?q={school.institution_code}"))[1]) == {school.site_id}
    site = noc.sites[5]
    assert site.site_id in listed((await noc.get(f"/?q={site.site_id.upper()}"))[1])
    ubigeo = site.district.ubigeo
    assert listed((await noc.get(f"/?q={ubigeo}"))[1]) == {
        s.site_id for s in noc.sites if s.district.ubigeo == ubigeo
    }
    status, text, _ = await noc.get("/?q=zzzz-nothing", ENGLISH)
    assert status == 200
    assert listed(text) == set()
    assert "No site matches these filters." in parse_page(text).text


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("state=sleeping", ["sleeping", "state", "reporting, silent, never_seen"]),
        ("project=lima", ["lima", "project", "cusco, huanuco, junin"]),
        ("region=Atlantis", ["Atlantis", "region"]),
        ("type=bank", ["bank", "type", "school"]),
        ("lang=fr", ["fr", "lang", "es, en"]),
        ("stat=silent", ["stat", "Known parameters"]),
        ("q=" + "x" * 101, ["100 characters"]),
    ],
)
async def test_unknown_filter_values_are_400_with_the_reason(
    noc: WebNoc, query: str, words: list[str]
) -> None:
    status, text, headers = await noc.get(f"/?{query}", ENGLISH)
    assert status == 400
    assert headers["Content-Type"].startswith("text/html")
    shown = parse_page(text).text
    for word in words:
        assert word in shown


async def test_the_site_page_shows_inventory_latest_values_and_sparklines(noc: WebNoc) -> None:
    site = next(s for s in noc.by_state("reporting") if s.institution_code and s.link_up)
    status, text, _ = await noc.get(f"/sites/{site.site_id}", ENGLISH)
    assert status == 200
    page = parse_page(text)
    shown = page.text
    for value in (
        site.site_id,
        site.site_name,
        site.project,
        site.district.department,
        site.district.province,
        site.district.district,
        site.district.ubigeo,
        site.institution_code,
        f"nodo-{site.project}-{site.district.ubigeo[2:4]}",
        "Latest values",
        "Last 24 hours",
        "0 s ago",
    ):
        assert value in shown, value
    # RTT, loss, link up share and WiFi clients, in that order.
    assert len(page.paths) == 4
    for path in page.paths[:2]:
        assert_a_day_with_a_gap(path)


def assert_a_day_with_a_gap(path: str) -> None:
    """A sparkline of the fleet's history: 264 of 288 steps, split by the gap."""
    moves = re.findall(r"([ML])(\d+) ", path)
    assert [kind for kind, _ in moves].count("M") == 2, path
    steps = [int(step) for _, step in moves]
    # The history's first step holds no increase of a counter yet: 263 points, then
    # the live one.
    assert len(steps) >= 250, path
    assert steps == sorted(steps)
    restart = steps[[kind for kind, _ in moves].index("M", 1)]
    assert restart - steps[steps.index(restart) - 1] > 20  # two hours: 24 steps


async def test_gauge_sparklines_hold_the_pushed_day(noc: WebNoc) -> None:
    site = next(s for s in noc.by_state("reporting") if s.link_up)
    page = parse_page((await noc.get(f"/sites/{site.site_id}", ENGLISH))[1])
    for path in page.paths[2:]:
        assert_a_day_with_a_gap(path)


async def test_a_never_seen_site_has_a_page_without_history(noc: WebNoc) -> None:
    site = noc.by_state("never_seen")[0]
    status, text, _ = await noc.get(f"/sites/{site.site_id}", ENGLISH)
    assert status == 200
    page = parse_page(text)
    assert page.paths == []
    assert "This site has never pushed." in page.text


@pytest.mark.parametrize(
    "path",
    [
        "/sites/jun-9999",
        "/sites/JUN-0001",
        "/sites/-jun",
        "/sites/jun%200001",
        "/sites/%C3%B1",
        "/sites/" + "a" * 300,
    ],
)
async def test_an_unknown_or_malformed_site_is_404(noc: WebNoc, path: str) -> None:
    status, text, _ = await noc.get(path, ENGLISH)
    assert status == 404
    assert "No such site" in parse_page(text).text


async def test_the_map_places_sites_by_coordinates_and_lists_the_rest(noc: WebNoc) -> None:
    page = parse_page((await noc.get("/", ENGLISH))[1])
    placed = {s.site_id: s for s in noc.sites if s.latitude is not None}
    assert {dot.site_id for dot in page.dots} == set(placed)
    for dot in page.dots:
        assert dot.state == placed[dot.site_id].state
    unplaced = [s for s in noc.sites if s.latitude is None]
    assert unplaced
    links = {href.split("?")[0] for _, href in page.links}
    for site in unplaced:
        assert f"/sites/{site.site_id}" in links


async def test_the_language_follows_the_browser_then_the_switch(noc: WebNoc) -> None:
    spanish = parse_page((await noc.get("/", SPANISH))[1])
    english = parse_page((await noc.get("/", ENGLISH))[1])
    assert (spanish.html_lang, english.html_lang) == ("es", "en")
    assert (await noc.get("/", ENGLISH))[2]["Content-Language"] == "en"
    for es, en in (
        ("Buscar", "Search"),
        ("Mapa", "Map"),
        ("Último envío", "Last push"),
        ("Clientes WiFi", "WiFi clients"),
        ("reportando", "reporting"),
        ("nunca visto", "never seen"),
    ):
        assert es in spanish.text
        assert es not in english.text.replace("Español", "")
        assert en in english.text
    # No Accept-Language: Spanish, Peru's language.
    assert parse_page((await noc.get("/"))[1]).html_lang == "es"
    # The switch: a link to the same view in the other language, keeping the filters.
    filtered = parse_page((await noc.get("/?project=junin&state=silent", SPANISH))[1])
    switch = filtered.link("English")
    assert parse_qs(urlsplit(switch).query) == {
        "project": ["junin"],
        "state": ["silent"],
        "lang": ["en"],
    }
    chosen = parse_page((await noc.get(switch, SPANISH))[1])
    assert chosen.html_lang == "en"
    assert listed((await noc.get(switch, SPANISH))[1]) == {
        s.site_id for s in noc.sites if s.project == "junin" and s.state == "silent"
    }
    # Once chosen, the language stays on every link of the page.
    for _, href in chosen.links:
        if href.startswith("/") and not href.startswith(("/api", "/metrics")):
            assert "lang=" in href, href


async def test_the_page_reloads_itself_keeping_its_filters(noc: WebNoc) -> None:
    status, text, _ = await noc.get("/?state=silent")
    assert status == 200
    page = parse_page(text)
    # Without JavaScript: a meta refresh of the same address (filters included).
    assert page.meta_refresh == "30"
    assert "location.reload()" in text


async def test_the_page_is_compressed_for_clients_that_accept_it(noc: WebNoc) -> None:
    response = await noc.client.get("/", headers={"Accept-Encoding": "gzip, deflate, br"})
    assert response.status == 200
    assert response.headers["Content-Encoding"] == "gzip"
    assert response.headers["Cache-Control"] == "no-store"
    assert float(response.headers["Server-Timing"].split("dur=")[1]) > 0
    await response.read()
    plain = await noc.client.get("/", headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in plain.headers


async def test_the_other_endpoints_are_unchanged(noc: WebNoc) -> None:
    status, text, _ = await noc.get("/healthz")
    assert status == 200
    assert '"reporting"' in text
    assert (await noc.get("/metrics"))[0] == 200


@pytest.mark.parametrize(
    "path",
    [
        "/?q=%00",
        "/?q=%FF%FE",
        "/?q=%3Cscript%3Ealert(1)%3C/script%3E",
        "/?q='%20OR%201=1--",
        "/?state=%00",
        "/?lang=",
        "/?lang=en&lang=xx",
        "/?region=",
        "/?project=junin&project=",
        "/sites/%00",
        "/sites/jun-0001?lang=xx",
        "/sites/jun-0001?state=silent",
        "/sites/jun-0001/",
        "/sites/",
        "/api/v1/sites?q=%FF",
        "/api/v1/sites/jun-0001?x=1",
        "/api/v1/rollups?region=%00",
    ],
)
async def test_odd_requests_are_answered_without_a_server_error(noc: WebNoc, path: str) -> None:
    status, text, _ = await noc.get(path, ENGLISH)  # get() fails on any 5xx
    assert status in (200, 400, 404)
    assert "<script>alert" not in text


async def test_what_is_typed_comes_back_escaped(noc: WebNoc) -> None:
    status, text, _ = await noc.get("/?q=%3Cb%3Ex%22%3C/b%3E", ENGLISH)
    assert status == 200
    assert "&lt;b&gt;x&#34;&lt;/b&gt;" in text
    assert "<b>x" not in text
