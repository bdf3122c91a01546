"""A country's worth of sites against one collector: 10,000 live, then 1,000 with a backlog.

Simulated sites push like kipu agents: about 100 series each, a live snapshot every 15 s
(starts spread over the interval). After a warm-up, 1,000 of them come back from a
6-hour outage and send their backlog beside their live pushes: batches of 240
snapshots merged per series (as the agent's backlog lane sends them), honouring 429's
Retry-After, as agents do. The collector forwards into a sink that answers 204 and
appends every body to a file; after the run the queue is drained and the sink's
samples are counted: every sample the collector acknowledged must be there.

It prints the live push latency (request sent to 204) before and during the backlog
storm (p50, p99), the backlog accepted per second, the collector's CPU, its peak RSS
and the RSS per active series, and the samples lost. On the 2-core machine the load
generator, the sink and the collector share the CPUs: the collector is pinned to CPU
1, the rest to CPU 0.

    .venv/bin/python -m benchmarks.collector_load [--sites 10000] [--storm 1000]
        [--warmup 45] [--seconds 90]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from collector.auth import TokenStore
from kipu.remote_write.client import BACKLOG_HEADER
from kipu.remote_write.codec import (
    compress,
    count_samples,
    encode_labels,
    normalise_labels,
    raw_request,
    timeseries_entry,
)
from tests.agent_process import free_port

ROOT = Path(__file__).resolve().parents[1]
COLLECTOR_CPU = 1
LOAD_CPU = 0
INTERVAL = 15.0
SERIES = 100
BACKLOG_HOURS = 6
BATCH = 240  # snapshots per backlog request, as the agent's lanes send them
UBIGEOS = ["120206", "120101", "100507", "080101", "150101", "250101", "030101", "050101"]


def inventory(sites: int) -> str:
    lines = ["sites:"]
    for n in range(sites):
        project = f"p{n // 1000:02d}"
        lines.append(
            f'  - {{site_id: s{n:05d}, site_name: "Site {n}", project: {project}, '
            f'ubigeo: "{UBIGEOS[n % len(UBIGEOS)]}", institution_type: school, '
            f"upstream_node: node-{n // 50}, access_tech: microwave}}"
        )
    return "\n".join(lines) + "\n"


def label_runs(site: str) -> list[bytes]:
    """An agent-shaped set of series for `site`, as label runs."""
    runs = []
    for i in range(SERIES):
        labels = {
            "__name__": "kipu_probe_rtt_seconds_bucket" if i < 64 else f"kipu_metric_{i}",
            "site_id": site,
            "target": f"t{i // 16}",
            "role": "pop",
            "le": str(i % 16),
        }
        runs.append(encode_labels(normalise_labels(labels)))
    return runs


def sample_run(points: list[tuple[int, float]]) -> bytes:
    out = bytearray()
    for stamp, value in points:
        body = b"\x09" + struct.pack("<d", value) + b"\x10" + _varint(stamp)
        out += b"\x12" + bytes((len(body),)) + body
    return bytes(out)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


SAMPLE_BYTES = 18  # one sample with a millisecond timestamp of today (a 6-byte varint)


def live_prefixes(runs: list[bytes]) -> list[bytes]:
    """Each series' entry up to its one sample: the generator joins them with the sample."""
    return [b"\x0a" + _varint(len(run) + SAMPLE_BYTES) + run for run in runs]


def live_body(prefixes: list[bytes], stamp: int) -> tuple[bytes, int]:
    sample = sample_run([(stamp, 1.0)])
    assert len(sample) == SAMPLE_BYTES
    return compress(sample.join(prefixes) + sample), len(prefixes)


def backlog_body(runs: list[bytes], start: int, snapshots: int) -> tuple[bytes, int]:
    points = [(start + k * int(INTERVAL * 1000), float(k)) for k in range(snapshots)]
    samples = sample_run(points)
    raw = b"".join(timeseries_entry(run, samples) for run in runs)
    return compress(raw), len(runs) * snapshots


def sink(port: int, path: Path) -> subprocess.Popen[bytes]:
    """A store that answers 204 and appends each body (length-prefixed) to `path`."""
    code = textwrap.dedent(
        f"""\
        import struct
        from aiohttp import web
        out = open({str(path)!r}, "ab", buffering=1 << 20)
        async def write(request):
            body = await request.read()
            out.write(struct.pack("<I", len(body)) + body)
            return web.Response(status=204)
        async def flush(request):
            out.flush()
            return web.Response(status=204)
        app = web.Application(client_max_size=64 << 20)
        app.router.add_post("/api/v1/write", write)
        app.router.add_post("/flush", flush)
        app.router.add_get("/", flush)
        web.run_app(app, host="127.0.0.1", port={port}, print=None, access_log=None)
        """
    )
    return subprocess.Popen(["taskset", "-c", str(LOAD_CPU), sys.executable, "-c", code])


