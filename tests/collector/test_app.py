"""The collector's HTTP API on loopback: every answer of the write endpoint, identity,
liveness, reload, and forwarding into a loopback receiver."""

from __future__ import annotations

import asyncio
import os
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import cramjam
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from collector.app import Collector, make_app
from collector.auth import TokenStore
from collector.config import load_config
from collector.pressure import Pressure
from kipu.remote_write.codec import Sample, Series, encode, normalise_labels
from tests.kipu.test_remote_write import pb_series, snappy_literal
from tests.metrics_util import Scrape, eventually, parse
from tests.support.receiver import Receiver

Client = TestClient[web.Request, web.Application]

SITES = textwrap.dedent(
    """\
    sites:
      - {site_id: jun-0001, site_name: IE 30012, project: junin, ubigeo: "120206",
         institution_type: school, upstream_node: nodo-concepcion, access_tech: microwave}
      - {site_id: jun-0002, site_name: PS Comas, project: junin, ubigeo: "120206",
         institution_type: health, upstream_node: nodo-concepcion, access_tech: 4g}
      - {site_id: hco-0007, site_name: PS Monzón, project: huanuco, ubigeo: "100507",
         institution_type: health, upstream_node: nodo-tingo, access_tech: satellite}
    """
)


@dataclass
class Noc:
    collector: Collector
    client: Client
    tokens: dict[str, str]
    dir: Path

    async def push(
        self, site: str | None, body: bytes, headers: dict[str, str] | None = None
    ) -> tuple[int, str, dict[str, str]]:
        sent = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf"}
        if site is not None:
            sent["Authorization"] = f"Bearer {self.tokens[site]}"
        sent.update(headers or {})
        response = await self.client.post("/api/v1/write", data=body, headers=sent)
        return response.status, await response.text(), dict(response.headers)

    async def scrape(self) -> Scrape:
        response = await self.client.get("/metrics")
        assert response.status == 200
        return parse(await response.text())


def config_text(tmp_path: Path, extra: str = "") -> str:
    return f"inventory: sites.yaml\nstate_dir: state\nsilent_after: 1s\n{extra}"


@pytest.fixture
async def noc_factory(aiohttp_client: AiohttpClient, tmp_path: Path) -> Callable[..., object]:
    async def make(
        extra: str = "", sites: str = SITES, holders: tuple[str, ...] = ("jun-0001", "hco-0007")
    ) -> Noc:
        (tmp_path / "sites.yaml").write_text(sites)
        path = tmp_path / "collector.yaml"
        path.write_text(config_text(tmp_path, extra))
        config = await asyncio.to_thread(load_config, path)
        store = TokenStore(config.state_dir)
        tokens = {s: await asyncio.to_thread(store.issue, s) for s in holders}
        tokens["ghost-0001"] = await asyncio.to_thread(store.issue, "ghost-0001")
        collector = Collector(config, path)
        client = await aiohttp_client(make_app(collector))
        return Noc(collector, client, tokens, tmp_path)

    return make


def body_of(series: dict[Series, list[Sample]]) -> bytes:
    return encode(series)


def now_ms() -> int:
    return int(time.time() * 1000)


def agent_push(**extra: str) -> bytes:
    stamp = now_ms()
    return body_of(
        {
            normalise_labels({"__name__": "kipu_link_up", **extra}): [(stamp, 1.0)],
            normalise_labels({"__name__": "kipu_probe_success", "target": "gw", **extra}): [
                (stamp, 1.0)
            ],
        }
    )


async def test_a_push_is_accepted_and_the_site_reports(noc_factory: Callable[..., object]) -> None:
    noc: Noc = await noc_factory()  # type: ignore[misc]
    status, _, _ = await noc.push("jun-0001", agent_push())
    assert status == 204
    scrape = await noc.scrape()
    assert scrape.value("kipu_collector_samples_received_total", project="junin") == 2
    ids = {"site_id": "jun-0001", "project": "junin", "region": "Junín"}
    assert scrape.value("kipu_site_reporting", **ids) == 1
    assert scrape.value("kipu_site_last_push_timestamp_seconds", **ids) > time.time() - 10
    assert (
        scrape.value(
            "kipu_sites",
            project="junin",
            region="Junín",
            institution_type="school",
            state="reporting",
        )
        == 1
    )
    assert (
        scrape.value(
            "kipu_sites",
            project="junin",
            region="Junín",
            institution_type="health",
            state="never_seen",
        )
        == 1
    )
    info = scrape.label_values("kipu_site_info", "site_id")
    assert info == {"jun-0001", "jun-0002", "hco-0007"}
    # silent_after is 1 s here.
    await eventually(lambda: _state_is(noc, "jun-0001", "silent"), within=5)


