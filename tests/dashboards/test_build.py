"""The committed dashboards are what the code generates, and are well formed: every panel
reads the `$datasource` variable, uids and panel ids are unique, and the chained
variables exist."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from dashboards import build
from tests.dashboards.panels import (
    ROOT,
    dashboards,
    panels,
    targets,
    used_variables,
    variables,
)

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
GRAFANA_VARIABLES = {"__rate_interval", "__interval", "__range"}
EXPECTED = {
    "kipu-noc-overview.json": {"datasource", "project", "region"},
    "kipu-project-region.json": {"datasource", "project", "region"},
    "kipu-site.json": {"datasource", "project", "region", "site"},
    "kipu-fleet.json": {"datasource", "project", "region", "site"},
}

COMMITTED = dashboards()


def test_the_committed_json_is_what_the_code_generates() -> None:
    assert build.stale() == [], "run python -m dashboards.build"
    assert set(COMMITTED) == set(build.DASHBOARDS) == set(EXPECTED)
    assert build.main(["--check"]) == 0


def test_check_names_stale_and_missing_files(tmp_path: Path) -> None:
    assert sorted(build.stale(tmp_path)) == sorted(build.DASHBOARDS)
    assert sorted(build.write(tmp_path)) == sorted(build.DASHBOARDS)
    assert build.stale(tmp_path) == []
    assert build.write(tmp_path) == []
    edited = tmp_path / "kipu-site.json"
    edited.write_text(edited.read_text().replace("kipu: site", "kipu: sitio"))
    assert build.stale(tmp_path) == ["kipu-site.json"]
    (tmp_path / "kipu-fleet.json").unlink()
    assert sorted(build.stale(tmp_path)) == ["kipu-fleet.json", "kipu-site.json"]


def test_check_exits_1_naming_the_stale_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert build.main([], folder=tmp_path) == 0
    assert build.main(["--check"], folder=tmp_path) == 0
    (tmp_path / "kipu-noc-overview.json").write_text("{}\n")
    assert build.main(["--check"], folder=tmp_path) == 1
    err = capsys.readouterr().err
    assert "dashboards/kipu-noc-overview.json is stale" in err
    assert "kipu-site.json" not in err


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_panel_reads_the_datasource_variable(name: str) -> None:
    dashboard = COMMITTED[name]
    found = list(panels(dashboard))
    assert found
    for panel in found:
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel.get("targets"), panel["title"]
        for target in panel["targets"]:
            assert target.get("datasource", DATASOURCE) == DATASOURCE, panel["title"]
            assert target["expr"].strip(), panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]


def test_uids_are_unique_and_name_the_files() -> None:
    uids = [d["uid"] for d in COMMITTED.values()]
    assert len(uids) == len(set(uids))
    for name, dashboard in COMMITTED.items():
        assert name == f"{dashboard['uid']}.json"
        assert dashboard["uid"].startswith("kipu-")
        assert "kipu" in dashboard["tags"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_panels_have_unique_ids_and_fit_the_grid(name: str) -> None:
    dashboard = COMMITTED[name]
    every: list[dict[str, Any]] = []
    for panel in dashboard["panels"]:
        every.append(panel)
        every.extend(panel.get("panels", []))
    ids = [p["id"] for p in every]
    assert len(ids) == len(set(ids))
    for panel in every:
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        assert panel["type"] == "row" or panel.get("options") is not None, panel["title"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_variables_exist_and_are_chained(name: str) -> None:
    dashboard = COMMITTED[name]
    defined = variables(dashboard)
    assert set(defined) == EXPECTED[name]
    # Grafana keys its variables by id: one each.
    assert all(definition.get("id", key) == key for key, definition in defined.items())
    datasource = defined["datasource"]
    assert (datasource["type"], datasource["query"]) == ("datasource", "prometheus")
    chain = {
        "project": ("project", set()),
        "region": ("region", {"project"}),
        "site": ("site_id", {"project", "region"}),
    }
    for variable, (label, parents) in chain.items():
        if variable not in defined:
            continue
        definition = defined[variable]
        assert definition["type"] == "query"
        assert definition["datasource"] == DATASOURCE
        assert definition["multi"] is True
        assert definition["includeAll"] is True
        query = definition["query"]
        assert query.startswith("label_values(kipu_site_info")
        assert query.endswith(f", {label})")
        assert used_variables(query) == parents


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_queries_use_only_defined_variables(name: str) -> None:
    dashboard = COMMITTED[name]
    known = set(variables(dashboard)) | GRAFANA_VARIABLES
    for target in targets(dashboard):
        assert used_variables(target.expr) <= known, str(target)


def test_provisioning_points_grafana_at_the_dashboards() -> None:
    provisioning = ROOT / "deploy" / "grafana" / "provisioning"
    sources = yaml.safe_load((provisioning / "datasources" / "kipu.yaml").read_text())
    assert sources["apiVersion"] == 1
    (source,) = sources["datasources"]
    assert source["type"] == "prometheus"
    assert source["isDefault"] is True
    assert source["url"].startswith("http")
    providers = yaml.safe_load((provisioning / "dashboards" / "kipu.yaml").read_text())
    assert providers["apiVersion"] == 1
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards/kipu"
    assert provider["allowUiUpdates"] is False