def count_sink(path: Path) -> int:
    data = path.read_bytes()
    pos = total = 0
    while pos < len(data):
        (size,) = struct.unpack_from("<I", data, pos)
        body = data[pos + 4 : pos + 4 + size]
        pos += 4 + size
        total += count_samples(raw_request(body, max_decompressed=1 << 30))
    return total


Buckets = dict[float, float]  # cumulative count by upper bound


async def server_buckets(session: aiohttp.ClientSession, metrics_url: str) -> Buckets:
    """The collector's own request-duration histogram, as it says it."""
    async with session.get(metrics_url) as response:
        text = await response.text()
    found: Buckets = {}
    for line in text.splitlines():
        if line.startswith("kipu_collector_active_series "):
            found[-1.0] = float(line.rsplit(" ", 1)[1])  # not a bound: the series then
        if line.startswith("kipu_collector_request_duration_seconds_bucket{"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            found[float(bound)] = float(line.rsplit(" ", 1)[1])
    return found


def bucket_quantile(before: Buckets, after: Buckets, q: float) -> float:
    """The q quantile of what happened between two histograms (upper bound of its bucket)."""
    bounds = sorted(b for b in after if b >= 0)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1]
    if total <= 0:
        return float("nan")
    for bound, count in zip(bounds, counts, strict=True):
        if count >= q * total:
            return bound
    return float("inf")


@dataclass
class Stats:
    live_latency: list[float] = field(default_factory=list)  # after the first round
    storm_latency: list[float] = field(default_factory=list)
    acknowledged: int = 0
    backlog_acknowledged: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    storm: bool = False
    server: list[Buckets] = field(default_factory=list)  # at steady, storm and end
    steady: bool = False  # every site has pushed once: its series are known
    # How late the generator's own loop woke (a 10 ms timer): a live latency is the
    # collector's only while the generator keeps up.
    generator_lag: list[float] = field(default_factory=list)
    storm_generator_lag: list[float] = field(default_factory=list)


async def watch_lag(stats: Stats, until: float) -> None:
    loop = asyncio.get_running_loop()
    while loop.time() < until:
        due = loop.time() + 0.01
        await asyncio.sleep(0.01)
        late = loop.time() - due
        if stats.storm:
            stats.storm_generator_lag.append(late)
        elif stats.steady:
            stats.generator_lag.append(late)


async def post(
    session: aiohttp.ClientSession, url: str, token: str, body: bytes, backlog: bool = False
) -> tuple[int, float | None]:
    headers = {
        "Authorization": f"Bearer {token}",
        "Content-Encoding": "snappy",
        "Content-Type": "application/x-protobuf",
    }
    if backlog:
        headers[BACKLOG_HEADER] = "1"  # as the agent's backlog lane marks its requests
    try:
        async with session.post(url, data=body, headers=headers) as response:
            await response.read()
            retry = response.headers.get("Retry-After")
            return response.status, float(retry) if retry else None
    except aiohttp.ClientError:
        return 0, 1.0  # a network error: the agent retries it, so does this one


async def live_site(  # noqa: PLR0917 - one call site
    session: aiohttp.ClientSession,
    url: str,
    prefixes: list[bytes],
    token: str,
    stats: Stats,
    until: float,
) -> None:
    loop = asyncio.get_running_loop()
    await asyncio.sleep(random.uniform(0, INTERVAL))
    while loop.time() < until:
        body, samples = live_body(prefixes, int(time.time() * 1000))
        started = loop.time()
        status, _ = await post(session, url, token, body)
        latency = loop.time() - started
        stats.statuses[status] = stats.statuses.get(status, 0) + 1
        if status == 204:
            stats.acknowledged += samples
            if stats.storm:
                stats.storm_latency.append(latency)
            elif stats.steady:
                stats.live_latency.append(latency)
        await asyncio.sleep(max(0.0, INTERVAL - (loop.time() - started)))