async def _state_is(noc: Noc, site: str, state: str) -> bool:
    return noc.collector.liveness.state(site, time.time()) == state


@pytest.mark.parametrize(
    ("headers", "token", "status", "reason"),
    [
        ({}, None, 401, "unauthorized"),
        ({"Authorization": "Bearer kipu_nothing"}, None, 401, "unauthorized"),
        ({"Authorization": "Basic YW5hOnB3"}, None, 401, "unauthorized"),
        ({}, "ghost-0001", 401, "site_not_in_inventory"),
        ({"Content-Encoding": "gzip"}, "jun-0001", 415, "encoding"),
    ],
)
async def test_refusals_are_4xx_and_counted(
    noc_factory: Callable[..., object],
    headers: dict[str, str],
    token: str | None,
    status: int,
    reason: str,
) -> None:
    noc: Noc = await noc_factory()  # type: ignore[misc]
    got, _, _ = await noc.push(token, agent_push(), headers)
    assert got == status
    scrape = await noc.scrape()
    assert scrape.value("kipu_collector_requests_rejected_total", reason=reason) == 1


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "snappy: empty body"),
        (b"not snappy at all", "snappy"),
        (bytes(cramjam.snappy.compress_raw(b"\xff\xff\xff")), "protobuf"),
        (snappy_literal(pb_series([("job", "x")], [(1.0, 1)])), "no __name__"),
    ],
)
async def test_undecodable_bodies_are_400_with_the_reason(
    noc_factory: Callable[..., object], body: bytes, reason: str
) -> None:
    noc: Noc = await noc_factory()  # type: ignore[misc]
    status, text, _ = await noc.push("jun-0001", body)
    assert status == 400
    assert reason in text


async def test_too_large_is_413_before_reading(noc_factory: Callable[..., object]) -> None:
    noc: Noc = await noc_factory("limits: {max_body: 64KiB}\n")  # type: ignore[misc]
    big = b"\x00" * (65 * 1024)
    status, _, _ = await noc.push("jun-0001", big)
    assert status == 413

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: read until the limit
        for _ in range(100):
            yield b"\x00" * 4096

    response = await noc.client.post(
        "/api/v1/write",
        data=chunks(),
        headers={"Authorization": f"Bearer {noc.tokens['jun-0001']}"},
    )
    assert response.status == 413


async def test_metadata_only_is_accepted_and_ignored(noc_factory: Callable[..., object]) -> None:
    noc: Noc = await noc_factory()  # type: ignore[misc]
    # WriteRequest field 3 (metadata): type 1, family "up", help "x". Remote write 1.0
    # receivers skip it; Prometheus sends such requests.
    metadata = b"\x1a\x0b\x08\x01\x12\x02up\x22\x01x\x2a\x00"
    status, _, _ = await noc.push("jun-0001", bytes(cramjam.snappy.compress_raw(metadata)))
    assert status == 204
    assert (await noc.scrape()).get(
        "kipu_collector_samples_received_total", project="junin"
    ) is None


async def test_the_series_limit_is_429_with_retry_after(
    noc_factory: Callable[..., object],
) -> None:
    noc: Noc = await noc_factory("limits: {max_series_per_site: 3}\n")  # type: ignore[misc]
    stamp = now_ms()
    many = body_of({normalise_labels({"__name__": f"m{i}"}): [(stamp, 1.0)] for i in range(4)})
    status, text, headers = await noc.push("jun-0001", many)
    assert status == 429
    assert "limit is 3 series" in text
    assert int(headers["Retry-After"]) > 0


async def test_a_revoked_token_is_refused_without_a_restart(
    noc_factory: Callable[..., object],
) -> None:
    noc: Noc = await noc_factory()  # type: ignore[misc]
    assert (await noc.push("jun-0001", agent_push()))[0] == 204
    store = TokenStore(noc.collector.config.state_dir)
    await asyncio.to_thread(store.revoke, "jun-0001")

    async def refused() -> bool:
        return (await noc.push("jun-0001", agent_push()))[0] == 401

    await eventually(refused, within=5)
    new = await asyncio.to_thread(store.issue, "jun-0001")
    noc.tokens["jun-0001"] = new

    async def accepted() -> bool:
        return (await noc.push("jun-0001", agent_push()))[0] == 204

    await eventually(accepted, within=5)


