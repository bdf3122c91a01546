"""An outage of a site's link, end to end through real namespaces and real processes.

The far namespace holds the NOC: kipu-collector listening on a far address and a real
Prometheus (remote-write receiver) on the far namespace's loopback, where the collector
forwards. The site namespace holds a kipu-agent pushing to the collector across the veth
pair. Setting the site's end of the pair down cuts the link: the collector sees the site
go silent, and once the link is back the agent's spooled snapshots reach Prometheus with
their original timestamps, leaving no gap over the cut.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from demo.netns import Testbed, http_get
from tests.agent_process import AgentProcess
from tests.collector_process import ROOT, issue_token, write_collector
from tests.metrics_util import Scrape, parse, wait_until
from tests.support.fixtures import requires_netns, requires_prometheus
from tests.support.prometheus import PROMETHEUS

pytestmark = [requires_netns, requires_prometheus]

INTERVAL = 0.2  # the agent's push interval, seconds
SILENT_AFTER = 2.0  # write_collector's silent_after
COLLECTOR_PORT = 9109  # on the far address: the namespace is fresh, any port is free
PROMETHEUS_PORT = 9090  # on the far namespace's loopback
AGENT_PORT = 9108  # on the site namespace's loopback
SITE = {"site_id": "jun-0001", "project": "junin", "region": "Junín"}
QUIET = {"site_id": "jun-0002", "project": "junin", "region": "Junín"}  # never pushes


def stop(proc: subprocess.Popen[bytes] | None, timeout: float = 15) -> None:
    """Stop a process this test started, by its PID: SIGTERM, then SIGKILL."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def log_tail(path: Path, size: int = 4000) -> str:
    return path.read_text(errors="replace")[-size:] if path.exists() else ""


class Noc:
    """The collector and Prometheus inside the far namespace, reached through the test bed."""

    def __init__(self, bed: Testbed, workdir: Path) -> None:
        self.bed = bed
        self.workdir = workdir
        self.address = bed.target_addresses[0]
        self.collector: subprocess.Popen[bytes] | None = None
        self.prometheus: subprocess.Popen[bytes] | None = None
        self.collector_log = workdir / "collector.log"
        self.prometheus_log = workdir / "prometheus.log"
        self.config = write_collector(
            workdir / "collector",
            f"forward: {{url: 'http://127.0.0.1:{PROMETHEUS_PORT}/api/v1/write', "
            "max_queue: 64MiB, timeout: 5s}\n",
        )

    @property
    def write_url(self) -> str:
        return f"http://{self.address}:{COLLECTOR_PORT}/api/v1/write"

    def start(self) -> None:
        self._start_prometheus()
        self._start_collector()

    def _start_prometheus(self) -> None:
        folder = self.workdir / "prometheus"
        folder.mkdir(parents=True)
        config = folder / "prometheus.yml"
        config.write_text(
            json.dumps(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "scrape_configs": [],
                    "storage": {"tsdb": {"out_of_order_time_window": "1h"}},
                }
            )
        )
        argv = [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}",
            "--web.enable-remote-write-receiver",
        ]
        with self.prometheus_log.open("ab") as log:
            self.prometheus = self.bed.exec_far(argv, stdout=log, stderr=log)
        wait_until(self._prometheus_ready, timeout=30, step=0.1)

    def _prometheus_ready(self) -> bool:
        assert self.prometheus is not None
        if self.prometheus.poll() is not None:
            raise AssertionError(
                f"prometheus exited {self.prometheus.returncode}:\n{log_tail(self.prometheus_log)}"
            )
        try:
            status, _, _ = http_get(self.bed.far_ns, "127.0.0.1", PROMETHEUS_PORT, "/-/ready")
        except OSError:
            return False
        return status == 200

    def _start_collector(self) -> None:
        argv = [
            sys.executable,
            "-m",
            "collector",
            f"--config.file={self.config}",
            f"--web.listen-address={self.address}:{COLLECTOR_PORT}",
        ]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with self.collector_log.open("ab") as log:
            self.collector = self.bed.exec_far(argv, stdout=log, stderr=log, env=env)
        wait_until(self._collector_healthy, timeout=30, step=0.1)

    def _collector_healthy(self) -> bool:
        assert self.collector is not None
        if self.collector.poll() is not None:
            raise AssertionError(
                f"collector exited {self.collector.returncode}:\n{log_tail(self.collector_log)}"
            )
        try:
            status, _, _ = self._collector_get("/healthz")
        except OSError:
            return False
        return status == 200

    def _collector_get(self, path: str) -> tuple[int, dict[str, str], bytes]:
        return http_get(self.bed.far_ns, self.address, COLLECTOR_PORT, path)

    def scrape(self) -> Scrape:
        status, _, body = self._collector_get("/metrics")
        assert status == 200, body
        return parse(body.decode())

    def health(self) -> dict[str, Any]:
        status, _, body = self._collector_get("/healthz")
        assert status == 200, body
        return dict(json.loads(body))

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query to Prometheus; the result (raises on a query error)."""
        path = "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        status, _, body = http_get(self.bed.far_ns, "127.0.0.1", PROMETHEUS_PORT, path, timeout=10)
        answer = json.loads(body)
        assert status == 200, answer
        assert answer.get("status") == "success", answer
        return list(answer["data"]["result"])

    def close(self) -> None:
        """Stop both processes by PID, the collector first (it forwards to Prometheus)."""
        try:
            stop(self.collector)
        finally:
            stop(self.prometheus)


def site_agent(bed: Testbed, workdir: Path, noc: Noc, token: str) -> AgentProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    token_file = workdir / "token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    config = workdir / "agent.yaml"
    config.write_text(
        textwrap.dedent(
            f"""\
            site_id: {SITE["site_id"]}
            state_dir: {workdir / "state"}
            heartbeat_interval: 1s
            probes:
              interval: 100ms
              timeout: 300ms
              targets:
                - {{name: noc, address: {noc.address}, role: pop}}
            push:
              url: {noc.write_url}
              token_file: {token_file}
              interval: {int(INTERVAL * 1000)}ms
              timeout: 1s
              spread: 0s
              clock_settle: 0s
            """
        )
    )

    def get(host: str, port: int, path: str) -> tuple[int, bytes]:
        status, _, body = http_get(bed.site_ns, host, port, path)
        return status, body

    return AgentProcess(
        config,
        AGENT_PORT,
        workdir / "agent.log",
        prefix=["ip", "netns", "exec", bed.site_ns],
        http_get=get,
    )


@contextlib.contextmanager
def link_cut(bed: Testbed) -> Iterator[None]:
    """The site's end of the veth pair is down inside the block, up again after it."""
    ip = ["ip", "-n", bed.site_ns, "link", "set", bed.site_interface]
    subprocess.run([*ip, "down"], check=True, timeout=10)
    try:
        yield
    finally:
        subprocess.run([*ip, "up"], check=True, timeout=10)


