"""End to end: sites push to a real kipu collector, which forwards into a real Prometheus
that also scrapes it and evaluates kipu's rules; a real Alertmanager with kipu's routes
and inhibitions notifies a loopback webhook.

- A site's link is cut (it stops pushing): its KipuSiteSilent notification reaches the
  webhook with the project, region and institution from the inventory.
- A whole upstream node is cut: one KipuUpstreamNodeDown notification arrives; the
  silent alerts of its sites fire in Prometheus but Alertmanager holds them back
  (inhibited by the node alert), and the webhook never gets them.

The rules are test copies of deploy/prometheus/rules generated at run time: the same
expressions, evaluated every second, with `for:` shortened so the topology alerts still
wait less than the site alerts they hold back (as in the shipped files).
"""

from __future__ import annotations

import contextlib
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kipu.remote_write.codec import encode, normalise_labels
from tests.agent_process import free_port
from tests.collector.pushing import post_write
from tests.collector_process import CollectorProcess, issue_token, write_collector
from tests.deploy.alerting_support import (
    ALERTMANAGER,
    Alertmanager,
    WebhookReceiver,
    alertmanager_test_config,
    fast_rules,
    missing,
)
from tests.metrics_util import wait_until
from tests.support.fixtures import need, requires_prometheus
from tests.support.prometheus import PrometheusServer

pytestmark = requires_prometheus

SITES = textwrap.dedent(
    """\
    sites:
      - {site_id: jun-0001, site_name: IE 30012 Racracalla, project: junin, ubigeo: "120206",
         institution_type: school, institution_code: "0123456", upstream_node: nodo-concepcion,
         access_tech: microwave}
      - {site_id: jun-0002, site_name: Puesto de Salud Comas, project: junin, ubigeo: "120206",
         institution_type: health, institution_code: "00012345", upstream_node: nodo-concepcion,
         access_tech: 4g}
      - {site_id: jun-0003, site_name: IE 31500 Huancayo, project: junin, ubigeo: "120101",
         institution_type: school, institution_code: "0456789", upstream_node: nodo-huancayo,
         access_tech: fibre}
      - {site_id: jun-0004, site_name: Comisaría Huancayo, project: junin, ubigeo: "120101",
         institution_type: police, institution_code: C-1234, upstream_node: nodo-huancayo,
         access_tech: radio}
      - {site_id: hco-0007, site_name: Puesto de Salud Monzón, project: huanuco,
         ubigeo: "100507", institution_type: health, institution_code: "00004321",
         upstream_node: nodo-tingo-maria, access_tech: satellite}
    """
)
SITE_IDS = ("jun-0001", "jun-0002", "jun-0003", "jun-0004", "hco-0007")
PUSH_EVERY = 0.5
#: Site alerts wait longer than node and region alerts, as in the shipped rules.
SITE_FOR, TOPOLOGY_FOR = "8s", "1s"


class Sites:
    """Every site an agent would be, pushing its link state and counters every
    PUSH_EVERY seconds from a thread, until the test cuts it."""

    def __init__(self, write_url: str, tokens: dict[str, str]) -> None:
        self.write_url, self.tokens = write_url, tokens
        self.cut: set[str] = set()
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = time.time()

    def cut_link(self, *site_ids: str) -> None:
        with self._lock:
            self.cut.update(site_ids)

    def restore(self, *site_ids: str) -> None:
        with self._lock:
            self.cut.difference_update(site_ids)

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                live = [site for site in SITE_IDS if site not in self.cut]
            now = time.time()
            for site in live:
                up = now - self._started
                body = encode(
                    {
                        normalise_labels({"__name__": "kipu_link_up"}): [(int(now * 1000), 1.0)],
                        normalise_labels({"__name__": "kipu_link_up_seconds_total"}): [
                            (int(now * 1000), up)
                        ],
                    }
                )
                status, text = post_write(self.write_url, self.tokens[site], body)
                if status != 204:
                    self.errors.append(f"{site}: {status} {text}")
            self._stop.wait(PUSH_EVERY)

    def __enter__(self) -> Sites:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)


@contextlib.contextmanager
def noc(tmp_path: Path) -> Iterator[tuple[PrometheusServer, Alertmanager, WebhookReceiver, Sites]]:
    """The whole NOC stack on loopback, stopped by PID whatever happens."""
    need("Alertmanager", missing(ALERTMANAGER))
    with contextlib.ExitStack() as stack:
        hook = stack.enter_context(WebhookReceiver())
        manager = Alertmanager(tmp_path / "am", alertmanager_test_config(tmp_path / "am", hook.url))
        stack.enter_context(manager)
        rules = fast_rules(tmp_path / "rules", site_for=SITE_FOR, topology_for=TOPOLOGY_FOR)
        collector_port = free_port()
        prometheus = PrometheusServer(
            tmp_path / "prom",
            scrape_configs=[
                {
                    "job_name": "kipu-collector",
                    "static_configs": [{"targets": [f"127.0.0.1:{collector_port}"]}],
                }
            ],
            args=["--web.enable-remote-write-receiver"],
            extra_config={
                "storage": {"tsdb": {"out_of_order_time_window": "1h"}},
                "rule_files": [str(path) for path in rules],
                "alerting": {
                    "alertmanagers": [
                        {"static_configs": [{"targets": [f"127.0.0.1:{manager.port}"]}]}
                    ]
                },
            },
        )
        config = write_collector(
            tmp_path / "noc",
            sites=SITES,
            extra=f"forward: {{url: '{prometheus.url}/api/v1/write', timeout: 5s}}\n",
        )
        tokens = {site: issue_token(config, site) for site in SITE_IDS}
        stack.enter_context(prometheus)
        collector = CollectorProcess(config, tmp_path / "collector.log", port=collector_port)
        stack.enter_context(collector)
        stack.callback(collector.stop)
        sites = stack.enter_context(Sites(collector.write_url, tokens))
        yield prometheus, manager, hook, sites


