"""The agent's /metrics against Debian's Prometheus: promtool's lint and a real scrape."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.agent_process import AgentProcess, free_port, loopback_get
from tests.metrics_util import wait_until
from tests.support.fixtures import requires_prometheus
from tests.support.prometheus import PROMTOOL, PrometheusServer

pytestmark = requires_prometheus


@pytest.fixture
def running_agent(tmp_path: Path):  # type: ignore[no-untyped-def]
    path = tmp_path / "agent.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            site_id: prom-0001
            state_dir: {tmp_path / "state"}
            probes:
              interval: 100ms
              timeout: 500ms
              targets:
                - {{name: gw, address: 127.0.0.1, role: gateway}}
                - {{name: net, address: localhost, role: internet}}
            """
        )
    )
    with AgentProcess(path, free_port(), tmp_path / "agent.log") as proc:
        wait_until(lambda: proc.scrape().get("kipu_link_up") == 1)
        yield proc


def test_promtool_check_metrics_is_clean(running_agent: AgentProcess) -> None:
    status, body = loopback_get("127.0.0.1", running_agent.port, "/metrics")
    assert status == 200
    result = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=body, capture_output=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == b""
    assert result.stderr.strip() == b""


def test_real_prometheus_scrapes_the_agent(running_agent: AgentProcess, tmp_path: Path) -> None:
    scrape = {
        "job_name": "kipu-agent",
        "scrape_interval": "200ms",
        "scrape_timeout": "200ms",
        "static_configs": [{"targets": [f"127.0.0.1:{running_agent.port}"]}],
    }
    with PrometheusServer(tmp_path / "prom", [scrape]) as prom:

        def scraped() -> bool:
            return bool(prom.query('up{job="kipu-agent"} == 1')) and bool(
                prom.query("kipu_probe_rtt_seconds_count > 0")
            )

        wait_until(scraped, timeout=30, step=0.2)
        buckets = prom.query('kipu_probe_rtt_seconds_bucket{target="gw",le="+Inf"}')
        assert len(buckets) == 1
        assert buckets[0]["metric"]["role"] == "gateway"
        assert prom.query("kipu_link_up")[0]["value"][1] == "1"
