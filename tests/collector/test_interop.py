"""The collector between real counterparts: a real Prometheus remote-writing to it with a
site's token, real kipu agents pushing to it, and a real Prometheus it forwards into.

What arrives in the store carries the identity bound to the token (site_id, project,
region from the inventory), never the identity the sender claimed, and the sender's
own timestamps.
"""

from __future__ import annotations

import http.server
import itertools
import signal
import textwrap
import threading
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.agent.test_push_power import spooled_values
from tests.agent_process import AgentProcess, free_port
from tests.collector_process import CollectorProcess, issue_token, write_collector
from tests.metrics_util import Scrape, parse, wait_until
from tests.support.fixtures import requires_prometheus
from tests.support.prometheus import PrometheusServer

pytestmark = requires_prometheus

INTERVAL = 0.2  # the agents' push interval, seconds
JUNIN = {"site_id": "jun-0001", "project": "junin", "region": "Junín"}
EXPOSITION = textwrap.dedent(
    """\
    # HELP interop_temperature_celsius A sensor's reading.
    # TYPE interop_temperature_celsius gauge
    interop_temperature_celsius{sensor="a"} 21.5
    interop_temperature_celsius{sensor="b"} 19
    """
)


class Target(http.server.ThreadingHTTPServer):
    """A scrape target on loopback serving a fixed exposition, in a thread of its own."""

    def __init__(self, exposition: str) -> None:
        body = exposition.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.port = int(self.server_address[1])
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def __enter__(self) -> Target:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(10)


def store(tmp_path: Path) -> PrometheusServer:
    """The Prometheus the collector forwards into (not started)."""
    return PrometheusServer(
        tmp_path / "store",
        args=["--web.enable-remote-write-receiver"],
        extra_config={"storage": {"tsdb": {"out_of_order_time_window": "1h"}}},
    )


def forwarding_collector(tmp_path: Path, into: PrometheusServer) -> Path:
    return write_collector(
        tmp_path / "noc", extra=f"forward: {{url: '{into.url}/api/v1/write', timeout: 5s}}\n"
    )


def prometheus_metrics(prom: PrometheusServer) -> Scrape:
    """Prometheus' own /metrics, parsed."""
    with urllib.request.urlopen(f"{prom.url}/metrics", timeout=10) as response:
        return parse(response.read().decode())


def total(scrape: Scrape, name: str) -> float:
    """The sum of every sample of `name`, whatever its labels (there must be one)."""
    values = [value for (sample, _), value in scrape.samples.items() if sample == name]
    assert values, f"no {name} in the scrape"
    return sum(values)


def test_a_prometheus_remote_writes_through_the_collector_as_its_site(tmp_path: Path) -> None:
    with store(tmp_path) as into:
        config = forwarding_collector(tmp_path, into)
        token_file = tmp_path / "token"
        token_file.write_text(issue_token(config, "jun-0001") + "\n")
        with (
            CollectorProcess(config, tmp_path / "collector.log") as collector,
            Target(EXPOSITION) as target,
            PrometheusServer(
                tmp_path / "source",
                scrape_configs=[
                    {
                        "job_name": "interop",
                        "scrape_interval": "500ms",
                        "static_configs": [{"targets": [f"127.0.0.1:{target.port}"]}],
                    }
                ],
                global_config={
                    "scrape_interval": "1s",
                    "evaluation_interval": "1s",
                    # A sender claiming another site's identity, and a label of its own.
                    "external_labels": {
                        "site_id": "hco-0007",
                        "project": "huanuco",
                        "region": "Lima",
                        "replica": "a",
                    },
                },
                extra_config={
                    "remote_write": [
                        {
                            "url": collector.write_url,
                            "authorization": {"credentials_file": str(token_file)},
                            "queue_config": {
                                "batch_send_deadline": "200ms",
                                "min_backoff": "50ms",
                                "max_backoff": "500ms",
                            },
                            "metadata_config": {"send_interval": "1s"},
                        }
                    ]
                },
            ) as source,
        ):
            wait_until(lambda: len(into.query("interop_temperature_celsius")) == 2, timeout=30)
            wait_until(
                lambda: (
                    len(into.query('interop_temperature_celsius{sensor="a"}[1m]')[0]["values"]) >= 6
                ),
                timeout=30,
            )
            # A moment every sample stamped before it is long in the sender's storage.
            at = time.time() - 1.0
            sent = source.query('interop_temperature_celsius{sensor="a"}[1m]', at)
            arrived = into.query('interop_temperature_celsius{sensor="a"}[1m]', at)
            sender = prometheus_metrics(source)
            scrape = collector.scrape()

        # The identity is the token's, whatever external_labels claimed; the sender's own
        # labels stay.
        readings = into.query("interop_temperature_celsius")
        for series in readings:
            assert series["metric"] == {
                "__name__": "interop_temperature_celsius",
                "sensor": series["metric"]["sensor"],
                "job": "interop",
                "instance": f"127.0.0.1:{target.port}",
                "replica": "a",
                **JUNIN,
            }
        assert {s["metric"]["sensor"]: s["value"][1] for s in readings} == {"a": "21.5", "b": "19"}
        assert into.query('{__name__=~".+", site_id!="jun-0001"}') == []
        assert into.query('{__name__=~".+", project!="junin"}') == []
        assert into.query('{__name__=~".+", region!="Junín"}') == []
        assert into.query('up{job="interop"}')[0]["metric"]["site_id"] == "jun-0001"
        # The sender's timestamps: each stored sample is one the sender took.
        taken = {float(t) for t, _ in sent[0]["values"]}
        kept = [float(t) for t, _ in arrived[0]["values"]]
        assert len(kept) >= 4
        assert set(kept) <= taken

    # Every request was acknowledged: nothing failed or was retried on the sender, and
    # the collector counted them accepted, refusing none.
    assert total(sender, "prometheus_remote_storage_samples_total") > 0
    assert total(sender, "prometheus_remote_storage_samples_failed_total") == 0
    assert total(sender, "prometheus_remote_storage_samples_retried_total") == 0
    assert scrape.value("kipu_collector_requests_accepted_total") > 0
    assert scrape.value("kipu_collector_samples_received_total", project="junin") > 0
    assert scrape.label_values("kipu_collector_requests_rejected_total", "reason") == set()
    assert scrape.value("kipu_site_reporting", **JUNIN) == 1


