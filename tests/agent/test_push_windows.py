"""A real Prometheus that cannot take everything: without an out-of-order window, and
with a window shorter than the outage. All it can take arrives; the rest is refused
alone (the backlog split down to single snapshots), dropped and counted."""

from __future__ import annotations

import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

from tests.agent_process import AgentProcess, free_port
from tests.metrics_util import wait_until
from tests.support.prometheus import PrometheusServer

SITE = "win-0001"
INTERVAL = 0.2


def agent_config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "agent.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            site_id: {SITE}
            state_dir: {tmp_path / "state"}
            probes:
              interval: 100ms
              timeout: 500ms
              targets:
                - {{name: gw, address: 127.0.0.1, role: gateway}}
            push:
              url: {url}
              interval: {int(INTERVAL * 1000)}ms
              timeout: 5s
              spread: 0s
              clock_settle: 0s
            """
        )
    )
    return path


def stored_counts(prom: PrometheusServer) -> list[tuple[float, int]]:
    """(timestamp, value) of `kipu_push_snapshots_total`: snapshot n carries n."""
    result = prom.query(f'kipu_push_snapshots_total{{site_id="{SITE}"}}[10m]')
    assert len(result) == 1, result
    return [(float(t), int(float(v))) for t, v in result[0]["values"]]


def series_per_snapshot(prom: PrometheusServer) -> int:
    result = prom.query(f'count(last_over_time({{site_id="{SITE}"}}[5s]))')
    return int(float(result[0]["value"][1]))


@dataclass(frozen=True)
class Outcome:
    stored: list[tuple[float, int]]  # (timestamp, snapshot number) in Prometheus
    per_snapshot: int  # series in one snapshot
    rejected_samples: float
    rejected_requests: float
    back_at: float  # wall time Prometheus was ready again


def outage(tmp_path: Path, window: str | None, seconds: float) -> Outcome:
    """Push, stop Prometheus for `seconds`, start it again, drain; returns what is stored."""
    extra = {"storage": {"tsdb": {"out_of_order_time_window": window}}} if window else {}
    prom = PrometheusServer(
        tmp_path / "prom", args=["--web.enable-remote-write-receiver"], extra_config=extra
    )
    with prom:
        config = agent_config(tmp_path, f"{prom.url}/api/v1/write")
        with AgentProcess(config, free_port(), tmp_path / "agent.log") as agent:

            def taken() -> float:
                return agent.scrape().value("kipu_push_snapshots_total")

            wait_until(lambda: taken() >= 10, 30)
            wait_until(lambda: bool(prom.query(f'kipu_push_snapshots_total{{site_id="{SITE}"}}')))
            prom.stop()
            before = taken()
            wait_until(lambda: taken() >= before + seconds / INTERVAL, timeout=seconds * 3)
            prom.start()
            back_at = time.time()
            wait_until(lambda: agent.scrape().value("kipu_spool_samples") == 0, timeout=60)
            scrape = agent.scrape()
            return Outcome(
                stored_counts(prom),
                series_per_snapshot(prom),
                scrape.value("kipu_push_rejected_samples_total"),
                scrape.value("kipu_push_requests_total", result="rejected"),
                back_at,
            )


def missing_runs(values: list[int]) -> list[range]:
    """The runs of snapshot numbers absent from `values` (up to its last)."""
    present = set(values)
    runs: list[range] = []
    start = None
    for n in range(max(values) + 1):
        if n not in present and start is None:
            start = n
        if n in present and start is not None:
            runs.append(range(start, n))
            start = None
    return runs


def test_without_an_out_of_order_window_the_backlog_is_refused_and_counted(
    tmp_path: Path,
) -> None:
    result = outage(tmp_path, None, seconds=4)
    values = [v for _, v in result.stored]
    assert values == sorted(values)  # Prometheus only took samples in order
    runs = missing_runs(values)
    # One gap: the snapshots of the outage. Before it, and from the first live push
    # after it, everything arrived.
    assert len(runs) == 1, runs
    assert len(runs[0]) >= 4 / INTERVAL * 0.8
    assert result.rejected_samples == len(runs[0]) * result.per_snapshot
    assert result.rejected_requests >= len(runs[0])


def test_a_window_shorter_than_the_outage_takes_what_fits(tmp_path: Path) -> None:
    result = outage(tmp_path, "4s", seconds=10)
    runs = missing_runs([v for _, v in result.stored])
    # Only the oldest part of the outage is missing: its end arrived, out of order but
    # within the window. The window counts back from the newest sample Prometheus holds,
    # which moves on with every live push while the refused part of the backlog is split
    # and refused snapshot by snapshot: how much of the outage's last 4 s still fits
    # depends on how soon the backlog follows (all but a second of it on an idle
    # machine, less on a busy one), never more than the window.
    assert len(runs) == 1, runs
    gap = runs[0]
    assert len(gap) >= 5 / INTERVAL
    first_after = min(t for t, v in result.stored if v >= gap.stop)
    assert result.back_at - 4.5 <= first_after <= result.back_at - 0.2, first_after - result.back_at
    assert result.rejected_samples == len(gap) * result.per_snapshot
