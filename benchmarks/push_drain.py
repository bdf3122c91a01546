"""Draining a 6-hour backlog into a real Prometheus while live snapshots keep arriving.

A typical site: about 100 series (three targets' RTT histograms, counters, link and
SNMP gauges) every 15 s. Six hours of uplink outage leave 1,440 snapshots (144,000
samples) in the spool. The benchmark fills a spool with exactly that (timestamps from
six hours ago to now), starts Debian's Prometheus with the remote-write receiver and an
out-of-order window, and runs the agent's pusher: live snapshots every `--live`
seconds beside the backlog. It prints the drain time, the replay rate, wire bytes per
sample for backlog batches and for live pushes, and the live latency (snapshot taken
to acknowledged) during the drain against the same without a backlog.

    .venv/bin/python -m benchmarks.push_drain [--hours 6] [--series 100] [--live 1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from agent.config import Push
from agent.push import Pusher, encode_snapshot
from kipu.clock import ClockJudge
from kipu.remote_write.client import SendResult
from kipu.remote_write.codec import Series, normalise_labels
from tests.support.prometheus import PrometheusServer, prometheus_missing

SITE = "jun-0123"


def site_series(count: int) -> list[dict[str, str]]:
    """Label sets shaped like a site agent's series."""
    labels: list[dict[str, str]] = []
    targets = [("gateway", "gateway"), ("pop-huancayo", "pop"), ("internet", "internet")]
    buckets = [
        "0.0005",
        "0.001",
        "0.002",
        "0.004",
        "0.008",
        "0.016",
        "0.032",
        "0.064",
        "0.125",
        "0.25",
        "0.5",
        "1.0",
        "2.0",
        "4.0",
        "8.0",
        "+Inf",
    ]
    for target, role in targets:
        base = {"target": target, "role": role}
        labels += [
            {"__name__": "kipu_probe_rtt_seconds_bucket", "le": le, **base} for le in buckets
        ]
        for name in (
            "kipu_probe_rtt_seconds_sum",
            "kipu_probe_rtt_seconds_count",
            "kipu_probe_packets_sent_total",
            "kipu_probe_packets_received_total",
            "kipu_probe_jitter_seconds",
            "kipu_probe_success",
        ):
            labels.append({"__name__": name, **base})
    for name in (
        "kipu_link_up",
        "kipu_link_up_seconds_total",
        "kipu_link_down_seconds_total",
        "kipu_link_outages_total",
        "kipu_agent_offline_seconds_total",
    ):
        labels.append({"__name__": name})
    i = 0
    while len(labels) < count:
        labels.append(
            {
                "__name__": "kipu_interface_receive_bytes_total",
                "device": "router",
                "interface": f"ether{i}",
            }
        )
        i += 1
    return labels[:count]


def values_at(series: list[Series], step: int) -> dict[Series, float]:
    return {s: float(step * 7 + i) for i, s in enumerate(series)}


@dataclass
class Sent:
    bytes: int
    samples: int
    lane: str
    ok: bool


@dataclass
class Trace:
    sent: list[Sent] = field(default_factory=list)
    live_latency: list[float] = field(default_factory=list)


def instrument(pusher: Pusher, trace: Trace) -> None:
    """Record each request's size and, for live pushes, the snapshot-to-ack latency."""
    original = pusher.client.send

    async def send(body: bytes, *, backlog: bool = False) -> SendResult:
        newest = pusher.spool.newest(1)
        result = await original(body, backlog=backlog)
        samples = 0
        lane = "backlog"
        if newest and newest[0].payload == body:
            lane = "live"
            samples = newest[0].samples
            if result.outcome.value == "ok":
                trace.live_latency.append(time.time() - newest[0].last_ms / 1000)
        trace.sent.append(Sent(len(body), samples, lane, result.outcome.value == "ok"))
        return result

    pusher.client.send = send  # type: ignore[method-assign]


