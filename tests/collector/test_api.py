"""The read API on loopback, fed by 60 simulated sites: the site objects and their
fields, the filters the page has, a site's history, the rollups."""

from __future__ import annotations

import asyncio
import datetime
import json
from pathlib import Path

import pytest
from pytest_aiohttp import AiohttpClient

from collector.rollup import rollups
from tests.collector.test_web_fleet import (
    GAP_STEPS,
    SILENT_FOR,
    WebNoc,
    fleet,
    start_web_noc,
)

SITE_FIELDS = {
    # DESIGN §2 and §4, by name
    "site_id",
    "site_name",
    "project",
    "region",
    "province",
    "district",
    "ubigeo",
    "institution_type",
    "institution_code",
    "upstream_node",
    "access_tech",
    "latitude",
    "longitude",
    "in_service_since",
    "contracted_down_mbps",
    "contracted_up_mbps",
    # and what the collector knows of the site
    "state",
    "last_push",
    "latest",
}
LATEST_FIELDS = {
    "link_up",
    "power_cut",
    "rtt_seconds",
    "loss_ratio",
    "wifi_clients",
    "traffic_bps",
    "updated",
}


@pytest.fixture
async def noc(aiohttp_client: AiohttpClient, tmp_path: Path) -> WebNoc:
    sites = await asyncio.to_thread(fleet, 60)
    return await start_web_noc(aiohttp_client, tmp_path, sites)


async def get_json(noc: WebNoc, path: str, status: int = 200) -> dict[str, object]:
    got, text, headers = await noc.get(path)
    assert got == status, text
    assert headers["Content-Type"].startswith("application/json")
    document = json.loads(text)
    assert isinstance(document, dict)
    return document


def sites_of(document: dict[str, object]) -> list[dict[str, object]]:
    sites = document["sites"]
    assert isinstance(sites, list)
    return sites


def moment(text: object) -> datetime.datetime:
    assert isinstance(text, str)
    assert text.endswith("Z")
    return datetime.datetime.fromisoformat(text)


async def test_every_site_with_its_inventory_fields_state_and_latest_values(
    noc: WebNoc,
) -> None:
    document = await get_json(noc, "/api/v1/sites")
    sites = {str(site["site_id"]): site for site in sites_of(document)}
    assert set(sites) == {site.site_id for site in noc.sites}
    views = {view.site.site_id: view for view in noc.collector.site_views()}
    for planned in noc.sites:
        found = sites[planned.site_id]
        assert set(found) == SITE_FIELDS
        site = views[planned.site_id].site
        for name in SITE_FIELDS - {"state", "last_push", "latest", "in_service_since"}:
            assert found[name] == getattr(site, name), name
        assert found["state"] == planned.state
        latest = found["latest"]
        assert isinstance(latest, dict)
        assert set(latest) == LATEST_FIELDS
        if planned.state == "never_seen":
            assert found["last_push"] is None
            assert latest["link_up"] is None
            continue
        pushed = moment(found["last_push"]).timestamp()
        expected = noc.clock.now - (SILENT_FOR if planned.state == "silent" else 0)
        assert abs(pushed - expected) < 1
        assert latest["link_up"] is planned.link_up
        assert latest["power_cut"] is planned.power_cut
        rtt = latest["rtt_seconds"]
        assert isinstance(rtt, dict)
        assert set(rtt) == {"pop", "internet"}
        assert rtt["pop"] == pytest.approx(views[planned.site_id].latest.rtt_seconds["pop"])
    assert document["counts"] == {
        state: sum(1 for s in noc.sites if s.state == state)
        for state in ("reporting", "silent", "never_seen")
    }


