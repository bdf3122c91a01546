"""Every query of every committed dashboard, run as its panel would against a real
Prometheus holding real data. Three kipu agents push through a real collector, which
forwards into Prometheus: jun-0001 probes loopback targets and polls an SNMP device
(snmpsim's MikroTik recording: WiFi clients and traffic), hco-0007 probes loopback
targets and suffers a power cut (killed and started again), jun-0002 runs in a test bed's
namespace and probes an impaired link (delay, jitter, loss, one outage). A fourth site
never pushes, and one push is refused. Prometheus also scrapes the collector and
evaluates the rules of deploy/prometheus/rules/. Each query must succeed and return at
least one finite value; a few panels must show what happened.

Grafana is not installable here, so Grafana's side is played by the test: the dashboard
variables become regular expressions matching the test's sites (as Grafana formats a
multi-value selection for Prometheus), `$__rate_interval`, `$__interval` and `$__range`
become fixed durations, instant targets go to /api/v1/query and the others to
/api/v1/query_range over the last hour.
"""

from __future__ import annotations

import json
import math
import signal
import textwrap
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml

from demo.netns import Testbed, http_get
from tests.agent_process import AgentProcess, free_port
from tests.collector.pushing import gauge_body, post_write
from tests.collector_process import SITES, CollectorProcess, issue_token, write_collector
from tests.dashboards.panels import ROOT, Target, dashboards, substitute, targets, variables
from tests.dashboards.relay import Relay
from tests.metrics_util import wait_until
from tests.support.fixtures import requires_netns, requires_prometheus, requires_snmpsim
from tests.support.prometheus import PrometheusServer
from tests.support.snmp import SnmpSim

pytestmark = [requires_prometheus, requires_snmpsim, requires_netns]

RULES = ROOT / "deploy" / "prometheus" / "rules"

#: The tests' inventory and a site that never pushes: agents run for jun-0001 (loopback
#: targets and a MikroTik router), hco-0007 (loopback targets, one power cut) and
#: jun-0002 (an impaired link in a test bed).
INVENTORY = SITES + textwrap.indent(
    textwrap.dedent(
        """\
        - {site_id: jun-0003, site_name: Comisaría Comas, project: junin, ubigeo: "120206",
           institution_type: police, upstream_node: nodo-concepcion, access_tech: radio,
           latitude: -11.93, longitude: -75.33}
        """
    ),
    "  ",
)
#: Grafana's rendering of an "All" multi-value selection in a Prometheus regex.
VALUES = {
    "project": "(huanuco|junin)",
    "region": "(Huánuco|Junín)",
    "site": "(hco-0007|jun-0001|jun-0002|jun-0003)",
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "1h",
}
RANGE_SECONDS = 3600
STEP_SECONDS = 15
DEADLINE = 150.0


@dataclass(frozen=True)
class Outcome:
    error: str | None
    finite: bool  # at least one finite value in the result