async def test_spoofed_identity_is_overwritten_on_the_way_to_the_store(
    noc_factory: Callable[..., object],
) -> None:
    with Receiver() as receiver:
        noc: Noc = await noc_factory(  # type: ignore[misc]
            f"forward: {{url: '{receiver.url}', max_queue: 1MiB}}\n"
        )
        body = agent_push(site_id="jun-0002", project="huanuco", region="Lima")
        assert (await noc.push("jun-0001", body))[0] == 204

        async def forwarded() -> bool:
            return len(receiver.samples) == 2

        await eventually(forwarded, within=10)
    for labels, _, _ in receiver.samples:
        found = dict(labels)
        assert (found["site_id"], found["project"], found["region"]) == (
            "jun-0001",
            "junin",
            "Junín",
        )


async def test_a_full_queue_is_503_and_loses_nothing_acknowledged(
    noc_factory: Callable[..., object],
) -> None:
    receiver = Receiver().start()
    port = receiver.port
    receiver.stop()  # the store is down
    try:
        noc: Noc = await noc_factory(  # type: ignore[misc]
            f"forward: {{url: 'http://127.0.0.1:{port}/api/v1/write', max_queue: 1MiB}}\n"
            "limits: {max_series_per_site: 1000000}\n"
        )
        stamp = now_ms()
        acknowledged = 0
        status = 204
        for batch in range(400):  # bounded: 1 MiB fills well before
            body = body_of(
                {
                    normalise_labels({"__name__": "kipu_test", "n": str(batch * 1000 + i)}): [
                        (stamp, float(i))
                    ]
                    for i in range(1000)
                }
            )
            status, _, headers = await noc.push("jun-0001", body)
            if status != 204:
                break
            acknowledged += 1000
        assert status == 503
        assert int(headers["Retry-After"]) > 0
        forwarder = noc.collector.forwarder
        assert forwarder is not None
        assert forwarder.spool.samples == acknowledged
        scrape = await noc.scrape()
        assert scrape.value("kipu_collector_requests_rejected_total", reason="queue_full") == 1
        assert scrape.value("kipu_collector_forward_queue_bytes") <= 1024**2
        receiver.start(port)  # the store returns: everything acknowledged arrives

        async def drained() -> bool:
            return len(receiver.samples) == acknowledged

        await eventually(drained, within=30)
    finally:
        receiver.__exit__(None, None, None)


async def test_reload_takes_a_new_inventory_and_refuses_a_bad_one(
    noc_factory: Callable[..., object],
) -> None:
    noc: Noc = await noc_factory()  # type: ignore[misc]
    assert (await noc.push("hco-0007", agent_push()))[0] == 204
    without_hco = "\n".join(SITES.splitlines()[:5]) + "\n"
    (noc.dir / "sites.yaml").write_text(without_hco)
    response = await noc.client.post("/-/reload")
    assert response.status == 200
    status, text, _ = await noc.push("hco-0007", agent_push())
    assert (status, text.strip()) == (401, "site hco-0007 is not in the inventory")
    (noc.dir / "sites.yaml").write_text(without_hco.replace("120206", "999999"))
    response = await noc.client.post("/-/reload")
    assert response.status == 400
    assert "no department 99" in await response.text()
    assert (await noc.push("jun-0001", agent_push()))[0] == 204  # the old one stays


async def test_last_pushes_survive_a_restart(
    aiohttp_client: AiohttpClient, noc_factory: Callable[..., object]
) -> None:
    noc: Noc = await noc_factory()  # type: ignore[misc]
    assert (await noc.push("jun-0001", agent_push()))[0] == 204
    pushed_at = noc.collector.liveness.last_push["jun-0001"]
    await noc.client.close()  # a clean stop
    again = Collector(noc.collector.config, noc.collector.config_path)
    client = await aiohttp_client(make_app(again))
    scrape = parse(await (await client.get("/metrics")).text())
    ids = {"site_id": "jun-0001", "project": "junin", "region": "Junín"}
    assert scrape.value("kipu_site_last_push_timestamp_seconds", **ids) == pushed_at
    assert again.liveness.state("jun-0002", time.time()) == "never_seen"


