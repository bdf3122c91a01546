"""Store and forward against a real Prometheus: an outage of the receiver loses nothing,
and every sample arrives once, with its original timestamp."""

from __future__ import annotations

import itertools
import signal
import textwrap
from pathlib import Path

from tests.agent.test_push_power import spooled_values
from tests.agent_process import AgentProcess, free_port
from tests.metrics_util import wait_until
from tests.support.fixtures import requires_prometheus
from tests.support.prometheus import PrometheusServer

pytestmark = requires_prometheus

INTERVAL = 0.2


def receiver(tmp_path: Path) -> PrometheusServer:
    return PrometheusServer(
        tmp_path / "prom",
        args=["--web.enable-remote-write-receiver"],
        extra_config={"storage": {"tsdb": {"out_of_order_time_window": "1h"}}},
    )


def agent_config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "agent.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            site_id: push-0001
            state_dir: {tmp_path / "state"}
            probes:
              interval: 100ms
              timeout: 500ms
              targets:
                - {{name: gw, address: 127.0.0.1, role: gateway}}
            push:
              url: {url}
              interval: {int(INTERVAL * 1000)}ms
              timeout: 2s
              spread: 0s
              clock_settle: 0s
            """
        )
    )
    return path


def samples(prom: PrometheusServer, expr: str) -> list[tuple[float, float]]:
    result = prom.query(expr)
    assert len(result) == 1, result
    return [(float(t), float(v)) for t, v in result[0]["values"]]


def test_receiver_outage_loses_nothing(tmp_path: Path) -> None:
    with receiver(tmp_path) as prom:
        config = agent_config(tmp_path, f"{prom.url}/api/v1/write")
        with AgentProcess(config, free_port(), tmp_path / "agent.log") as agent:
            wait_until(
                lambda: bool(prom.query('kipu_push_snapshots_total{site_id="push-0001"}')),
                timeout=30,
            )
            prom.stop()
            # The agent keeps measuring while the receiver is gone.
            taken = agent.scrape().value("kipu_push_snapshots_total")
            wait_until(
                lambda: agent.scrape().value("kipu_push_snapshots_total") >= taken + 15, timeout=30
            )
            wait_until(lambda: agent.scrape().value("kipu_push_requests_total", result="retry") > 0)
            assert agent.scrape().value("kipu_spool_samples") > 0
            prom.start()
            wait_until(lambda: agent.scrape().value("kipu_spool_samples") == 0, timeout=60)
            counted = agent.scrape().value("kipu_push_snapshots_total")
            # SIGTERM lets the requests under way finish and flushes the spool: after it
            # every snapshot is either in Prometheus or in the spool, and nothing moves.
            assert agent.stop(signal.SIGTERM) == 0
            counter = samples(prom, 'kipu_push_snapshots_total{site_id="push-0001"}[10m]')
            build = samples(prom, 'kipu_agent_build_info{site_id="push-0001"}[10m]')
        assert "retrying with backoff, the data stays spooled" in agent.log()

    values = [v for _, v in counter]
    left = spooled_values(tmp_path / "state", "kipu_push_snapshots_total")
    # Snapshot n carries the count of snapshots before it: what arrived is 0, 1, 2, ...
    # with no gap and no repeat, what the stop left in the spool follows on, and every
    # other series has exactly as many samples.
    assert values == [float(i) for i in range(len(values))], values
    assert left == [float(i) for i in range(len(values), len(values) + len(left))], left
    assert len(build) == len(values)
    # Every snapshot the agent had counted at the end is there (it took more since).
    assert len(values) + len(left) >= counted
    assert len(values) >= taken + 15
    # Original timestamps: evenly spaced at the push interval across the outage.
    times = [t for t, _ in counter]
    steps = [b - a for a, b in itertools.pairwise(times)]
    assert max(steps) < INTERVAL * 3, max(steps)
    assert min(steps) > INTERVAL * 0.3, min(steps)