def named(alert: dict[str, Any], name: str, **labels: str) -> bool:
    found = alert["labels"]
    return found.get("alertname") == name and all(found.get(k) == v for k, v in labels.items())


def prometheus_alerts(prometheus: PrometheusServer, state: str) -> list[dict[str, Any]]:
    alerts = prometheus.get("/api/v1/alerts")["data"]["alerts"]
    return [alert for alert in alerts if alert["state"] == state]


@pytest.mark.timeout(300)
def test_link_cut_and_node_down_reach_the_noc(tmp_path: Path) -> None:
    with noc(tmp_path) as (prometheus, manager, hook, sites):
        # Everything reports: every inventoried site is known to be up.
        def all_up() -> bool:
            result = prometheus.query("site:kipu_site_down:bool == 0")
            return {r["metric"]["site_id"] for r in result} == set(SITE_IDS)

        wait_until(all_up, timeout=90, step=0.5)
        assert sites.errors == []

        # jun-0003's link is cut: it goes silent, and the NOC hears about it.
        sites.cut_link("jun-0003")
        got = hook.wait_for(
            lambda alerts: any(named(a, "KipuSiteSilent", site_id="jun-0003") for _, a in alerts),
            timeout=120,
        )
        receiver, alert = next(
            (r, a) for r, a in got if named(a, "KipuSiteSilent", site_id="jun-0003")
        )
        assert receiver == "junin-es"
        assert alert["status"] == "firing"
        labels = alert["labels"]
        assert labels["project"] == "junin"
        assert labels["region"] == "Junín"
        assert labels["province"] == "Huancayo"
        assert labels["district"] == "Huancayo"
        assert labels["institution_type"] == "school"
        assert labels["institution_code"] == "0456789"
        assert labels["site_name"] == "IE 31500 Huancayo"
        assert labels["upstream_node"] == "nodo-huancayo"
        assert "IE 31500 Huancayo" in alert["annotations"]["summary_es"]

        # nodo-concepcion's backhaul is cut: both its sites go silent at once.
        sites.cut_link("jun-0001", "jun-0002")
        hook.wait_for(
            lambda alerts: any(
                named(a, "KipuUpstreamNodeDown", upstream_node="nodo-concepcion") for _, a in alerts
            ),
            timeout=120,
        )

        # Prometheus fires both sites' silent alerts; Alertmanager holds them back.
        def site_alerts_fire() -> bool:
            firing = prometheus_alerts(prometheus, "firing")
            silent = {a["labels"]["site_id"] for a in firing if named(a, "KipuSiteSilent")}
            return {"jun-0001", "jun-0002"} <= silent

        wait_until(site_alerts_fire, timeout=120, step=0.5)

        def held_back() -> list[dict[str, Any]]:
            return [
                a
                for a in manager.alerts()
                if named(a, "KipuSiteSilent", upstream_node="nodo-concepcion")
            ]

        wait_until(lambda: len(held_back()) == 2, timeout=60, step=0.5)
        node = [a for a in manager.alerts() if named(a, "KipuUpstreamNodeDown")]
        assert len(node) == 1
        for alert in held_back():
            assert alert["status"]["state"] == "suppressed", alert
            assert alert["status"]["inhibitedBy"] == [node[0]["fingerprint"]], alert

        # jun-0003 comes back. Its resolution is notified in the same group (junin, Junín,
        # KipuSiteSilent) as the held-back alerts: had they not been muted, that message
        # (or an earlier one) would carry them.
        sites.restore("jun-0003")
        hook.wait_for(
            lambda alerts: any(
                named(a, "KipuSiteSilent", site_id="jun-0003") and a["status"] == "resolved"
                for _, a in alerts
            ),
            timeout=120,
        )
        leaked = [
            a
            for _, a in hook.alerts()
            if named(a, "KipuSiteSilent") and a["labels"]["site_id"] in {"jun-0001", "jun-0002"}
        ]
        assert leaked == []
        nodes = [a for _, a in hook.alerts() if named(a, "KipuUpstreamNodeDown")]
        assert {a["labels"]["upstream_node"] for a in nodes} == {"nodo-concepcion"}
        assert all(a["labels"]["project"] == "junin" for a in nodes)
        # No region alert: 3 of Junín's 4 sites at most were down (threshold 80%).
        assert not any(named(a, "KipuRegionDown") for _, a in hook.alerts())
        assert sites.errors == []
