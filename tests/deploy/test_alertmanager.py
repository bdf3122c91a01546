"""deploy/alertmanager: the configuration loads in Debian's amtool, every routing case of
tests/routes.txt resolves to its receivers, every inhibition case of tests/inhibitions.yml
routes as written and holds back (or not) its target in a real Alertmanager, and the
notification texts name the institution in Spanish and English."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.alerting_support import (
    ALERTMANAGER,
    ALERTMANAGER_CONFIG,
    ALERTMANAGER_DIR,
    AMTOOL,
    Alertmanager,
    WebhookReceiver,
    alertmanager_test_config,
    load_yaml,
    missing,
)
from tests.metrics_util import wait_until
from tests.support.fixtures import need

ROUTES = ALERTMANAGER_DIR / "tests" / "routes.txt"
INHIBITIONS = ALERTMANAGER_DIR / "tests" / "inhibitions.yml"


@pytest.fixture(autouse=True)
def _alertmanager_installed() -> None:
    need("Alertmanager", missing(AMTOOL, ALERTMANAGER))


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AMTOOL, *args], capture_output=True, text=True, timeout=60, check=False)


@dataclass(frozen=True)
class Route:
    receivers: str
    labels: tuple[str, ...]
    line: int


def routing_cases() -> list[Route]:
    cases = []
    for number, line in enumerate(ROUTES.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        receivers, labels = line.split("|")
        cases.append(Route(receivers.strip(), tuple(labels.split()), number))
    return cases


def inhibition_cases() -> list[dict[str, Any]]:
    return list(load_yaml(INHIBITIONS)["cases"])


def routes_to(receivers: str, labels: dict[str, Any] | tuple[str, ...]) -> None:
    """`amtool config routes test`: `labels` reach exactly `receivers`, in that order."""
    if isinstance(labels, dict):
        labels = tuple(f"{key}={value}" for key, value in labels.items())
    result = amtool(
        "config",
        "routes",
        "test",
        f"--config.file={ALERTMANAGER_CONFIG}",
        f"--verify.receivers={receivers}",
        *labels,
    )
    assert result.returncode == 0, (labels, result.stdout, result.stderr)


def test_check_config() -> None:
    result = amtool("check-config", str(ALERTMANAGER_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 inhibit rules" in result.stdout


@pytest.mark.parametrize("case", routing_cases(), ids=lambda case: f"line{case.line}")
def test_routes(case: Route) -> None:
    routes_to(case.receivers, case.labels)


@pytest.mark.parametrize("case", inhibition_cases(), ids=lambda case: str(case["name"]))
def test_inhibition_case_routes(case: dict[str, Any]) -> None:
    routes_to(case["receivers"]["source"], case["source"])
    routes_to(case["receivers"]["target"], case["target"])


def test_every_inhibition_rule_has_cases() -> None:
    config = load_yaml(ALERTMANAGER_CONFIG)
    sources = {
        matcher.split("=", 1)[1].strip('"')
        for rule in config["inhibit_rules"]
        for matcher in rule["source_matchers"]
        if matcher.startswith("alertname=")
    }
    cases = inhibition_cases()
    for source in sources:
        outcomes = {case["inhibited"] for case in cases if case["source"]["alertname"] == source}
        assert outcomes == {True, False}, source


def _labels(alert: dict[str, Any]) -> dict[str, str]:
    return {key: str(value) for key, value in alert.items()}


def test_inhibitions_in_a_real_alertmanager(tmp_path: Path) -> None:
    """Every case's source and target go to a real Alertmanager at once; each target is
    held back by its own case's source, or by nothing."""
    cases = inhibition_cases()
    now = datetime.now(UTC)
    ends = (now + timedelta(hours=1)).isoformat()

    def alert(labels: dict[str, str]) -> dict[str, Any]:
        return {"labels": labels, "annotations": {}, "startsAt": now.isoformat(), "endsAt": ends}

    sources = [_labels(case["source"]) for case in cases]
    targets = [_labels(case["target"]) for case in cases]
    with WebhookReceiver() as hook:
        config = alertmanager_test_config(tmp_path / "am", hook.url)
        with Alertmanager(tmp_path / "am", config) as manager:
            assert isinstance(manager, Alertmanager)
            manager.post_alerts([alert(labels) for labels in [*sources, *targets]])

            def by_labels() -> dict[str, dict[str, Any]]:
                return {json.dumps(a["labels"], sort_keys=True): a for a in manager.alerts()}

            def key(labels: dict[str, str]) -> str:
                return json.dumps(labels, sort_keys=True)

            def settled() -> bool:
                held = by_labels()
                return all(key(labels) in held for labels in [*sources, *targets]) and all(
                    held[key(target)]["status"]["inhibitedBy"]
                    for target, case in zip(targets, cases, strict=True)
                    if case["inhibited"]
                )

            wait_until(settled, timeout=60, step=0.2)
            held = by_labels()
            for source, target, case in zip(sources, targets, cases, strict=True):
                status = held[key(target)]["status"]
                if case["inhibited"]:
                    assert held[key(source)]["fingerprint"] in status["inhibitedBy"], case["name"]
                    assert status["state"] == "suppressed", case["name"]
                else:
                    assert status["inhibitedBy"] == [], case["name"]
                    assert status["state"] == "active", case["name"]


