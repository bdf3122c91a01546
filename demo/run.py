"""The demo: a regional project's NOC watching its sites, some of them failing.

It runs, all on this machine:

- a kipu-collector with the project's inventory (demo/project.py), listening on loopback
  for the NOC and on the emulated network for the sites, forwarding into Prometheus;
- one real kipu-agent per site, each in its own network namespace behind an emulated
  link with its access technology's latency (demo/network.py), pushing to the collector,
  and reading the site's WiFi access point over SNMP (snmpsim, demo/devices.py: clients
  follow a daily curve);
- Prometheus with kipu's rules and Alertmanager with kipu's routing (Debian's packages),
  its notifications delivered to a webhook here that prints them;
- a scenario: links cut (the site goes silent, then sends its backlog), power cuts (the
  agent killed, started again minutes later: offline seconds grow), a whole upstream node
  failing, a lossy radio link. Each event is printed and written to `events.jsonl`.

Ctrl-C (or `--duration`) stops everything it started, by PID, and deletes the namespaces.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from collector.auth import TokenStore
from demo.devices import community, write_recordings
from demo.network import NOC_ADDRESS, Network
from demo.project import PROJECT, DemoSite, generate

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "deploy" / "prometheus" / "rules"
ALERTMANAGER = ROOT / "deploy" / "alertmanager"


@dataclass(frozen=True)
class Pace:
    """How fast the demo runs: the real pace, or `--fast` (for the test: five times faster)."""

    push: str
    probe: str
    snmp: str
    silent_after: str
    scrape: str
    max_for: float  # alert rules' `for:` capped at this many seconds
    group_wait: str
    group_interval: str
    scale: float  # the scenario's times are multiplied by this


NORMAL = Pace("15s", "2s", "30s", "90s", "15s", 60.0, "10s", "30s", 1.0)
FAST = Pace("2s", "1s", "5s", "6s", "2s", 4.0, "1s", "2s", 0.2)

# The scenario, repeated every CYCLE seconds (times at the real pace): event, start, length.
CYCLE = 1200.0
SCENARIO = (
    ("cut", 60.0, 240.0),
    ("power", 120.0, 180.0),
    ("node", 420.0, 300.0),
    ("loss", 780.0, 240.0),
)


def _duration(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text)
    if match is None:
        raise ValueError(f"not a duration: {text!r}")
    value, unit = float(match.group(1)), match.group(2)
    return value * {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[unit]


def cap_for(rules: dict[str, Any], seconds: float) -> dict[str, Any]:
    """A copy of a Prometheus rule file whose alerts wait at most `seconds` (`for:`)."""
    groups = []
    for group in rules.get("groups", []):
        kept = []
        for original in group.get("rules", []):
            rule = dict(original)
            if "for" in rule and _duration(str(rule["for"])) > seconds:
                rule["for"] = f"{seconds:g}s"
            kept.append(rule)
        groups.append({**group, "rules": kept})
    return {**rules, "groups": groups}


def port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _get(url: str, timeout: float = 2.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        body: bytes = answer.read()
        return body


class Webhook:
    """Alertmanager's receiver in the demo: prints each alert and keeps them in a file."""

    def __init__(self, path: Path, say: Callable[[str], None]) -> None:
        self.path = path
        self.say = say
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self.send_response(200)
                self.end_headers()
                hook.received(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/alerts"

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def received(self, body: bytes) -> None:
        try:
            message = json.loads(body)
        except ValueError:
            return
        with self.lock, self.path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(message, ensure_ascii=False) + "\n")
        for alert in message.get("alerts", []):
            labels = alert.get("labels", {})
            what = labels.get("site_name") or labels.get("upstream_node") or labels.get("region")
            self.say(
                f"alert {alert.get('status', '?')}: {labels.get('alertname', '?')}"
                f" {labels.get('site_id', '')} {what or ''}".rstrip()
            )


@dataclass
class Agent:
    index: int
    site: DemoSite
    config: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None