async def test_the_filters_of_the_page_narrow_the_list(noc: WebNoc) -> None:
    async def listed(query: str) -> set[str]:
        return {str(s["site_id"]) for s in sites_of(await get_json(noc, f"/api/v1/sites?{query}"))}

    assert await listed("state=silent") == {s.site_id for s in noc.by_state("silent")}
    assert await listed("project=huanuco&type=school") == {
        s.site_id for s in noc.sites if s.project == "huanuco" and s.institution_type == "school"
    }
    assert await listed("region=cusco") == {s.site_id for s in noc.sites if s.project == "cusco"}
    accented = next(s for s in noc.sites if "ñ" in s.site_name.lower() or "á" in s.site_name)
    word = next(w for w in accented.site_name.split() if not w.isascii())
    plain = word.translate(str.maketrans("ñÑáéíóúÁÉÍÓÚ", "nNaeiouAEIOU")).lower()
    assert accented.site_id in await listed(f"q={plain}")


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("state=sleeping", ["state", "sleeping", "reporting"]),
        ("project=lima", ["project", "lima"]),
        ("region=Atlantis", ["region", "Atlantis"]),
        ("type=bank", ["type", "bank"]),
        ("lang=es", ["unknown parameter", "lang"]),
        ("q=" + "x" * 101, ["100"]),
    ],
)
async def test_unknown_filter_values_are_400_with_the_reason(
    noc: WebNoc, query: str, words: list[str]
) -> None:
    document = await get_json(noc, f"/api/v1/sites?{query}", 400)
    for word in words:
        assert word in str(document["error"])


async def test_a_site_with_its_history(noc: WebNoc) -> None:
    planned = noc.by_state("reporting")[0]
    found = await get_json(noc, f"/api/v1/sites/{planned.site_id}")
    assert set(found) == SITE_FIELDS | {"history"}
    history = found["history"]
    assert isinstance(history, dict)
    assert history["step_seconds"] == 300
    rtt = history["rtt_seconds"]
    assert isinstance(rtt, list)
    assert len(rtt) == 288
    end = moment(history["end"]).timestamp()
    assert end - 300 <= noc.clock.now < end
    assert moment(history["start"]).timestamp() == end - 288 * 300
    # The pushed day: RTT in every step but the two-hour gap (and the history's first
    # step, which has no increase yet).
    known = [index for index, value in enumerate(rtt) if value is not None]
    assert len(known) >= 288 - len(GAP_STEPS) - 2
    gap = [index for index in range(known[0], known[-1]) if rtt[index] is None]
    assert len(gap) >= len(GAP_STEPS) - 1
    never = noc.by_state("never_seen")[0]
    assert (await get_json(noc, f"/api/v1/sites/{never.site_id}"))["history"] is None


@pytest.mark.parametrize("site_id", ["jun-9999", "JUN-0001", "-x", "a%20b", "%C3%B1"])
async def test_an_unknown_or_malformed_site_is_404(noc: WebNoc, site_id: str) -> None:
    document = await get_json(noc, f"/api/v1/sites/{site_id}", 404)
    assert "no site" in str(document["error"])


async def test_rollups_are_the_collector_s(noc: WebNoc) -> None:
    document = await get_json(noc, "/api/v1/rollups")
    rows = document["rollups"]
    assert isinstance(rows, list)
    expected = rollups(noc.collector.site_views())
    assert len(rows) == len(expected)
    for row, rollup in zip(rows, expected, strict=True):
        key = rollup.key
        assert (row["project"], row["region"], row["province"], row["institution_type"]) == (
            key.project,
            key.region,
            key.province,
            key.institution_type,
        )
        assert row["sites"] == rollup.sites
        assert row["link_down_sites"] == rollup.link_down_sites
        assert row["wifi_clients"] == rollup.wifi_clients
        assert row["rtt_seconds"] == rollup.rtt_seconds  # JSON keeps a float exactly
    total = sum(sum(row["sites"].values()) for row in rows)
    assert total == len(noc.sites)
    junin = await get_json(noc, "/api/v1/rollups?project=junin&type=school")
    rows = junin["rollups"]
    assert isinstance(rows, list)
    assert rows
    assert {(r["project"], r["institution_type"]) for r in rows} == {("junin", "school")}
    await get_json(noc, "/api/v1/rollups?state=silent", 400)


async def test_answers_are_compressed_when_asked(noc: WebNoc) -> None:
    response = await noc.client.get("/api/v1/sites", headers={"Accept-Encoding": "gzip"})
    assert response.headers["Content-Encoding"] == "gzip"
    assert len(sites_of(await response.json())) == 60