def backlog_batches() -> list[tuple[bytes, int]]:
    """A returning site's backlog, batch by batch, oldest first.

    Built once before the clock starts and sent by every returning site: building 6,000
    bodies during the storm would stall the generator, not the collector. The bodies
    carry one site's `site_id`; the collector drops it and writes each site's own from
    its token, as it does for every push, so its work is the same as for bodies of
    their own.
    """
    runs = label_runs("s00000")
    snapshots = int(BACKLOG_HOURS * 3600 / INTERVAL)
    start = int((time.time() - BACKLOG_HOURS * 3600) * 1000)
    return [
        backlog_body(runs, start + sent * int(INTERVAL * 1000), min(BATCH, snapshots - sent))
        for sent in range(0, snapshots, BATCH)
    ]


async def backlog_site(  # noqa: PLR0917 - one call site
    session: aiohttp.ClientSession,
    url: str,
    batches: list[tuple[bytes, int]],
    token: str,
    stats: Stats,
    until: float,
) -> None:
    loop = asyncio.get_running_loop()
    await asyncio.sleep(random.uniform(0, 5))  # agents spread their return
    pending = list(batches)
    while pending and loop.time() < until:
        body, samples = pending[0]  # a refused batch is sent again, as agents do
        status, retry = await post(session, url, token, body, backlog=True)
        stats.statuses[status] = stats.statuses.get(status, 0) + 1
        if status == 204:
            stats.acknowledged += samples
            stats.backlog_acknowledged += samples
            pending.pop(0)
        else:
            await asyncio.sleep(retry or 1.0)


