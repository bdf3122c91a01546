"""Real Alertmanager, VictoriaMetrics and vmalert processes, a loopback webhook receiver,
and test copies of kipu's rules and routes, for the tests of deploy/prometheus and
deploy/alertmanager.

Test copies are generated from the real files, so they stay in sync: only timings change
(`for:` and evaluation intervals shortened, receivers pointed at the test's webhook); every
expression, label, route and inhibition rule is the shipped one.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from tests.support.daemon import Daemon

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
RULES_DIR = PROMETHEUS_DIR / "rules"
RULE_FILES = sorted(RULES_DIR.glob("*.yml"))
PROMTOOL_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
ALERTMANAGER_DIR = ROOT / "deploy" / "alertmanager"
ALERTMANAGER_CONFIG = ALERTMANAGER_DIR / "alertmanager.yml"

AMTOOL = shutil.which("amtool") or "/usr/bin/amtool"
ALERTMANAGER = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"
VMALERT = shutil.which("vmalert") or "/usr/bin/vmalert"
VICTORIA_METRICS = shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"

#: Scopes whose alerts the topology alerts hold back.
TOPOLOGY_SCOPES = ("node", "region")


def missing(*tools: str) -> str | None:
    """Why one of `tools` (paths) cannot run here, or None."""
    for tool in tools:
        if not Path(tool).exists():
            return f"{tool} not installed"
    return None


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def rule_groups() -> list[dict[str, Any]]:
    """Every rule group of deploy/prometheus/rules, in file order."""
    return [group for path in RULE_FILES for group in load_yaml(path)["groups"]]


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in rule_groups() for rule in group["rules"] if "alert" in rule]


def record_names() -> set[str]:
    return {
        rule["record"] for group in rule_groups() for rule in group["rules"] if "record" in rule
    }


def fast_rules(dest: Path, *, site_for: str, topology_for: str, interval: str = "1s") -> list[Path]:
    """Copies of the rule files in `dest` that evaluate every `interval`, with every
    alert's `for:` set to `topology_for` (node and region alerts) or `site_for` (others)."""
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for path in RULE_FILES:
        document = load_yaml(path)
        for group in document["groups"]:
            group["interval"] = interval
            for rule in group["rules"]:
                if "alert" in rule:
                    scope = rule.get("labels", {}).get("scope")
                    rule["for"] = topology_for if scope in TOPOLOGY_SCOPES else site_for
        target = dest / path.name
        target.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False))
        written.append(target)
    return written


def alertmanager_test_config(dest: Path, webhook_url: str) -> Path:
    """deploy/alertmanager with every receiver sent to `webhook_url` and the route's waits
    cut to a second; routes, grouping and inhibition rules unchanged."""
    shutil.copytree(ALERTMANAGER_DIR / "templates", dest / "templates", dirs_exist_ok=True)
    config = load_yaml(ALERTMANAGER_CONFIG)
    config.pop("global", None)
    for receiver in config["receivers"]:
        name = receiver["name"]
        receiver.clear()
        receiver["name"] = name
        receiver["webhook_configs"] = [{"url": webhook_url, "send_resolved": True}]

    def quicken(route: dict[str, Any]) -> None:
        for key in ("group_wait", "group_interval"):
            if key in route or route is config["route"]:
                route[key] = "1s"
        if "repeat_interval" in route or route is config["route"]:
            route["repeat_interval"] = "1h"
        for child in route.get("routes", []):
            quicken(child)

    quicken(config["route"])
    path = dest / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False))
    return path


def http_json(url: str, payload: Any = None, timeout: float = 10) -> Any:
    """GET `url` (or POST `payload` as JSON) and decode the JSON answer."""
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, method="GET" if data is None else "POST")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        body = response.read()
    return json.loads(body) if body else None


class Alertmanager(Daemon):
    """Debian's prometheus-alertmanager, clustering off."""

    name = "alertmanager"

    def __init__(self, workdir: Path, config: Path) -> None:
        super().__init__(workdir)
        self.config = config

    def argv(self) -> list[str]:
        return [
            ALERTMANAGER,
            f"--config.file={self.config}",
            f"--storage.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",
        ]

    def post_alerts(self, alerts: Sequence[dict[str, Any]]) -> None:
        http_json(f"{self.url}/api/v2/alerts", list(alerts))

    def alerts(self) -> list[dict[str, Any]]:
        """Every alert Alertmanager holds, with its status (active, suppressed)."""
        return list(http_json(f"{self.url}/api/v2/alerts"))


class VictoriaMetrics(Daemon):
    """Debian's single-node victoria-metrics; data is visible to queries at once."""

    name = "victoria-metrics"
    ready_path = "/health"

    def argv(self) -> list[str]:
        return [
            VICTORIA_METRICS,
            f"-storageDataPath={self.workdir / 'data'}",
            f"-httpListenAddr=127.0.0.1:{self.port}",
            "-retentionPeriod=1y",
            "-search.latencyOffset=1s",
            "-search.disableCache",
        ]

    def query(self, expr: str) -> list[dict[str, Any]]:
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        body = http_json(url)
        assert body["status"] == "success", body
        return list(body["data"]["result"])


class VMAlert(Daemon):
    """Debian's vmalert evaluating `rules` against VictoriaMetrics, writing back to it."""

    name = "vmalert"
    ready_path = "/health"

    def __init__(self, workdir: Path, rules: Sequence[Path], store: str, notifier: str) -> None:
        super().__init__(workdir)
        self.rules, self.store, self.notifier = list(rules), store, notifier

    def argv(self) -> list[str]:
        return [
            VMALERT,
            *(f"-rule={path}" for path in self.rules),
            f"-datasource.url={self.store}",
            f"-remoteWrite.url={self.store}",
            "-remoteWrite.flushInterval=200ms",
            f"-notifier.url={self.notifier}",
            f"-httpListenAddr=127.0.0.1:{self.port}",
            "-evaluationInterval=1s",
        ]

    def alerts(self) -> list[dict[str, Any]]:
        body = http_json(f"{self.url}/api/v1/alerts")
        return list(body["data"]["alerts"])


class WebhookReceiver:
    """Alertmanager's webhook receiver on loopback: keeps every notification it gets.
    Also answers POST /api/v2/alerts, so vmalert may use it as its notifier."""

    def __init__(self) -> None:
        self.notifications: list[dict[str, Any]] = []
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with receiver._changed:
                    receiver.notifications.append(
                        {"path": self.path, "body": json.loads(body or b"null")}
                    )
                    receiver._changed.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def alerts(self) -> list[tuple[str, dict[str, Any]]]:
        """(receiver, alert) for every alert of every Alertmanager notification so far."""
        with self._changed:
            found = []
            for note in self.notifications:
                body = note["body"]
                if isinstance(body, dict) and "alerts" in body:
                    found += [(str(body["receiver"]), alert) for alert in body["alerts"]]
            return found

    def wait_for(
        self, check: Callable[[list[tuple[str, dict[str, Any]]]], bool], timeout: float
    ) -> list[tuple[str, dict[str, Any]]]:
        """Block until `check(alerts())` holds (woken by each notification); fail at the
        deadline with what arrived."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not check(self.alerts()):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"webhook never got it; it got: {self.alerts()}")
                self._changed.wait(min(left, 1.0))
            return self.alerts()

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(10)