SITE_ALERT = {
    "alertname": "KipuSiteSilent",
    "severity": "warning",
    "scope": "site",
    "site_id": "jun-0001",
    "site_name": "IE 30012 Racracalla",
    "project": "junin",
    "region": "Junín",
    "province": "Concepción",
    "district": "Comas",
    "institution_type": "school",
    "institution_code": "0123456",
    "upstream_node": "nodo-concepcion",
    "access_tech": "microwave",
}


def render(template: str, labels: dict[str, str], tmp_path: Path) -> str:
    """`amtool template render` of `template` for one firing alert with `labels`."""
    data = {
        "receiver": "noc",
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "labels": labels,
                "annotations": {
                    "description": "English description.",
                    "description_es": "Descripción en castellano.",
                },
                "startsAt": "2026-11-30T10:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "",
                "fingerprint": "0",
            }
        ],
        "groupLabels": {key: labels[key] for key in ("project", "region", "alertname")},
        "commonLabels": labels,
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
    }
    path = tmp_path / "data.json"
    path.write_text(json.dumps(data))
    result = amtool(
        "template",
        "render",
        f"--template.glob={ALERTMANAGER_DIR / 'templates' / '*.tmpl'}",
        f"--template.text={{{{ template {json.dumps(template)} . }}}}",
        f"--template.data={path}",
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_texts_name_the_institution_in_both_languages(tmp_path: Path) -> None:
    text = render("kipu.text", SITE_ALERT, tmp_path)
    spanish, english = text.split("-" * 40)
    for part in (spanish, english):
        for label in ("site_name", "institution_code", "district", "province", "region"):
            assert SITE_ALERT[label] in part, (label, part)
        assert "junin" in part
        assert "nodo-concepcion" in part
    assert "Sitio sin reportar" in spanish
    assert "institución educativa, código 0123456" in spanish
    assert "Descripción en castellano." in spanish
    assert "Site silent" in english
    assert "school, code 0123456" in english
    assert "English description." in english
    subject = render("kipu.subject.es", SITE_ALERT, tmp_path)
    assert subject.strip() == "[kipu] ACTIVA: Sitio sin reportar — Junín (junin)"


def test_node_alert_text_names_the_node(tmp_path: Path) -> None:
    node = {
        "alertname": "KipuUpstreamNodeDown",
        "severity": "critical",
        "scope": "node",
        "project": "junin",
        "region": "Junín",
        "upstream_node": "nodo-concepcion",
    }
    text = render("kipu.text.en", node, tmp_path)
    assert "Upstream node down" in text
    assert "Node: nodo-concepcion" in text
    assert "Institution" not in text
