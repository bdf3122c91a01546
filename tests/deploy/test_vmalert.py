"""The rules run unchanged on vmalert (Debian's victoria-metrics package) for the
scaled-out deployment: every rule file loads in `vmalert -dryRun` as shipped (MetricsQL
parses every expression and template), and a real single-node VictoriaMetrics with
vmalert evaluating them records availability, thresholds and a site alert from data
pushed into it.

The live run uses copies of the rule files evaluated every second with `for:` set to 0
(generated from the real files; expressions untouched), so it needs no minutes of data.
"""

from __future__ import annotations

import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.deploy.alerting_support import (
    RULE_FILES,
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

INFO = {
    "jun-0001": (
        'site_name="IE 30012 Racracalla",project="junin",region="Junín",province="Concepción",'
        'district="Comas",ubigeo="120206",institution_type="school",institution_code="0123456",'
        'upstream_node="nodo-concepcion",access_tech="microwave"'
    ),
    "jun-0002": (
        'site_name="Puesto de Salud Comas",project="junin",region="Junín",province="Concepción",'
        'district="Comas",ubigeo="120206",institution_type="health",institution_code="",'
        'upstream_node="nodo-concepcion",access_tech="4g"'
    ),
    "jun-0003": (
        'site_name="IE 31500 Huancayo",project="junin",region="Junín",province="Huancayo",'
        'district="Huancayo",ubigeo="120101",institution_type="school",'
        'institution_code="0456789",upstream_node="nodo-huancayo",access_tech="fibre"'
    ),
}
SCRAPE = 'job="kipu-collector",instance="127.0.0.1:9109"'


@pytest.fixture(autouse=True)
def _victoria_metrics_installed() -> None:
    need("VictoriaMetrics", missing(VMALERT, VICTORIA_METRICS))


def dry_run(*rules: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [VMALERT, "-dryRun", *(f"-rule={path}" for path in rules)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda path: path.name)
def test_each_rule_file_loads_unchanged(path: Path) -> None:
    result = dry_run(path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_all_rule_files_load_together() -> None:
    result = dry_run(*RULE_FILES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dry_run_refuses_a_bad_expression(tmp_path: Path) -> None:
    """The check above means something: vmalert does parse the expressions."""
    bad = tmp_path / "bad.yml"
    bad.write_text("groups:\n  - name: x\n    rules:\n      - record: a:b:c\n        expr: sum(\n")
    assert dry_run(bad).returncode != 0


def two_hours_of_data(now: float) -> bytes:
    """What the collector's scrape and the agents' pushes would have stored: the inventory
    of three sites; jun-0001 up for two hours; jun-0002 silent for ten minutes; jun-0003
    never sent anything. Prometheus text format with millisecond timestamps."""
    lines = []
    start = int(now) - 7200
    for ts in range(start, int(now) + 1, 15):
        ms = ts * 1000
        for site, labels in INFO.items():
            lines.append(f'kipu_site_info{{{SCRAPE},site_id="{site}",{labels}}} 1 {ms}')
        lines.append(
            f'kipu_link_up_seconds_total{{site_id="jun-0001",project="junin",region="Junín"}} '
            f"{ts - start} {ms}"
        )
        identity = 'site_id="jun-0002",project="junin",region="Junín"'
        silent = ts > now - 600
        lines.append(f"kipu_site_reporting{{{SCRAPE},{identity}}} {0 if silent else 1} {ms}")
        last_push = now - 600 if silent else ts
        lines.append(
            f"kipu_site_last_push_timestamp_seconds{{{SCRAPE},{identity}}} {last_push} {ms}"
        )
    return ("\n".join(lines) + "\n").encode()


@pytest.mark.timeout(180)
def test_vmalert_evaluates_the_rules_against_victoria_metrics(tmp_path: Path) -> None:
    rules = fast_rules(tmp_path / "rules", site_for="0s", topology_for="0s")
    with (
        WebhookReceiver() as notifier,
        VictoriaMetrics(tmp_path / "vm") as store,
    ):
        assert isinstance(store, VictoriaMetrics)
        request = urllib.request.Request(
            f"{store.url}/api/v1/import/prometheus", data=two_hours_of_data(time.time())
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 204
        with VMAlert(tmp_path / "vmalert", rules, store.url, notifier.url) as vmalert:
            assert isinstance(vmalert, VMAlert)

            def availability() -> dict[str, float]:
                result = store.query("site:kipu_link_availability:ratio_1h")
                return {r["metric"]["site_id"]: float(r["value"][1]) for r in result}

            wait_until(lambda: len(availability()) == 3, timeout=90, step=0.5)
            # Up the whole hour (MetricsQL's increase() does not extrapolate: the seconds
            # since the last sample are not counted as up); the site without data reads
            # 0, not 100%; so does the silent one, which never sent its counters.
            found = availability()
            assert 0.95 < found.pop("jun-0001") <= 1.0
            assert found == {"jun-0002": 0.0, "jun-0003": 0.0}
            (row,) = store.query('site:kipu_link_availability:ratio_1h{site_id="jun-0001"}')
            assert row["metric"]["upstream_node"] == "nodo-concepcion"
            assert row["metric"]["institution_code"] == "0123456"

            # A rule reading other rules' results through the store: junin's own target.
            def target() -> list[float]:
                result = store.query('kipu:threshold_availability_ratio{project="junin"}')
                return [float(r["value"][1]) for r in result]

            wait_until(lambda: target() == [0.985], timeout=90, step=0.5)

            def silent() -> list[dict[str, str]]:
                return [
                    alert["labels"]
                    for alert in vmalert.alerts()
                    if alert["name"] == "KipuSiteSilent" and alert["state"] == "firing"
                ]

            wait_until(lambda: len(silent()) == 1, timeout=90, step=0.5)
            (labels,) = silent()
            assert labels["site_id"] == "jun-0002"
            assert labels["project"] == "junin"
            assert labels["region"] == "Junín"
            assert labels["upstream_node"] == "nodo-concepcion"