def reporting(noc: Noc) -> float | None:
    return noc.scrape().get("kipu_site_reporting", **SITE)


def sites(scrape: Scrape, institution_type: str, state: str) -> float:
    return scrape.value(
        "kipu_sites",
        project="junin",
        region="Junín",
        institution_type=institution_type,
        state=state,
    )


def test_a_cut_link_goes_silent_and_its_backlog_fills_the_gap(tmp_path: Path) -> None:
    with Testbed() as bed:
        noc = Noc(bed, tmp_path)
        try:
            token = issue_token(noc.config, SITE["site_id"])  # before the start: no 401
            noc.start()
            with site_agent(bed, tmp_path / "agent", noc, token) as agent:
                # The site reports; the other inventoried site never pushed.
                wait_until(lambda: reporting(noc) == 1, timeout=20)
                scrape = noc.scrape()
                assert scrape.value("kipu_site_reporting", **QUIET) == 0
                assert sites(scrape, "school", "reporting") == 1
                assert sites(scrape, "health", "never_seen") == 1
                assert noc.health()["sites"] == {"reporting": 1, "silent": 0, "never_seen": 2}

                with link_cut(bed):
                    cut_at = time.time()
                    wait_until(lambda: reporting(noc) == 0, timeout=SILENT_AFTER + 10)
                    silent_at = time.time()
                    scrape = noc.scrape()
                    assert sites(scrape, "school", "silent") == 1
                    assert sites(scrape, "school", "reporting") == 0
                    assert sites(scrape, "health", "never_seen") == 1
                    assert noc.health()["sites"] == {"reporting": 0, "silent": 1, "never_seen": 2}
                    # The agent keeps measuring and spooling while cut off.
                    taken = agent.scrape().value("kipu_push_snapshots_total")
                    wait_until(
                        lambda: agent.scrape().value("kipu_push_snapshots_total") >= taken + 5,
                        timeout=10,
                    )
                    assert agent.scrape().value("kipu_spool_samples") > 0
                restored_at = time.time()
                assert agent.scrape().value("kipu_push_requests_total", result="retry") > 0
                # silent_after is 2 s: going silent took about that, not much less or more.
                assert SILENT_AFTER - 0.5 <= silent_at - cut_at <= SILENT_AFTER + 5

                wait_until(lambda: reporting(noc) == 1, timeout=20)
                assert noc.health()["sites"]["reporting"] == 1
                # Every snapshot stamped before `synced` has been acknowledged by the
                # collector once the agent's spool is seen empty; the collector's queue
                # seen empty after that means they are in Prometheus too. Looked at from
                # 2 s after the restore on, so that live snapshots follow the backlog.
                wait_until(
                    lambda: (
                        time.time() > restored_at + 2.0
                        and agent.scrape().value("kipu_spool_samples") == 0
                    ),
                    timeout=30,
                )
                synced = time.time() - 1.0
                wait_until(
                    lambda: noc.scrape().value("kipu_collector_forward_queue_samples") == 0,
                    timeout=30,
                )
                assert synced > restored_at
                result = noc.query(f'kipu_push_snapshots_total{{site_id="{SITE["site_id"]}"}}[10m]')
        finally:
            noc.close()

    assert len(result) == 1, result
    labels = result[0]["metric"]
    # The collector stamped the identity bound to the token on the way to the store.
    assert (labels["site_id"], labels["project"], labels["region"]) == (
        SITE["site_id"],
        SITE["project"],
        SITE["region"],
    )
    points = [(float(t), float(v)) for t, v in result[0]["values"] if float(t) <= synced]
    times = [t for t, _ in points]
    values = [v for _, v in points]
    # Snapshot n carries the count of snapshots before it: 0, 1, 2, ... with no gap and
    # no repeat, across the cut as well.
    assert values == [float(i) for i in range(len(values))], values
    during = [t for t in times if cut_at < t < restored_at]
    # The backfilled snapshots kept the times they were taken at, during the cut.
    assert len(during) >= (restored_at - cut_at) / INTERVAL * 0.5, (
        len(during),
        restored_at - cut_at,
    )
    steps = [b - a for a, b in itertools.pairwise(times)]
    assert max(steps) < INTERVAL * 3, max(steps)
    assert min(steps) > INTERVAL * 0.3, min(steps)
