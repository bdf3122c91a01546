"""Collectors sharded by project: each one holds its slice of the inventory, its own
tokens and state, and all of them forward into one Prometheus, where one query sees
every project."""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.collector.pushing import gauge_body, post_write
from tests.collector_process import CollectorProcess, issue_token, write_collector
from tests.metrics_util import wait_until
from tests.support.fixtures import requires_prometheus
from tests.support.prometheus import PrometheusServer

pytestmark = requires_prometheus

JUNIN = textwrap.dedent(
    """\
    sites:
      - {site_id: jun-0001, site_name: IE 30012 Racracalla, project: junin, ubigeo: "120206",
         institution_type: school, upstream_node: nodo-concepcion, access_tech: microwave}
      - {site_id: jun-0002, site_name: Puesto de Salud Comas, project: junin, ubigeo: "120206",
         institution_type: health, upstream_node: nodo-concepcion, access_tech: 4g}
    """
)
HUANUCO = textwrap.dedent(
    """\
    sites:
      - {site_id: hco-0007, site_name: Puesto de Salud Monzón, project: huanuco,
         ubigeo: "100507", institution_type: health, upstream_node: nodo-tingo-maria,
         access_tech: satellite}
    """
)


def test_two_collectors_one_store_one_query(tmp_path: Path) -> None:
    with PrometheusServer(
        tmp_path / "store",
        args=["--web.enable-remote-write-receiver"],
        extra_config={"storage": {"tsdb": {"out_of_order_time_window": "1h"}}},
    ) as store:
        forward = f"forward: {{url: '{store.url}/api/v1/write', timeout: 5s}}\n"
        shards = {
            "junin": write_collector(tmp_path / "junin", forward, sites=JUNIN),
            "huanuco": write_collector(tmp_path / "huanuco", forward, sites=HUANUCO),
        }
        tokens = {
            "jun-0001": issue_token(shards["junin"], "jun-0001"),
            "jun-0002": issue_token(shards["junin"], "jun-0002"),
            "hco-0007": issue_token(shards["huanuco"], "hco-0007"),
        }
        with (
            CollectorProcess(shards["junin"], tmp_path / "junin.log") as junin,
            CollectorProcess(shards["huanuco"], tmp_path / "huanuco.log") as huanuco,
        ):
            home = {"jun-0001": junin, "jun-0002": junin, "hco-0007": huanuco}
            for site, collector in home.items():
                status, text = post_write(
                    collector.write_url, tokens[site], gauge_body("kipu_link_up")
                )
                assert status == 204, text
            # A shard knows only its own tokens and sites.
            status, _ = post_write(
                huanuco.write_url, tokens["jun-0001"], gauge_body("kipu_link_up")
            )
            assert status == 401
            status, _ = post_write(junin.write_url, tokens["hco-0007"], gauge_body("kipu_link_up"))
            assert status == 401

            def per_project() -> dict[str, str]:
                result = store.query("count by (project) (kipu_link_up)")
                return {r["metric"]["project"]: r["value"][1] for r in result}

            wait_until(lambda: per_project() == {"junin": "2", "huanuco": "1"}, timeout=30)
            regions = store.query("count by (project, region) (kipu_link_up)")
            sites = store.query("kipu_link_up")
            for collector in (junin, huanuco):
                assert collector.stop() == 0

    assert {(r["metric"]["project"], r["metric"]["region"]) for r in regions} == {
        ("junin", "Junín"),
        ("huanuco", "Huánuco"),
    }
    assert {r["metric"]["site_id"]: r["metric"]["project"] for r in sites} == {
        "jun-0001": "junin",
        "jun-0002": "junin",
        "hco-0007": "huanuco",
    }