async def drive(  # noqa: PLR0917 - one call site
    url: str, metrics_url: str, tokens: dict[str, str], storm: int, warmup: float, seconds: float
) -> Stats:
    # Every site's series are built before the clock starts: the generator must not be
    # what is measured.
    prefixes = {site: live_prefixes(label_runs(site)) for site in tokens}
    batches = backlog_batches()
    stats = Stats()
    loop = asyncio.get_running_loop()
    until = loop.time() + warmup + seconds
    connector = aiohttp.TCPConnector(limit=2000)
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        live = [
            asyncio.create_task(live_site(session, url, prefixes[site], token, stats, until))
            for site, token in tokens.items()
        ]
        live.append(asyncio.create_task(watch_lag(stats, until)))
        # The first round fills the collector's caches (each site's first push is
        # decoded whole): the steady state is measured after it.
        await asyncio.sleep(min(warmup / 2, INTERVAL * 1.5))
        stats.steady = True
        stats.server.append(await server_buckets(session, metrics_url))
        await asyncio.sleep(warmup - min(warmup / 2, INTERVAL * 1.5))
        stats.storm = True
        stats.server.append(await server_buckets(session, metrics_url))
        storm_sites = list(tokens.items())[:storm]
        backlog = [
            asyncio.create_task(backlog_site(session, url, batches, token, stats, until))
            for _, token in storm_sites
        ]
        await asyncio.gather(*live, *backlog)
        stats.server.append(await server_buckets(session, metrics_url))
    return stats


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def status_value(pid: int, key: str) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) / 1024
    return 0.0


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
        for line in response.read().decode().splitlines():
            if line.startswith((name + " ", name + "{")):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} not ready")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def run(sites: int, storm: int, warmup: float, seconds: float, workdir: Path) -> None:
    os.sched_setaffinity(0, {LOAD_CPU})
    (workdir / "sites.yaml").write_text(inventory(sites))
    sink_port, port = free_port(), free_port()
    sink_file = workdir / "sink.bin"
    sink_proc = sink(sink_port, sink_file)
    (workdir / "collector.yaml").write_text(
        "inventory: sites.yaml\nstate_dir: state\nsilent_after: 90s\n"
        f"forward: {{url: 'http://127.0.0.1:{sink_port}/api/v1/write', max_queue: 8GiB}}\n"
    )
    tokens = TokenStore(workdir / "state").issue_many([f"s{n:05d}" for n in range(sites)])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    collector = subprocess.Popen(
        [
            "taskset", "-c", str(COLLECTOR_CPU), sys.executable, "-m", "collector",
            f"--config.file={workdir / 'collector.yaml'}",
            f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn",
        ],
        env=env,
    )  # fmt: skip
    try:
        wait_ready(f"http://127.0.0.1:{port}/healthz", collector)
        wait_ready(f"http://127.0.0.1:{sink_port}/", sink_proc)
        cpu_before = cpu_seconds(collector.pid)
        sink_before = cpu_seconds(sink_proc.pid)
        load_before = time.process_time()
        started = time.monotonic()
        stats = asyncio.run(
            drive(
                f"http://127.0.0.1:{port}/api/v1/write",
                f"http://127.0.0.1:{port}/metrics",
                tokens,
                storm,
                warmup,
                seconds,
            )
        )
        elapsed = time.monotonic() - started
        cpu = cpu_seconds(collector.pid) - cpu_before
        load_cpu = time.process_time() - load_before + cpu_seconds(sink_proc.pid) - sink_before
        rss = status_value(collector.pid, "VmHWM:")
        syncs = metric(port, "kipu_collector_forward_syncs_total")
        commits = metric(port, "kipu_collector_forward_commits_total")
        deadline = time.monotonic() + 600
        while metric(port, "kipu_collector_forward_queue_samples") > 0:
            if time.monotonic() > deadline:
                raise RuntimeError("the forward queue did not drain")
            time.sleep(1)
        urllib.request.urlopen(
            urllib.request.Request(f"http://127.0.0.1:{sink_port}/flush", method="POST")
        ).read()
        received = count_sink(sink_file)
    finally:
        collector.terminate()
        collector.wait(60)
        sink_proc.terminate()
        sink_proc.wait(10)
    live_rate = sites * SERIES / INTERVAL
    print(
        f"{sites} sites x {SERIES} series every {INTERVAL:g} s ({live_rate:,.0f} samples/s "
        f"live); {storm} of them then send a {BACKLOG_HOURS} h backlog; warm-up {warmup:g} s, "
        f"storm {seconds:g} s"
    )
    print()
    print("| measure | value |")
    print("|---|---|")
    print(
        f"| live push latency before the storm (steady state), p50 / p99 | "
        f"{percentile(stats.live_latency, 50) * 1000:.0f} ms / "
        f"{percentile(stats.live_latency, 99) * 1000:.0f} ms |"
    )
    print(
        f"| live push latency during the storm, p50 / p99 | "
        f"{percentile(stats.storm_latency, 50) * 1000:.0f} ms / "
        f"{percentile(stats.storm_latency, 99) * 1000:.0f} ms |"
    )
    steady, storming, end = stats.server
    # Before the storm: the returning sites' batches carry another site's id in their
    # label runs (see `backlog_batches`), which the collector counts as more series.
    active = storming[-1.0]
    print(
        "| the collector's own answer time (its histogram: bucket bounds), steady, p50 / p99 | "
        f"{bucket_quantile(steady, storming, 0.5) * 1000:g} ms / "
        f"{bucket_quantile(steady, storming, 0.99) * 1000:g} ms |"
    )
    print(
        "| the collector's own answer time, during the storm, p50 / p99 (all pushes) | "
        f"{bucket_quantile(storming, end, 0.5) * 1000:g} ms / "
        f"{bucket_quantile(storming, end, 0.99) * 1000:g} ms |"
    )
    print(
        "| the load generator's own loop lag, steady / storm, p99 | "
        f"{percentile(stats.generator_lag, 99) * 1000:.0f} ms / "
        f"{percentile(stats.storm_generator_lag, 99) * 1000:.0f} ms |"
    )
    print(f"| backlog accepted | {stats.backlog_acknowledged / seconds:,.0f} samples/s |")
    print(f"| answers | {dict(sorted(stats.statuses.items()))} |")
    print(f"| collector CPU | {cpu:.1f} s in {elapsed:.0f} s ({cpu / elapsed:.0%} of a core) |")
    print(
        f"| load generator and sink CPU (the other core) | {load_cpu:.1f} s "
        f"({load_cpu / elapsed:.0%} of a core) |"
    )
    print(f"| collector peak RSS | {rss:,.0f} MB |")
    print(f"| active series | {active:,.0f} ({rss * 1024 * 1024 / max(1.0, active):,.0f} B each) |")
    print(
        f"| pushes made durable / fdatasyncs | {commits:,.0f} / {syncs:,.0f} "
        f"({commits / max(1.0, syncs):.1f} pushes per fdatasync) |"
    )
    print(f"| samples acknowledged / at the sink | {stats.acknowledged:,} / {received:,} |")
    print(f"| samples lost | {stats.acknowledged - received:,} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sites", type=int, default=10_000)
    parser.add_argument("--storm", type=int, default=1_000)
    parser.add_argument("--warmup", type=float, default=60.0)
    parser.add_argument("--seconds", type=float, default=90.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run(args.sites, args.storm, args.warmup, args.seconds, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