async def test_a_busy_collector_puts_backlog_off_and_serves_live(
    noc_factory: Callable[..., object],
) -> None:
    noc: Noc = await noc_factory()  # type: ignore[misc]
    noc.collector.pressure.lag = 1.0  # the loop wakes a second late: far too busy
    status, text, headers = await noc.push("jun-0001", agent_push(), {"X-Kipu-Backlog": "1"})
    assert status == 429
    assert "live pushes first" in text
    assert 2 <= int(headers["Retry-After"]) <= 10
    big = body_of(
        {
            normalise_labels({"__name__": "m", "n": os.urandom(16).hex()}): [(now_ms(), 1.0)]
            for _ in range(2500)
        }
    )
    assert len(big) > 64 * 1024
    assert (await noc.push("jun-0001", big))[0] == 429  # large: backlog by its size
    assert (await noc.push("jun-0001", agent_push()))[0] == 204  # live goes on
    noc.collector.pressure.lag = 0.0
    assert (await noc.push("jun-0001", agent_push(), {"X-Kipu-Backlog": "1"}))[0] == 204
    scrape = await noc.scrape()
    assert scrape.value("kipu_collector_requests_rejected_total", reason="busy") == 2


async def test_the_loop_lag_is_measured() -> None:
    pressure = Pressure()
    task = asyncio.create_task(pressure.run())
    try:
        await asyncio.sleep(0.12)
        time.sleep(0.5)  # noqa: ASYNC251 - the point: block the loop, as a heavy push would
        await asyncio.sleep(0.06)
        assert pressure.lag > 0.05
        assert pressure.busy
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_the_loop_load_is_measured() -> None:
    pressure = Pressure(busy_lag=10.0)  # only the load counts here
    task = asyncio.create_task(pressure.run())
    try:
        await asyncio.sleep(0.3)  # idle: the thread hardly works
        assert pressure.load < 0.3
        assert not pressure.busy
        deadline = time.monotonic() + 5
        while not pressure.busy:  # work in slices of 40 ms, as a stream of pushes would
            assert time.monotonic() < deadline, f"load stayed at {pressure.load:.2f}"
            until = time.thread_time() + 0.04
            while time.thread_time() < until:
                pass
            await asyncio.sleep(0)
        assert pressure.load > 0.7
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_rollups_on_metrics_match_the_pushed_data(
    noc_factory: Callable[..., object],
) -> None:
    sites = SITES + (
        '  - {site_id: jun-0003, site_name: IE 2, project: junin, ubigeo: "120206",\n'
        "     institution_type: school, upstream_node: nodo-concepcion, access_tech: fibre}\n"
    )
    noc: Noc = await noc_factory(sites=sites, holders=("jun-0001", "jun-0003"))  # type: ignore[misc]
    start = now_ms() - 60_000

    def site_push(at: int, link: float, wifi: float, rtt_sum: float, count: float) -> bytes:
        role = {"target": "pop1", "role": "pop"}
        return body_of(
            {
                normalise_labels({"__name__": "kipu_link_up"}): [(at, link)],
                normalise_labels(
                    {"__name__": "kipu_wifi_clients", "device": "ap", "ssid": "Plaza"}
                ): [(at, wifi)],
                normalise_labels({"__name__": "kipu_probe_rtt_seconds_sum", **role}): [
                    (at, rtt_sum)
                ],
                normalise_labels({"__name__": "kipu_probe_rtt_seconds_count", **role}): [
                    (at, count)
                ],
                normalise_labels({"__name__": "kipu_probe_packets_sent_total", **role}): [
                    (at, count)
                ],
                normalise_labels({"__name__": "kipu_probe_packets_received_total", **role}): [
                    (at, count)
                ],
            }
        )

    # Two schools: up with 12 clients and 20 ms, down with 3 clients and 40 ms.
    for site, link, wifi, rtt in (("jun-0001", 1.0, 12.0, 0.02), ("jun-0003", 0.0, 3.0, 0.04)):
        assert (await noc.push(site, site_push(start, link, wifi, 0.0, 0)))[0] == 204
        pushed = site_push(start + 30_000, link, wifi, 30 * rtt, 30)
        assert (await noc.push(site, pushed))[0] == 204
    scrape = await noc.scrape()
    school = {"project": "junin", "region": "Junín", "province": "Concepción"}
    school["institution_type"] = "school"
    assert scrape.value("kipu_rollup_link_up_sites", **school) == 1
    assert scrape.value("kipu_rollup_link_down_sites", **school) == 1
    assert scrape.value("kipu_rollup_wifi_clients", **school) == 15
    assert scrape.value("kipu_rollup_rtt_seconds", **school, role="pop", quantile="0.5") == (
        pytest.approx(0.03)
    )
    assert scrape.value("kipu_rollup_rtt_seconds", **school, role="pop", quantile="0.9") == (
        pytest.approx(0.038)
    )
    assert scrape.value("kipu_rollup_loss_ratio", **school, role="pop") == 0.0
    health = {**school, "institution_type": "health"}
    assert scrape.value("kipu_rollup_link_up_sites", **health) == 0  # never seen
