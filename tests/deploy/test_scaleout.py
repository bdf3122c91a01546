"""Scale-out, as deploy/compose/scaleout.yml lays it out, on Debian's single-node store:
two collectors (one per regional project) forwarding into VictoriaMetrics, which also
scrapes both; vmalert evaluating kipu's rules against it; queries across both projects."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest

from kipu.remote_write.codec import encode, normalise_labels
from tests.collector.pushing import post_write
from tests.collector_process import CollectorProcess, issue_token, write_collector
from tests.deploy.alerting_support import (
    VICTORIA_METRICS,
    VMALERT,
    VictoriaMetrics,
    VMAlert,
    WebhookReceiver,
    fast_rules,
    missing,
)
from tests.metrics_util import wait_until
from tests.support.fixtures import need

PROJECTS = {
    "junin": textwrap.dedent(
        """\
        sites:
          - {site_id: jun-0001, site_name: IE 30012 Racracalla, project: junin, ubigeo: "120206",
             institution_type: school, upstream_node: nodo-concepcion, access_tech: microwave}
          - {site_id: jun-0002, site_name: Puesto de Salud Comas, project: junin, ubigeo: "120206",
             institution_type: health, upstream_node: nodo-concepcion, access_tech: 4g}
        """
    ),
    "huanuco": textwrap.dedent(
        """\
        sites:
          - {site_id: hco-0007, site_name: Puesto de Salud Monzón, project: huanuco,
             ubigeo: "100507", institution_type: health, upstream_node: nodo-tingo-maria,
             access_tech: satellite}
        """
    ),
}
SITES = {"junin": ("jun-0001", "jun-0002"), "huanuco": ("hco-0007",)}


class ScrapingStore(VictoriaMetrics):
    """The single node, also scraping the collectors' /metrics (as vmagent would)."""

    def __init__(self, workdir: Path, targets: list[str]) -> None:
        super().__init__(workdir)
        self.scrape = workdir / "scrape.yml"
        workdir.mkdir(parents=True, exist_ok=True)
        self.scrape.write_text(
            "global: {scrape_interval: 1s}\n"
            "scrape_configs:\n"
            "  - job_name: kipu-collector\n"
            f"    static_configs: [{{targets: [{', '.join(targets)}]}}]\n"
        )

    def argv(self) -> list[str]:
        return [*super().argv(), f"-promscrape.config={self.scrape}"]


def counters(seconds_up: float) -> bytes:
    """An hour of a site's link counters, up all along, as an agent would push them."""
    now = int(time.time() * 1000)
    stamps = [now - 3_600_000 + k * 60_000 for k in range(61)]
    series = {
        normalise_labels({"__name__": "kipu_link_up_seconds_total"}): [
            (t, seconds_up * k / 60) for k, t in enumerate(stamps)
        ],
        normalise_labels({"__name__": "kipu_link_down_seconds_total"}): [(t, 0.0) for t in stamps],
        normalise_labels({"__name__": "kipu_agent_offline_seconds_total"}): [
            (t, 0.0) for t in stamps
        ],
        normalise_labels({"__name__": "kipu_link_up"}): [(t, 1.0) for t in stamps],
    }
    return encode(series)


@pytest.mark.timeout(180)
def test_two_projects_forward_into_one_store_and_its_rules_see_both(tmp_path: Path) -> None:
    need("victoria-metrics and vmalert", missing(VICTORIA_METRICS, VMALERT))
    collectors = {
        project: CollectorProcess(
            write_collector(tmp_path / project, sites=sites), tmp_path / f"{project}.log"
        )
        for project, sites in PROJECTS.items()
    }
    targets = [f"127.0.0.1:{c.port}" for c in collectors.values()]
    rules = fast_rules(tmp_path / "rules", site_for="0s", topology_for="0s")
    with (
        WebhookReceiver() as notifier,
        ScrapingStore(tmp_path / "vm", targets) as store,
    ):
        assert isinstance(store, ScrapingStore)
        forward = f"forward: {{url: '{store.url}/api/v1/write', max_queue: 64MiB}}\n"
        tokens = {}
        for project, collector in collectors.items():
            write_collector(tmp_path / project, forward, PROJECTS[project])
            for site_id in SITES[project]:
                tokens[site_id] = issue_token(collector.config, site_id)
            collector.start()
        try:
            for project, collector in collectors.items():
                for site_id in SITES[project]:
                    # jun-0002 reports half the hour up, the others all of it.
                    up = 1800.0 if site_id == "jun-0002" else 3600.0
                    body = counters(up)
                    assert post_write(collector.write_url, tokens[site_id], body)[0] == 204
            with VMAlert(tmp_path / "vmalert", rules, store.url, notifier.url) as vmalert:
                assert isinstance(vmalert, VMAlert)

                # One query sees both projects' sites, each labelled by its collector.
                def sites_up() -> dict[str, float]:
                    result = store.query("count by (project) (kipu_link_up)")
                    return {r["metric"]["project"]: float(r["value"][1]) for r in result}

                wait_until(lambda: sites_up() == {"junin": 2, "huanuco": 1}, 60, 0.5)

                # Both collectors' inventories, scraped: every site known, per project.
                def inventoried() -> dict[str, float]:
                    result = store.query("count by (project) (kipu_site_info)")
                    return {r["metric"]["project"]: float(r["value"][1]) for r in result}

                wait_until(lambda: inventoried() == {"junin": 2, "huanuco": 1}, 60, 0.5)

                # vmalert's recording rules, across both projects, in the same store.
                def availability() -> dict[str, float]:
                    result = store.query("project:kipu_link_availability:ratio_1h")
                    return {r["metric"]["project"]: float(r["value"][1]) for r in result}

                wait_until(lambda: len(availability()) == 2, timeout=90, step=0.5)
                found = availability()
                assert found["huanuco"] > 0.95
                assert 0.7 < found["junin"] < 0.8  # one site all hour, one half of it
        finally:
            for collector in collectors.values():
                collector.stop()
