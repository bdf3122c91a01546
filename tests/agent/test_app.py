"""The agent's HTTP API on loopback, probing this host's own loopback addresses."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from agent.app import Agent, make_app
from agent.config import load_config
from kipu.version import __version__
from tests.metrics_util import Scrape, eventually, parse


def write_config(path: Path, state_dir: Path, targets: str) -> Path:
    path.write_text(
        textwrap.dedent(
            f"""\
            site_id: test-0001
            listen: 127.0.0.1:19108
            state_dir: {state_dir}
            heartbeat_interval: 50ms
            probes:
              interval: 20ms
              timeout: 200ms
              targets:
            """
        )
        + textwrap.indent(textwrap.dedent(targets), "    ")
    )
    return path


TWO = """\
- {name: gw, address: 127.0.0.1, role: gateway}
- {name: net, address: localhost, role: internet}
"""


Client = TestClient[web.Request, web.Application]


async def start(
    aiohttp_client: AiohttpClient, tmp_path: Path, targets: str = TWO
) -> tuple[Agent, Client, Path]:
    path = write_config(tmp_path / "agent.yaml", tmp_path / "state", targets)
    agent = Agent(await asyncio.to_thread(load_config, path), path)
    client = await aiohttp_client(make_app(agent))
    return agent, client, path


async def scrape(client: Client, accept: str | None = None) -> Scrape:
    headers = {"Accept": accept} if accept else {}
    response = await client.get("/metrics", headers=headers)
    assert response.status == 200
    return parse(await response.text())


async def test_metrics_follow_the_contract(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    _, client, _ = await start(aiohttp_client, tmp_path)

    async def probed() -> bool:
        s = await scrape(client)
        return (s.get("kipu_probe_packets_received_total", target="net", role="internet") or 0) >= 5

    await eventually(probed)
    s = await scrape(client)
    assert s.value("kipu_agent_build_info", version=__version__) == 1
    assert s.value("kipu_link_up") == 1
    assert s.value("kipu_host_boot_time_seconds") > 1e9
    assert s.types["kipu_probe_rtt_seconds"] == "histogram"
    assert s.types["kipu_probe_packets_sent"] == "counter"
    assert s.types["kipu_link_up_seconds"] == "counter"
    for target, role in (("gw", "gateway"), ("net", "internet")):
        count = s.value("kipu_probe_rtt_seconds_count", target=target, role=role)
        total = s.value("kipu_probe_rtt_seconds_sum", target=target, role=role)
        assert count >= 5
        assert 0 < total / count < 0.05  # loopback
        assert s.value("kipu_probe_success", target=target, role=role) == 1
        assert s.value("kipu_probe_jitter_seconds", target=target, role=role) < 0.05
        inf = s.value("kipu_probe_rtt_seconds_bucket", target=target, role=role, le="+Inf")
        assert inf == count
    assert s.value("kipu_link_outages_total") == 0
    assert s.get("kipu_link_last_change_timestamp_seconds") is not None
    assert s.value("kipu_agent_offline_seconds_total") == 0


async def test_openmetrics_by_content_negotiation(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    _, client, _ = await start(aiohttp_client, tmp_path)
    response = await client.get(
        "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    assert (await response.text()).endswith("# EOF\n")
    plain = await client.get("/metrics")
    assert plain.headers["Content-Type"].startswith("text/plain; version=0.0.4")


async def test_healthz(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    _, client, _ = await start(aiohttp_client, tmp_path)
    response = await client.get("/healthz")
    assert response.status == 200
    body = await response.json()
    assert body["status"] == "ok"
    assert body["site_id"] == "test-0001"


async def test_reload_replaces_targets_and_their_series(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    agent, client, path = await start(aiohttp_client, tmp_path)
    await eventually(lambda: _has_target(client, "gw"))
    write_config(path, tmp_path / "state", "- {name: lo2, address: 127.0.0.2, role: pop}\n")
    response = await client.post("/-/reload")
    assert response.status == 200
    await eventually(lambda: _has_target(client, "lo2"))
    s = await scrape(client)
    assert s.label_values("kipu_probe_packets_sent_total", "target") == {"lo2"}
    assert agent.config.probes.targets[0].name == "lo2"


async def test_bad_reload_is_refused_and_old_config_keeps_running(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    agent, client, path = await start(aiohttp_client, tmp_path)
    await eventually(lambda: _has_target(client, "gw"))
    before = (await scrape(client)).value(
        "kipu_probe_packets_sent_total", target="gw", role="gateway"
    )
    path.write_text(path.read_text() + "colour: red\n")
    response = await client.post("/-/reload")
    assert response.status == 400
    text = await response.text()
    assert f"{path}:11: colour: unknown key" in text
    assert agent.config.probes.targets[0].name == "gw"

    async def still_probing() -> bool:
        s = await scrape(client)
        return s.value("kipu_probe_packets_sent_total", target="gw", role="gateway") > before + 3

    await eventually(still_probing)


async def _has_target(client: Client, name: str) -> bool:
    s = await scrape(client)
    return name in s.label_values("kipu_probe_packets_received_total", "target") and any(
        v > 0
        for (n, labels), v in s.samples.items()
        if n == "kipu_probe_packets_received_total" and ("target", name) in labels
    )


async def test_ipv6_target(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    _, client, _ = await start(
        aiohttp_client, tmp_path, "- {name: v6, address: '::1', role: gateway}\n"
    )

    async def answered() -> bool:
        s = await scrape(client)
        return (s.get("kipu_probe_packets_received_total", target="v6", role="gateway") or 0) >= 3

    await eventually(answered)
    assert (await scrape(client)).value("kipu_link_up") == 1


def test_heavy_libraries_load_only_when_configured(tmp_path: Path) -> None:
    path = write_config(tmp_path / "agent.yaml", tmp_path / "state", TWO)
    probe = (
        "import sys\n"
        "from agent.app import Agent\n"
        "from agent.config import load_config\n"
        f"Agent(load_config({str(path)!r}), {str(path)!r})\n"
        "print(sorted(m for m in ('pysnmp', 'google.protobuf', 'cramjam') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={"PYTHONPATH": str(Path(__file__).resolve().parents[2]), "PATH": "/usr/bin:/bin"},
    )
    assert result.stdout.strip() == "[]"