def agent_config(tmp_path: Path, site_id: str, collector: CollectorProcess, token: str) -> Path:
    folder = tmp_path / site_id
    folder.mkdir()
    (folder / "token").write_text(token + "\n")
    path = folder / "agent.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            site_id: {site_id}
            state_dir: {folder / "state"}
            probes:
              interval: 100ms
              timeout: 500ms
              targets:
                - {{name: gw, address: 127.0.0.1, role: gateway}}
            push:
              url: {collector.write_url}
              token_file: {folder / "token"}
              interval: {int(INTERVAL * 1000)}ms
              timeout: 2s
              spread: 0s
              clock_settle: 0s
            """
        )
    )
    return path


def test_agents_push_through_the_collector_into_prometheus(tmp_path: Path) -> None:
    sites = {
        "jun-0002": {"site_id": "jun-0002", "project": "junin", "region": "Junín"},
        "hco-0007": {"site_id": "hco-0007", "project": "huanuco", "region": "Huánuco"},
    }
    into = store(tmp_path)  # started once the collector holds a backlog
    config = forwarding_collector(tmp_path, into)
    with CollectorProcess(config, tmp_path / "collector.log") as collector:
        agents = [
            AgentProcess(
                agent_config(tmp_path, site, collector, issue_token(config, site)),
                free_port(),
                tmp_path / f"{site}.log",
            )
            for site in sites
        ]
        try:
            for agent in agents:
                agent.start()

            def pushed(agent: AgentProcess) -> float:
                return agent.scrape().get("kipu_push_requests_total", result="ok") or 0.0

            wait_until(lambda: all(pushed(a) >= 5 for a in agents), timeout=30)
            assert collector.scrape().value("kipu_collector_forward_queue_samples") > 0
            store_started = time.time()
            with into:
                wait_until(lambda: len(into.query("kipu_push_snapshots_total")) == 2, timeout=60)
                for agent in agents:
                    assert agent.stop(signal.SIGTERM) == 0
                wait_until(
                    lambda: collector.scrape().value("kipu_collector_forward_queue_samples") == 0,
                    timeout=60,
                )
                scrape = collector.scrape()
                stored = {
                    site: into.query(f'kipu_push_snapshots_total{{site_id="{site}"}}[10m]')
                    for site in sites
                }
                links = into.query("kipu_link_up")
        finally:
            for agent in agents:
                agent.__exit__(None, None, None)

    for site, identity in sites.items():
        assert scrape.value("kipu_site_reporting", **identity) == 1
        assert len(stored[site]) == 1, stored[site]
        series = stored[site][0]
        assert {k: series["metric"][k] for k in identity} == identity
        points = [(float(t), float(v)) for t, v in series["values"]]
        values = [v for _, v in points]
        left = spooled_values(tmp_path / site / "state", "kipu_push_snapshots_total")
        # Snapshot n carries n: every one the agent got acknowledged is there, once,
        # and what its stop left in its spool follows on.
        assert values == [float(i) for i in range(len(values))], values
        assert left == [float(i) for i in range(len(values), len(values) + len(left))]
        # The agent's own timestamps, evenly spaced at its interval, across the time the
        # store was down (the collector kept them, it did not stamp them on forwarding).
        times = [t for t, _ in points]
        steps = [b - a for a, b in itertools.pairwise(times)]
        assert min(steps) > INTERVAL * 0.3, min(steps)
        assert max(steps) < INTERVAL * 5, max(steps)
        assert sum(1 for t in times if t < store_started - INTERVAL) >= 4
    assert {
        link["metric"]["site_id"]: (link["metric"]["project"], link["metric"]["region"])
        for link in links
    } == {site: (i["project"], i["region"]) for site, i in sites.items()}