def _post(url: str, params: Mapping[str, str]) -> dict[str, Any]:
    body = urllib.parse.urlencode(params).encode()
    request = urllib.request.Request(url, data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            answer: dict[str, Any] = json.load(response)
    except urllib.error.HTTPError as err:
        answer = json.loads(err.read() or b"{}")
    return answer


def _values(result_type: str, result: list[dict[str, Any]]) -> Iterator[float]:
    for series in result:
        if result_type == "matrix":
            yield from (float(v) for _, v in series["values"])
        else:
            yield float(series["value"][1])


def run(prom: PrometheusServer, target: Target) -> Outcome:
    """Run `target` as Grafana would for a panel showing the last hour."""
    expr = substitute(target.expr, VALUES)
    now = time.time()
    if target.instant:
        answer = _post(f"{prom.url}/api/v1/query", {"query": expr, "time": f"{now:.3f}"})
    else:
        answer = _post(
            f"{prom.url}/api/v1/query_range",
            {
                "query": expr,
                "start": f"{now - RANGE_SECONDS:.3f}",
                "end": f"{now:.3f}",
                "step": str(STEP_SECONDS),
            },
        )
    if answer.get("status") != "success":
        return Outcome(f"{answer.get('errorType')}: {answer.get('error')} in {expr}", False)
    data = answer["data"]
    if data["resultType"] not in ("vector", "matrix"):
        return Outcome(f"result type {data['resultType']} for {expr}", False)
    finite = any(math.isfinite(v) for v in _values(data["resultType"], data["result"]))
    return Outcome(None, finite)


def rules_for_test(folder: Path) -> list[Path]:
    """deploy/prometheus/rules/*.yml unchanged but for their groups' own `interval`, so
    that every group is evaluated at the test's global `evaluation_interval` (1 s): a group
    evaluated every 30 minutes in production would otherwise first run at a random moment
    within those 30 minutes."""
    folder.mkdir(parents=True)
    copies = []
    for path in sorted(RULES.glob("*.yml")):
        rules = yaml.safe_load(path.read_text(encoding="utf-8"))
        for group in rules.get("groups", []):
            group.pop("interval", None)
        copy = folder / path.name
        copy.write_text(yaml.safe_dump(rules, allow_unicode=True, sort_keys=False))
        copies.append(copy)
    return copies


def instant_values(
    prom: PrometheusServer, uid: str, panel: str, ref: str = "A"
) -> dict[str, float]:
    """The values an instant target of a committed dashboard shows now, keyed by the
    series' `site_id` (or `state`, or `__name__`)."""
    (target,) = [
        t
        for d in dashboards().values()
        for t in targets(d)
        if (t.dashboard, t.panel, t.ref) == (uid, panel, ref)
    ]
    assert target.instant
    expr = substitute(target.expr, VALUES)
    answer = _post(f"{prom.url}/api/v1/query", {"query": expr})
    assert answer["status"] == "success", answer
    found = {}
    for series in answer["data"]["result"]:
        labels = series["metric"]
        key = labels.get("site_id") or labels.get("state") or labels.get("__name__", "")
        found[key] = float(series["value"][1])
    return found


def label_values(prom: PrometheusServer, query: str) -> set[str]:
    """Grafana's `label_values(SELECTOR, LABEL)` variable query, through the HTTP API."""
    inner = query.removeprefix("label_values(").removesuffix(")")
    selector, label = (part.strip() for part in inner.rsplit(",", 1))
    params = urllib.parse.urlencode({"match[]": substitute(selector, VALUES)})
    answer = prom.get(f"/api/v1/label/{label}/values?{params}")
    assert answer["status"] == "success", answer
    return set(answer["data"])


def lists(prom: PrometheusServer, query: str, expected: set[str]) -> bool:
    """Whether the variable `query` offers every one of `expected`."""
    return label_values(prom, query) >= expected


LOOPBACK_TARGETS = """\
    - {name: gw, address: 127.0.0.1, role: gateway}
    - {name: internet, address: 127.0.0.2, role: internet}
"""


def agent_config(
    folder: Path, site_id: str, push_url: str, token: str, targets: str, *, extra: str = ""
) -> Path:
    folder.mkdir(parents=True)
    (folder / "token").write_text(token + "\n")
    path = folder / "agent.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            site_id: {site_id}
            state_dir: {folder / "state"}
            heartbeat_interval: 200ms
            probes:
              interval: 100ms
              timeout: 500ms
              targets:
            """
        )
        + textwrap.indent(targets, "  ")
        + textwrap.dedent(
            f"""\
            push:
              url: {push_url}
              token_file: {folder / "token"}
              interval: 250ms
              timeout: 2s
              spread: 0s
              clock_settle: 0s
            """
        )
        + extra
    )
    return path


def in_namespace(bed: Testbed, config: Path, log: Path) -> AgentProcess:
    """An agent running in the test bed's site namespace."""

    def get(host: str, port: int, path: str) -> tuple[int, bytes]:
        status, _, body = http_get(bed.site_ns, host, port, path)
        return status, body

    prefix = ["ip", "netns", "exec", bed.site_ns]
    return AgentProcess(config, free_port(), log, prefix=prefix, http_get=get)


def snmp_section(sim: SnmpSim) -> str:
    return textwrap.dedent(
        f"""\
        snmp:
          - name: router
            address: 127.0.0.1
            port: {sim.port}
            profile: mikrotik
            community: mikrotik
            interval: 1s
            timeout: 500ms
            retries: 1
        """
    )


def settles(read: Callable[[], object], expected: object, timeout: float = 30) -> None:
    """Poll `read` until it returns `expected`; fail showing the last value read."""
    last: list[object] = []

    def check() -> bool:
        last[:] = [read()]
        return last[0] == expected

    try:
        wait_until(check, timeout=timeout)
    except AssertionError:
        raise AssertionError(f"{last[0]!r} != {expected!r} within {timeout}s") from None


def pushed_ok(agent: AgentProcess) -> float:
    return agent.scrape().get("kipu_push_requests_total", result="ok") or 0.0


@pytest.mark.timeout(300)
def test_every_panel_query_returns_data(tmp_path: Path, snmpsim: SnmpSim, testbed: Testbed) -> None:
    rule_files = rules_for_test(tmp_path / "rules")
    assert rule_files, f"no recording rules in {RULES}"
    collector_port = free_port()
    prom = PrometheusServer(
        tmp_path / "prometheus",
        scrape_configs=[
            {
                "job_name": "kipu-collector",
                "scrape_interval": "1s",
                "static_configs": [{"targets": [f"127.0.0.1:{collector_port}"]}],
            }
        ],
        args=["--web.enable-remote-write-receiver"],
        extra_config={
            "storage": {"tsdb": {"out_of_order_time_window": "1h"}},
            "rule_files": [str(path) for path in rule_files],
        },
    )
    config = write_collector(
        tmp_path / "noc",
        extra=f"forward: {{url: '{prom.url}/api/v1/write', timeout: 5s}}\n",
        sites=INVENTORY,
    )
    collector = CollectorProcess(config, tmp_path / "collector.log", port=collector_port)
    # jun-0002's link is impaired: 4G-like delay and jitter, and a third of the echo
    # requests lost, so loss and the RTT spread have something to show.
    testbed.set(delay=0.030, jitter=0.015, loss=0.3)
    lossy = f"- {{name: pop, address: {testbed.target_addresses[0]}, role: pop}}\n"
    with ExitStack() as stack:
        stack.enter_context(prom)
        stack.enter_context(collector)
        relay = stack.enter_context(Relay(testbed.site_ns, collector_port))
        agents = {
            "jun-0001": AgentProcess(
                agent_config(
                    tmp_path / "jun-0001",
                    "jun-0001",
                    collector.write_url,
                    issue_token(config, "jun-0001"),
                    LOOPBACK_TARGETS,
                    extra=snmp_section(snmpsim),
                ),
                free_port(),
                tmp_path / "jun-0001.log",
            ),
            "hco-0007": AgentProcess(
                agent_config(
                    tmp_path / "hco-0007",
                    "hco-0007",
                    collector.write_url,
                    issue_token(config, "hco-0007"),
                    LOOPBACK_TARGETS,
                ),
                free_port(),
                tmp_path / "hco-0007.log",
            ),
            "jun-0002": in_namespace(
                testbed,
                agent_config(
                    tmp_path / "jun-0002",
                    "jun-0002",
                    f"http://127.0.0.1:{relay.port}/api/v1/write",
                    issue_token(config, "jun-0002"),
                    lossy,
                ),
                tmp_path / "jun-0002.log",
            ),
        }
        for agent in agents.values():
            stack.enter_context(agent)
        # A push with no token: the collector refuses it, so "requests refused" has a
        # reason to show.
        status, _ = post_write(collector.write_url, None, gauge_body("kipu_test_gauge"))
        assert status == 401
        wait_until(lambda: all(pushed_ok(a) >= 2 for a in agents.values()), timeout=60)
        # A power cut at a site: the agent dies without saving, and the gap before it
        # starts again is counted as time off.
        cut = agents["hco-0007"]
        assert cut.stop(signal.SIGKILL) == -signal.SIGKILL
        cut.start()
        # An outage of jun-0002's link: its target stops answering until the agent sees
        # the link down, then answers again.
        impaired = agents["jun-0002"]
        testbed.set(down=True)
        wait_until(lambda: impaired.scrape().get("kipu_link_up") == 0, timeout=30)
        testbed.set(down=False)
        wait_until(lambda: impaired.scrape().get("kipu_link_up") == 1, timeout=30)

        # Variables: each chained query lists the test's values.
        for dashboard in dashboards().values():
            for name, definition in variables(dashboard).items():
                if definition["type"] != "query":
                    continue
                expected = {
                    "project": {"junin", "huanuco"},
                    "region": {"Junín", "Huánuco"},
                    "site": {"jun-0001", "jun-0002", "jun-0003", "hco-0007"},
                }[name]
                query = str(definition["query"])
                wait_until(partial(lists, prom, query, expected), timeout=60)

        pending = [t for d in dashboards().values() for t in targets(d)]
        assert len(pending) > 40
        errors: dict[Target, str] = {}
        deadline = time.monotonic() + DEADLINE
        while pending:
            still = []
            for target in pending:
                outcome = run(prom, target)
                if outcome.error is not None:
                    errors[target] = outcome.error
                elif not outcome.finite:
                    still.append(target)
            pending = still
            if not pending or time.monotonic() > deadline:
                break
            time.sleep(1.0)  # poll again: rules and rates need more samples

        assert not errors, "\n".join(f"{t}: {e}" for t, e in errors.items())
        assert not pending, "no data within the deadline:\n" + "\n".join(
            f"{t}: {substitute(t.expr, VALUES)}" for t in pending
        )

        # What some panels show is what happened.
        settles(
            partial(instant_values, prom, "kipu-noc-overview", "Sites by state"),
            {"reporting": 3, "silent": 0, "never_seen": 1},
        )
        settles(
            partial(instant_values, prom, "kipu-noc-overview", "Sites"),
            {"jun-0001": 2, "hco-0007": 2, "jun-0002": 2, "jun-0003": 0},
        )
        link = instant_values(prom, "kipu-site", "Link")
        assert set(link) == {"jun-0001", "jun-0002", "hco-0007"}
        assert link["jun-0001"] == link["hco-0007"] == 1
        assert instant_values(prom, "kipu-fleet", "Pushes blocked") == {"": 0}
        wait_until(
            lambda: instant_values(prom, "kipu-noc-overview", "Worst links")["jun-0002"] > 0.05,
            timeout=60,
        )
        assert instant_values(prom, "kipu-noc-overview", "Worst links")["jun-0001"] == 0
        wait_until(
            lambda: instant_values(prom, "kipu-site", "Outages").get("jun-0002", 0) >= 1,
            timeout=60,
        )
        wait_until(
            lambda: instant_values(prom, "kipu-site", "Time off (power cuts)")["hco-0007"] > 0,
            timeout=60,
        )
        assert instant_values(prom, "kipu-site", "Time off (power cuts)")["jun-0001"] == 0
        for agent in agents.values():
            assert agent.stop() == 0
        assert collector.stop() == 0