@dataclass
class Demo:
    sites: list[DemoSite]
    workdir: Path
    pace: Pace
    ports: dict[str, int]
    seed: int = 1
    quiet: bool = False
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    agents: list[Agent] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    pending: list[tuple[float, Callable[[], None]]] = field(default_factory=list)

    # -- output

    def say(self, text: str) -> None:
        if not self.quiet:
            print(time.strftime("%H:%M:%S"), text, flush=True)

    def event(self, kind: str, **details: Any) -> None:
        record = {"at": time.time(), "event": kind, **details}
        with (self.workdir / "events.jsonl").open("a", encoding="utf-8") as out:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")

    # -- files

    def write_files(self, webhook: Webhook) -> None:
        w = self.workdir
        inventory = {"sites": [s.inventory_row() for s in self.sites]}
        (w / "sites.yaml").write_text(
            yaml.safe_dump(inventory, allow_unicode=True, sort_keys=False)
        )
        (w / "collector.yaml").write_text(
            yaml.safe_dump(
                {
                    "inventory": "sites.yaml",
                    "state_dir": "collector-state",
                    "silent_after": self.pace.silent_after,
                    "forward": {
                        "url": f"http://127.0.0.1:{self.ports['prometheus']}/api/v1/write",
                        "max_queue": "1GiB",
                    },
                }
            )
        )
        tokens = TokenStore(w / "collector-state").issue_many([s.site_id for s in self.sites])
        rules = w / "rules"
        rules.mkdir()
        for path in sorted(RULES.glob("*.yml")):
            capped = cap_for(yaml.safe_load(path.read_text()), self.pace.max_for)
            (rules / path.name).write_text(yaml.safe_dump(capped, allow_unicode=True))
        (w / "prometheus.yml").write_text(
            yaml.safe_dump(
                {
                    "global": {
                        "scrape_interval": self.pace.scrape,
                        "evaluation_interval": self.pace.scrape,
                    },
                    "storage": {"tsdb": {"out_of_order_time_window": "12h"}},
                    "rule_files": [str(rules / "*.yml")],
                    "alerting": {
                        "alertmanagers": [
                            {
                                "static_configs": [
                                    {"targets": [f"127.0.0.1:{self.ports['alertmanager']}"]}
                                ]
                            }
                        ]
                    },
                    "scrape_configs": [
                        {
                            "job_name": "kipu-collector",
                            "static_configs": [
                                {"targets": [f"127.0.0.1:{self.ports['collector']}"]}
                            ],
                        }
                    ],
                }
            )
        )
        (w / "alertmanager.yml").write_text(yaml.safe_dump(self.alertmanager(webhook.url)))
        for i, site in enumerate(self.sites):
            folder = w / "sites" / site.site_id
            folder.mkdir(parents=True)
            token = folder / "token"
            token.write_text(tokens[site.site_id] + "\n")
            token.chmod(0o600)
            config = folder / "agent.yaml"
            config.write_text(
                yaml.safe_dump(
                    {
                        "site_id": site.site_id,
                        "listen": "127.0.0.1:9108",
                        "state_dir": str(folder / "state"),
                        "probes": {
                            "interval": self.pace.probe,
                            "timeout": "2s",
                            "targets": [
                                {"name": "pop", "address": Network.pop_address(i), "role": "pop"},
                                {
                                    "name": "internet",
                                    "address": Network.internet_address(i),
                                    "role": "internet",
                                },
                            ],
                        },
                        "snmp": [
                            {
                                "name": "ap",
                                "address": Network.device_address(i),
                                "profile": "ubiquiti_unifi",
                                "community": community(site),
                                "interval": self.pace.snmp,
                            }
                        ],
                        "push": {
                            "url": f"http://{NOC_ADDRESS}:{self.ports['collector']}/api/v1/write",
                            "token_file": str(token),
                            "interval": self.pace.push,
                            "clock_settle": "0s",
                        },
                    }
                )
            )
            self.agents.append(Agent(i, site, config, folder / "agent.log"))

    def alertmanager(self, webhook: str) -> dict[str, Any]:
        """kipu's Alertmanager configuration, every receiver delivering to the demo's
        webhook, waits shortened to the demo's pace, templates from the repository."""
        config: dict[str, Any] = yaml.safe_load((ALERTMANAGER / "alertmanager.yml").read_text())
        config["receivers"] = [
            {"name": r["name"], "webhook_configs": [{"url": webhook, "send_resolved": True}]}
            for r in config.get("receivers", [])
        ]
        config["templates"] = [str(ALERTMANAGER / "templates" / "*.tmpl")]

        def pace(route: dict[str, Any]) -> None:
            for key, value in (
                ("group_wait", self.pace.group_wait),
                ("group_interval", self.pace.group_interval),
            ):
                if key in route:
                    route[key] = value
            for child in route.get("routes", []):
                pace(child)

        pace(config["route"])
        config["route"]["group_wait"] = self.pace.group_wait
        config["route"]["group_interval"] = self.pace.group_interval
        return config

    # -- processes

    def start(self, argv: list[str], log: Path) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=out, stdin=subprocess.DEVNULL)
        self.processes.append(proc)
        return proc

    def wait_ready(self, name: str, url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not self.stop.is_set():
            if proc.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{tail}")
            with contextlib.suppress(OSError):
                _get(url)
                return
            self.stop.wait(0.2)
        raise RuntimeError(f"{name} did not get ready within 60 s (log: {log})")

    def start_noc(self) -> None:
        w, p = self.workdir, self.ports
        prometheus = self.start(
            [
                "prometheus",
                f"--config.file={w / 'prometheus.yml'}",
                f"--storage.tsdb.path={w / 'prometheus'}",
                f"--web.listen-address=127.0.0.1:{p['prometheus']}",
                "--web.enable-remote-write-receiver",
                "--web.enable-lifecycle",
            ],
            w / "prometheus.log",
        )
        alertmanager = self.start(
            [
                "prometheus-alertmanager",
                f"--config.file={w / 'alertmanager.yml'}",
                f"--storage.path={w / 'alertmanager'}",
                f"--web.listen-address=127.0.0.1:{p['alertmanager']}",
                "--cluster.listen-address=",
            ],
            w / "alertmanager.log",
        )
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with (w / "collector.log").open("ab") as out:
            collector = subprocess.Popen(
                [
                    sys.executable, "-m", "collector", f"--config.file={w / 'collector.yaml'}",
                    f"--web.listen-address=127.0.0.1:{p['collector']}",
                    f"--web.listen-address={NOC_ADDRESS}:{p['collector']}",
                ],
                stdout=out, stderr=out, stdin=subprocess.DEVNULL, env=env,
            )  # fmt: skip
        self.processes.append(collector)
        self.wait_ready(
            "prometheus", f"http://127.0.0.1:{p['prometheus']}/-/ready", prometheus,
            w / "prometheus.log",
        )  # fmt: skip
        self.wait_ready(
            "alertmanager", f"http://127.0.0.1:{p['alertmanager']}/-/ready", alertmanager,
            w / "alertmanager.log",
        )  # fmt: skip
        self.wait_ready(
            "kipu-collector", f"http://127.0.0.1:{p['collector']}/healthz", collector,
            w / "collector.log",
        )  # fmt: skip

    def start_devices(self, net: Network) -> None:
        """snmpsim in the wan namespace, one endpoint per site's access point."""
        data = write_recordings(self.workdir / "snmp", self.sites)
        responder = Path(sys.executable).with_name("snmpsim-command-responder")
        log = self.workdir / "snmpsim.log"
        with log.open("ab") as out:
            proc = net.exec_wan(
                [
                    str(responder), f"--data-dir={data}",
                    f"--cache-dir={self.workdir / 'snmp-cache'}", "--log-level=error",
                    *(
                        f"--agent-udpv4-endpoint={Network.device_address(a.index)}:161"
                        for a in self.agents
                    ),
                ],
                stdout=out, stderr=out, stdin=subprocess.DEVNULL,
                env={**os.environ, "SNMPSIM_ALLOW_ROOT": "true"},
            )  # fmt: skip
        self.processes.append(proc)

    def start_agent(self, net: Network, agent: Agent) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with agent.log.open("ab") as out:
            agent.proc = net.exec_site(
                agent.index,
                [sys.executable, "-m", "agent", f"--config.file={agent.config}"],
                stdout=out, stderr=out, stdin=subprocess.DEVNULL, env=env,
            )  # fmt: skip

    def stop_all(self) -> None:
        """Every process started here, by PID: agents first, then the NOC."""
        procs = [a.proc for a in self.agents if a.proc is not None] + self.processes[::-1]
        for proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    # -- the scenario

    def scenario(self, net: Network, until: float) -> None:
        """Play the scenario until `until` (monotonic) or a stop; what is still cut then
        stays cut: the namespaces go anyway."""
        rng = random.Random(self.seed)
        start = time.monotonic()
        cycle = 0
        while not self.stop.is_set() and time.monotonic() < until:
            base = start + cycle * CYCLE * self.pace.scale
            # The node that fails this cycle; the other incidents happen elsewhere, so
            # that each is seen on its own (a cut site's backlog is not cut off again).
            terrestrial = [a for a in self.agents if a.site.access_tech != "satellite"]
            node = rng.choice(sorted({a.site.upstream_node for a in terrestrial}))
            for kind, at, length in SCENARIO:
                begin = self._begin(net, rng, kind, length, node)
                self._at(base + at * self.pace.scale, begin)
            cycle_end = base + CYCLE * self.pace.scale
            while not self.stop.is_set() and time.monotonic() < min(until, cycle_end):
                now = time.monotonic()
                due = sorted((p for p in self.pending if p[0] <= now), key=lambda p: p[0])
                self.pending = [p for p in self.pending if p[0] > now]
                for _, action in due:
                    action()
                self.stop.wait(0.2)
            cycle += 1

    def _at(self, when: float, action: Callable[[], None]) -> None:
        self.pending.append((when, action))

    def _after(self, seconds: float, action: Callable[[], None]) -> None:
        self._at(time.monotonic() + seconds * self.pace.scale, action)

    def _begin(
        self, net: Network, rng: random.Random, kind: str, length: float, node: str
    ) -> Callable[[], None]:
        def begin() -> None:
            agents = [
                a
                for a in self.agents
                if a.site.access_tech != "satellite" and a.site.upstream_node != node
            ]
            if kind == "cut":
                chosen = rng.sample(agents, 2)
                for a in chosen:
                    net.cut(a.index)
                    self.say(f"link cut: {a.site.site_id} {a.site.site_name}")
                self.event("cut", sites=[a.site.site_id for a in chosen])

                def restore() -> None:
                    for a in chosen:
                        net.cut(a.index, down=False)
                        self.say(f"link back: {a.site.site_id} (its backlog follows)")
                    self.event("restore", sites=[a.site.site_id for a in chosen])

                self._after(length, restore)
            elif kind == "power":
                a = rng.choice(agents)
                if a.proc is not None and a.proc.poll() is None:
                    a.proc.kill()
                    a.proc.wait(5)
                self.say(f"power cut: {a.site.site_id} {a.site.site_name} (agent killed)")
                self.event("power_cut", sites=[a.site.site_id])

                def power_back() -> None:
                    self.start_agent(net, a)
                    self.say(f"power back: {a.site.site_id} (offline seconds grow)")
                    self.event("power_back", sites=[a.site.site_id])

                self._after(length, power_back)
            elif kind == "node":
                chosen = [a for a in self.agents if a.site.upstream_node == node]
                for a in chosen:
                    net.cut(a.index)
                self.say(f"upstream node down: {node} ({len(chosen)} sites)")
                self.event("node_down", node=node, sites=[a.site.site_id for a in chosen])

                def node_back() -> None:
                    for a in chosen:
                        net.cut(a.index, down=False)
                    self.say(f"upstream node back: {node}")
                    self.event("node_up", node=node, sites=[a.site.site_id for a in chosen])

                self._after(length, node_back)
            elif kind == "loss":
                radio = [a for a in agents if a.site.access_tech in ("radio", "4g")] or agents
                a = rng.choice(radio)
                net.set_link(a.index, loss=0.3)
                self.say(f"lossy link: {a.site.site_id} {a.site.site_name} (30% loss)")
                self.event("loss", sites=[a.site.site_id])

                def clean() -> None:
                    net.set_link(a.index, loss=a.site.link.loss)
                    self.say(f"loss over: {a.site.site_id}")
                    self.event("loss_over", sites=[a.site.site_id])

                self._after(length, clean)

        return begin

    # -- the whole run

    def run(self, duration: float | None) -> None:
        webhook = Webhook(self.workdir / "notifications.jsonl", self.say)
        webhook.start()
        try:
            self.write_files(webhook)
            with Network(len(self.sites)) as net:
                try:
                    for agent in self.agents:
                        link = agent.site.link
                        net.set_link(
                            agent.index, delay=link.delay, jitter=link.jitter, loss=link.loss,
                            internet_extra=link.internet_extra,
                        )  # fmt: skip
                    self.start_noc()
                    self.start_devices(net)
                    for agent in self.agents:
                        self.start_agent(net, agent)
                    until = time.monotonic() + (duration if duration else float("inf"))
                    self.wait_reporting(until)
                    self.banner()
                    self.scenario(net, until)
                finally:
                    self.stop_all()
        finally:
            webhook.stop()

    def wait_reporting(self, until: float) -> None:
        """Until every site has pushed once (or a minute passed): the scenario starts then."""
        url = f"http://127.0.0.1:{self.ports['collector']}/healthz"
        deadline = min(until, time.monotonic() + 60)
        reporting = 0
        while not self.stop.is_set() and time.monotonic() < deadline:
            with contextlib.suppress(OSError, ValueError):
                reporting = json.loads(_get(url))["sites"]["reporting"]
            if reporting == len(self.sites):
                return
            self.stop.wait(0.5)
        self.say(f"{reporting} of {len(self.sites)} sites report so far; the scenario starts")

    def banner(self) -> None:
        p = self.ports
        nodes = len({s.upstream_node for s in self.sites})
        provinces = len({s.district.province for s in self.sites})
        self.say(
            f"{len(self.sites)} sites of project {PROJECT} in {provinces} provinces behind "
            f"{nodes} upstream nodes, one kipu-agent each\n"
            f"  NOC page      http://127.0.0.1:{p['collector']}/\n"
            f"  Prometheus    http://127.0.0.1:{p['prometheus']}/\n"
            f"  Alertmanager  http://127.0.0.1:{p['alertmanager']}/\n"
            f"  files and logs in {self.workdir}; Ctrl-C stops everything"
        )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="demo",
        description="A simulated regional project through real kipu agents, the collector, "
        "Prometheus and Alertmanager. Needs root (network namespaces).",
    )
    p.add_argument("--sites", type=int, default=60, help="about this many sites (default 60)")
    p.add_argument("--workdir", type=Path, default=Path("demo-state"), help="files and logs")
    p.add_argument("--duration", type=float, default=None, help="stop after SECONDS")
    p.add_argument("--fast", action="store_true", help="five times faster (for tests)")
    p.add_argument("--seed", type=int, default=1, help="the scenario's random seed")
    p.add_argument("--collector-port", type=int, default=9109)
    p.add_argument("--prometheus-port", type=int, default=9090)
    p.add_argument("--alertmanager-port", type=int, default=9093)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print(
            "demo: needs root: the simulated sites live in network namespaces (run it with sudo)",
            file=sys.stderr,
        )
        return 1
    for tool in ("ip", "prometheus", "prometheus-alertmanager"):
        if shutil.which(tool) is None:
            print(f"demo: `{tool}` is missing (scripts/demo installs it)", file=sys.stderr)
            return 1
    ports = {
        "collector": args.collector_port,
        "prometheus": args.prometheus_port,
        "alertmanager": args.alertmanager_port,
    }
    for name, port in ports.items():
        if not port_free("127.0.0.1", port):
            print(f"demo: port {port} ({name}) is in use; pick another with --{name}-port",
                  file=sys.stderr)  # fmt: skip
            return 1
    workdir: Path = args.workdir.resolve()
    shutil.rmtree(workdir, ignore_errors=True)  # every run starts afresh
    workdir.mkdir(parents=True)
    demo = Demo(generate(args.sites), workdir, FAST if args.fast else NORMAL, ports, args.seed)
    signal.signal(signal.SIGTERM, lambda *_: demo.stop.set())
    try:
        demo.run(args.duration)
    except KeyboardInterrupt:
        demo.stop.set()
    except RuntimeError as err:
        print(f"demo: {err}", file=sys.stderr)
        return 2
    demo.say("stopped; everything the demo started has ended")
    return 0
