"""The speed-test endpoints on loopback: token, size cap, rate limit, bytes counted."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from collector.app import Collector, make_app
from collector.auth import TokenStore
from collector.config import load_config
from collector.speedtest import SPEEDTEST, SpeedTestLimits
from tests.collector.test_app import SITES, config_text
from tests.metrics_util import Scrape, parse

Client = TestClient[web.Request, web.Application]
DOWN = "/api/v1/speedtest/download"
UP = "/api/v1/speedtest/upload"


@dataclass
class Bench:
    client: Client
    app: web.Application
    token: str

    def auth(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"}

    async def scrape(self) -> Scrape:
        response = await self.client.get("/metrics")
        return parse(await response.text())


@pytest.fixture
async def bench(aiohttp_client: AiohttpClient, tmp_path: Path) -> Bench:
    (tmp_path / "sites.yaml").write_text(SITES)
    path = tmp_path / "collector.yaml"
    path.write_text(config_text(tmp_path))
    config = await asyncio.to_thread(load_config, path)
    token = await asyncio.to_thread(TokenStore(config.state_dir).issue, "jun-0001")
    app = make_app(Collector(config, path))
    client = await aiohttp_client(app)
    return Bench(client, app, token)


async def test_a_token_is_required(bench: Bench) -> None:
    for headers in ({}, bench.auth("kipu_guess")):
        response = await bench.client.get(f"{DOWN}?bytes=10", headers=headers)
        assert response.status == 401
        response = await bench.client.post(UP, data=b"x" * 10, headers=headers)
        assert response.status == 401
    scrape = await bench.scrape()
    assert scrape.value("kipu_collector_speedtest_bytes_total", direction="download") == 0


async def test_download_and_upload_are_counted_per_site(bench: Bench) -> None:
    response = await bench.client.get(f"{DOWN}?bytes=200000", headers=bench.auth())
    assert response.status == 200
    assert "Content-Encoding" not in response.headers
    body = await response.read()
    assert len(body) == 200_000
    assert len(set(body[:65536])) > 200  # random bytes, not a compressible pattern
    response = await bench.client.post(UP, data=b"\0" * 300_000, headers=bench.auth())
    assert response.status == 200
    answer = await response.json()
    assert answer["bytes"] == 300_000
    assert answer["timeline"][-1][1] == 300_000
    scrape = await bench.scrape()
    assert scrape.value("kipu_collector_speedtest_bytes_total", direction="download") == 200_000
    assert scrape.value("kipu_collector_speedtest_bytes_total", direction="upload") == 300_000
    site_bytes = "kipu_collector_speedtest_site_bytes_total"
    assert scrape.value(site_bytes, site_id="jun-0001", direction="download") == 200_000
    assert scrape.value(site_bytes, site_id="jun-0001", direction="upload") == 300_000


async def test_the_size_is_capped(bench: Bench) -> None:
    bench.app[SPEEDTEST].limits = SpeedTestLimits(max_bytes=1000)
    for query in ("bytes=1001", "bytes=0", "bytes=lots", ""):
        response = await bench.client.get(f"{DOWN}?{query}", headers=bench.auth())
        assert response.status == 400, query
    response = await bench.client.post(UP, data=b"x" * 1001, headers=bench.auth())
    assert response.status == 400
    response = await bench.client.get(f"{DOWN}?bytes=1000", headers=bench.auth())
    assert response.status == 200


async def test_a_site_is_rate_limited(bench: Bench) -> None:
    bench.app[SPEEDTEST].limits = SpeedTestLimits(max_bytes_per_hour=250_000)
    response = await bench.client.get(f"{DOWN}?bytes=200000", headers=bench.auth())
    assert response.status == 200
    await response.read()
    response = await bench.client.post(UP, data=b"x" * 100_000, headers=bench.auth())
    assert response.status == 429
    assert 1 <= int(response.headers["Retry-After"]) <= 3600
    response = await bench.client.get(f"{DOWN}?bytes=50000", headers=bench.auth())
    assert response.status == 200
    await response.read()
    scrape = await bench.scrape()
    assert scrape.value("kipu_collector_speedtest_bytes_total", direction="download") == 250_000
    assert scrape.value("kipu_collector_speedtest_bytes_total", direction="upload") == 0


async def test_streams_at_once_are_limited(bench: Bench) -> None:
    bench.app[SPEEDTEST].limits = SpeedTestLimits(max_streams=2)
    opened = [
        await bench.client.get(f"{DOWN}?bytes=50000000", headers=bench.auth()) for _ in range(2)
    ]
    assert all(r.status == 200 for r in opened)
    response = await bench.client.get(f"{DOWN}?bytes=10", headers=bench.auth())
    assert response.status == 429
    assert "Retry-After" in response.headers
    for r in opened:
        r.close()


async def test_site_info_carries_the_contracted_speeds(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    # What KipuSiteSlowerThanContracted compares the agent's readings with.
    (tmp_path / "sites.yaml").write_text(
        SITES.replace("access_tech: microwave}", "access_tech: microwave,\n"
                      "         contracted_down_mbps: 12, contracted_up_mbps: 4.5}")
    )  # fmt: skip
    path = tmp_path / "collector.yaml"
    path.write_text(config_text(tmp_path))
    config = await asyncio.to_thread(load_config, path)
    client = await aiohttp_client(make_app(Collector(config, path)))
    scrape = parse(await (await client.get("/metrics")).text())
    info = {
        dict(labels)["site_id"]: dict(labels)
        for name, labels in scrape.samples
        if name == "kipu_site_info"
    }
    assert float(info["jun-0001"]["contracted_down_mbps"]) == 12
    assert float(info["jun-0001"]["contracted_up_mbps"]) == 4.5
    assert info["jun-0002"]["contracted_down_mbps"] == ""
    # ... and as a number, which PromQL can compare (it cannot read a label's value).
    contracted = "kipu_site_contracted_bits_per_second"
    site = {"site_id": "jun-0001", "project": "junin", "region": "Junín"}
    assert scrape.value(contracted, **site, direction="download") == 12e6
    assert scrape.value(contracted, **site, direction="upload") == 4.5e6
    assert scrape.label_values(contracted, "site_id") == {"jun-0001"}
