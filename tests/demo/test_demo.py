"""The demo, run for a bounded time at five times its pace: every inventoried site on the
NOC page, a cut site silent and then backfilled, a power cut counted as offline seconds
in Prometheus, and Alertmanager delivering a site alert and a node alert."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from demo.netns import cleanup_stale
from demo.project import generate
from tests.agent_process import free_port
from tests.metrics_util import wait_until
from tests.support.fixtures import requires_netns, requires_prometheus

pytestmark = [requires_netns, requires_prometheus]

ROOT = Path(__file__).resolve().parents[2]
SITES = 20


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=5) as answer:
        body: bytes = answer.read()
        return body


class RunningDemo:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.ports = {name: free_port() for name in ("collector", "prometheus", "alertmanager")}
        self.log = workdir.parent / "demo.log"
        argv = [
            sys.executable, "-m", "demo", "--fast", "--duration=240", f"--sites={SITES}",
            f"--workdir={workdir}",
            *(f"--{name}-port={port}" for name, port in self.ports.items()),
        ]  # fmt: skip
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                argv, stdout=out, stderr=out, env={**os.environ, "PYTHONPATH": str(ROOT)}
            )

    def alive(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"demo exited {self.proc.returncode}:\n{self.log.read_text()}")

    def collector(self, path: str) -> Any:
        self.alive()
        return json.loads(get(f"http://127.0.0.1:{self.ports['collector']}{path}"))

    def page(self) -> str:
        return get(f"http://127.0.0.1:{self.ports['collector']}/?lang=en").decode()

    def query(self, expr: str) -> list[dict[str, Any]]:
        self.alive()
        url = f"http://127.0.0.1:{self.ports['prometheus']}/api/v1/query?" + urllib.parse.urlencode(
            {"query": expr}
        )
        answer = json.loads(get(url))
        assert answer["status"] == "success", answer
        return list(answer["data"]["result"])

    def events(self, kind: str) -> list[dict[str, Any]]:
        path = self.workdir / "events.jsonl"
        if not path.exists():
            return []
        records = [json.loads(line) for line in path.read_text().splitlines()]
        return [r for r in records if r["event"] == kind]

    def notifications(self) -> list[dict[str, Any]]:
        path = self.workdir / "notifications.jsonl"
        if not path.exists():
            return []
        return [
            alert for line in path.read_text().splitlines() for alert in json.loads(line)["alerts"]
        ]

    def stop(self) -> int:
        """SIGTERM to the demo's PID: it stops what it started and deletes its namespaces."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        cleanup_stale()  # its namespaces, should it have been killed
        return int(self.proc.returncode)


@pytest.fixture
def running(tmp_path: Path) -> Iterator[RunningDemo]:
    demo = RunningDemo(tmp_path / "demo")
    try:
        yield demo
    finally:
        demo.stop()


@pytest.mark.timeout(360)
def test_the_demo_shows_a_project_failing_and_recovering(running: RunningDemo) -> None:
    sites = generate(SITES)
    ids = {s.site_id for s in sites}

    # Every inventoried site is on the NOC page, and all report.
    def all_report() -> bool:
        try:
            return bool(running.collector("/healthz")["sites"]["reporting"] == len(sites))
        except OSError:  # not started yet
            return False

    wait_until(all_report, timeout=120, step=0.5)
    page = running.page()
    assert all(site_id in page for site_id in ids)

    # A cut link: the site goes silent, comes back, and its backlog fills the gap.
    wait_until(lambda: bool(running.events("cut")), timeout=60, step=0.5)
    cut = running.events("cut")[0]
    victim = cut["sites"][0]
    wait_until(lambda: running.collector(f"/api/v1/sites/{victim}")["state"] == "silent", 30, 0.5)
    wait_until(lambda: bool(running.events("restore")), timeout=60, step=0.5)
    restored = running.events("restore")[0]["at"]
    wait_until(
        lambda: running.collector(f"/api/v1/sites/{victim}")["state"] == "reporting", 30, 0.5
    )

    def backfilled() -> bool:
        window = int(time.time() - cut["at"]) + 5
        series = running.query(f'kipu_link_up{{site_id="{victim}"}}[{window}s]')
        stamps = [float(t) for s in series for t, _ in s["values"]]
        inside = [t for t in stamps if cut["at"] + 2 < t < restored - 2]
        return len(inside) >= 3

    wait_until(backfilled, timeout=90, step=0.5)

    # A power cut: the agent restarted counts the time it was off.
    wait_until(lambda: bool(running.events("power_back")), timeout=60, step=0.5)
    powered = running.events("power_back")[0]["sites"][0]
    wait_until(
        lambda: bool(
            running.query(
                f'increase(kipu_agent_offline_seconds_total{{site_id="{powered}"}}[5m]) > 5'
            )
        ),
        timeout=60,
        step=0.5,
    )

    # Alertmanager delivers a site's alert and, when a node fails, the node's alert.
    wait_until(lambda: bool(running.events("node_down")), timeout=120, step=0.5)

    def alerted() -> bool:
        alerts = running.notifications()
        site = [a for a in alerts if a["labels"].get("site_id") in ids]
        node = [a for a in alerts if a["labels"].get("alertname") == "KipuUpstreamNodeDown"]
        return bool(site) and bool(node)

    wait_until(alerted, timeout=120, step=0.5)
    node_alert = next(
        a for a in running.notifications() if a["labels"]["alertname"] == "KipuUpstreamNodeDown"
    )
    assert node_alert["labels"]["upstream_node"] == running.events("node_down")[0]["node"]
    assert running.stop() == 0
    assert "stopped; everything the demo started has ended" in running.log.read_text()