async def run(hours: float, series_count: int, live: float, workdir: Path) -> None:
    labels = site_series(series_count)
    series = [normalise_labels({**lbl, "site_id": SITE}) for lbl in labels]
    with PrometheusServer(
        workdir / "prom",
        args=["--web.enable-remote-write-receiver"],
        extra_config={"storage": {"tsdb": {"out_of_order_time_window": f"{int(hours) + 1}h"}}},
    ) as prom:
        config = Push(
            url=f"{prom.url}/api/v1/write",
            token_file=None,
            ca_file=None,
            interval=live,
            max_spool=1 << 30,
            timeout=30.0,
            spread=0.0,
            clock_settle=0.0,
        )
        step_counter = [0]

        def collect() -> list[tuple[dict[str, str], float]]:
            step_counter[0] += 1
            return [(lbl, float(step_counter[0] * 7 + i)) for i, lbl in enumerate(labels)]

        # 1. Live only: the normal latency.
        quiet = Trace()
        pusher = Pusher(
            config,
            SITE,
            workdir / "quiet",
            collect,
            clock=ClockJudge(settle=0, synced=lambda: True),
        )
        await pusher.open()
        instrument(pusher, quiet)
        task = asyncio.create_task(pusher.run())
        await asyncio.sleep(live * 10 + 0.5)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await pusher.close()

        # 2. A spool holding `hours` of 15 s snapshots, then live snapshots beside it.
        pusher = Pusher(
            config, SITE, workdir / "site", collect, clock=ClockJudge(settle=0, synced=lambda: True)
        )
        await pusher.open()
        now_ms = int(time.time() * 1000)
        snapshots = int(hours * 3600 / 15)
        fill_started = time.perf_counter()
        for k in range(snapshots):
            stamp = now_ms - (snapshots - k) * 15_000
            body = encode_snapshot(values_at(series, k), stamp)
            pusher.spool.append(body, len(series), stamp, stamp)
            if k % 100 == 99:
                pusher.spool.sync()
        pusher.spool.sync()
        last_backlog_id = pusher.spool.newest(1)[0].id
        fill_seconds = time.perf_counter() - fill_started
        backlog_samples = pusher.spool.samples
        busy = Trace()
        instrument(pusher, busy)
        started = time.perf_counter()
        task = asyncio.create_task(pusher.run())

        def backlog_left() -> bool:
            oldest = pusher.spool.oldest(1)
            return bool(oldest) and oldest[0].id <= last_backlog_id

        while backlog_left():
            await asyncio.sleep(0.01)
            if time.perf_counter() - started > 600:
                raise RuntimeError("the backlog did not drain within 10 minutes")
        drained = time.perf_counter() - started
        await asyncio.sleep(live * 3)  # a few more live pushes after the drain
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await pusher.close()
        stored = prom.query(f'count_over_time(kipu_link_up{{site_id="{SITE}"}}[{int(hours) + 1}h])')
        stored_count = int(float(stored[0]["value"][1])) if stored else 0

    backlog = [s for s in busy.sent if s.lane == "backlog" and s.ok]
    live_sent = [s for s in busy.sent + quiet.sent if s.lane == "live" and s.ok]
    backlog_bytes = sum(s.bytes for s in backlog)
    print(
        f"site: {series_count} series, {hours:g} h of 15 s snapshots = {snapshots} snapshots, "
        f"{backlog_samples} samples (spool filled in {fill_seconds:.1f} s)"
    )
    print()
    print("| measure | value |")
    print("|---|---|")
    print(f"| drain time, {hours:g} h backlog | {drained:.1f} s |")
    print(f"| replay rate into Prometheus | {backlog_samples / drained:,.0f} samples/s |")
    print(
        f"| backlog requests | {len(backlog)} ({snapshots / max(1, len(backlog)):.0f} "
        "snapshots each) |"
    )
    print(f"| wire bytes per sample, backlog batches | {backlog_bytes / backlog_samples:.2f} |")
    if live_sent:
        live_bytes = statistics.mean(s.bytes for s in live_sent) / series_count
        print(f"| wire bytes per sample, live (one snapshot) | {live_bytes:.2f} |")
    if quiet.live_latency:
        print(
            f"| live latency, no backlog (median) | "
            f"{statistics.median(quiet.live_latency) * 1000:.0f} ms |"
        )
    if busy.live_latency:
        print(
            f"| live latency during the drain (median / max, n={len(busy.live_latency)}) | "
            f"{statistics.median(busy.live_latency) * 1000:.0f} ms / "
            f"{max(busy.live_latency) * 1000:.0f} ms |"
        )
    print(
        f"| samples of one series stored in Prometheus | {stored_count} "
        f"(backlog {snapshots} + live) |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, default=6.0)
    parser.add_argument("--series", type=int, default=100)
    parser.add_argument(
        "--live", type=float, default=1.0, help="live snapshot interval in seconds during the run"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if (reason := prometheus_missing()) is not None:
        raise SystemExit(reason)
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(run(args.hours, args.series, args.live, Path(tmp)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
