"""deploy/prometheus: the rules load in Debian's promtool, every promtool unit test passes,
and every alert and recording rule is exercised by at least one of them.

The unit tests themselves are deploy/prometheus/tests/*.yml (run by `promtool test rules`);
this module keeps "a unit test for every rule" true as rules are added, and holds every
site alert to the labels Alertmanager's inhibition needs.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.alerting_support import (
    PROMETHEUS_DIR,
    PROMTOOL_TESTS,
    RULE_FILES,
    alert_rules,
    load_yaml,
    record_names,
    rule_groups,
)
from tests.support.fixtures import requires_prometheus
from tests.support.prometheus import PROMTOOL

pytestmark = requires_prometheus

#: Labels every site alert must carry, non-empty (the inhibition rules' `equal`).
TOPOLOGY = ("project", "region", "upstream_node")
ANNOTATIONS = {"summary", "summary_es", "description", "description_es"}
SCOPES = {"site", "node", "region", "project", "collector"}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PROMTOOL, *args], capture_output=True, text=True, timeout=300, check=False
    )


def test_rule_files_are_there() -> None:
    names = {path.name for path in RULE_FILES}
    assert names == {"kipu-thresholds.yml", "kipu-recording.yml", "kipu-alerts.yml"}
    assert PROMTOOL_TESTS, "no promtool unit tests in deploy/prometheus/tests"


def test_promtool_check_rules() -> None:
    result = promtool("check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_check_config() -> None:
    result = promtool("check", "config", str(PROMETHEUS_DIR / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.timeout(300)
@pytest.mark.parametrize("path", PROMTOOL_TESTS, ids=lambda path: path.name)
def test_promtool_unit_tests(path: Path) -> None:
    result = promtool("test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def unit_tests() -> list[dict[str, Any]]:
    """Every test case of every promtool test file."""
    cases = []
    for path in PROMTOOL_TESTS:
        document = load_yaml(path)
        loaded = {(path.parent / name).resolve() for name in document["rule_files"]}
        assert loaded <= {rule.resolve() for rule in RULE_FILES}, path
        cases += document["tests"]
    return cases


def firing_cases() -> list[tuple[str, dict[str, Any]]]:
    """(alertname, expected alert) for every alert a unit test expects to fire."""
    return [
        (check["alertname"], alert)
        for case in unit_tests()
        for check in case.get("alert_rule_test", [])
        for alert in check.get("exp_alerts") or []
    ]


def test_every_alert_is_unit_tested_firing_and_quiet() -> None:
    names = {rule["alert"] for rule in alert_rules()}
    firing = {name for name, _ in firing_cases()}
    quiet = {
        check["alertname"]
        for case in unit_tests()
        for check in case.get("alert_rule_test", [])
        if not check.get("exp_alerts")
    }
    assert names - firing == set(), "alerts no unit test sees firing"
    # An alert that fires at once (no `for:`) or on a slow window may lack a quiet case,
    # but most must show when they hold back.
    assert len(names - quiet) <= len(names) // 4, sorted(names - quiet)


def test_every_recording_rule_is_unit_tested() -> None:
    exprs = [
        check["expr"]
        for case in unit_tests()
        for check in case.get("promql_expr_test", [])
        if check.get("exp_samples")
    ]
    used = {token for expr in exprs for token in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr)}
    assert record_names() - used == set(), "recording rules no unit test queries"


def test_every_rule_is_named_and_labelled_as_agreed() -> None:
    for group in rule_groups():
        for rule in group["rules"]:
            if "record" in rule:
                if rule["record"].startswith("kipu:threshold_"):
                    continue  # the agreed names of the thresholds file
                level, metric, *operations = rule["record"].split(":")
                assert level, rule["record"]
                assert metric, rule["record"]
                assert operations, rule["record"]
                continue
            labels, annotations = rule.get("labels", {}), rule.get("annotations", {})
            assert labels.get("severity") in {"critical", "warning", "info"}, rule["alert"]
            assert labels.get("scope") in SCOPES, rule["alert"]
            assert set(annotations) == ANNOTATIONS, rule["alert"]


def test_site_alerts_always_carry_their_topology() -> None:
    """Alertmanager inhibits when every `equal` label is missing from both alerts: a site
    alert without project, region and upstream_node would be held back by any node alert
    lacking them too, or escape its own node's. Each site alert takes them from
    kipu_site_info, and every unit test that sees one firing finds them non-empty."""
    site_alerts = {
        rule["alert"]: rule for rule in alert_rules() if rule["labels"]["scope"] == "site"
    }
    for name, rule in site_alerts.items():
        join = re.search(
            r"group_left\s*\(([^)]*)\)\s*max by \(([^)]*)\) \(kipu_site_info\)", rule["expr"]
        )
        assert join is not None, f"{name} does not join kipu_site_info"
        taken = {label.strip() for label in join.group(1).split(",")}
        assert set(TOPOLOGY) <= taken, name
    seen = set()
    for name, alert in firing_cases():
        labels = {key: str(value) for key, value in alert["exp_labels"].items()}
        scope = labels.get("scope")
        if scope == "site":
            seen.add(name)
            assert all(labels.get(key) for key in TOPOLOGY), (name, labels)
        if scope == "node":
            assert all(labels.get(key) for key in TOPOLOGY), (name, labels)
        if scope == "region":
            assert labels.get("project"), (name, labels)
            assert labels.get("region"), (name, labels)
    assert seen == set(site_alerts)


def test_thresholds_live_in_one_file() -> None:
    """Alerts compare against kipu:threshold_* series, not numbers of their own (a `> 0`
    or `== 0` test of a state is not a threshold)."""
    thresholds = load_yaml(PROMETHEUS_DIR / "rules" / "kipu-thresholds.yml")
    recorded = {rule["record"] for group in thresholds["groups"] for rule in group["rules"]}
    assert all(name.startswith("kipu:threshold_") for name in recorded)
    for rule in alert_rules():
        for number in re.findall(r"[<>]=?\s*(-?[0-9.]+)", rule["expr"]):
            assert float(number) in {0.0, 1.0}, (rule["alert"], number)
