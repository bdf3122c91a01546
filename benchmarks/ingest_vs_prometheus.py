"""Ingest per CPU-second: kipu-collector against Debian Prometheus's remote-write receiver.

Both servers get the very same pre-encoded remote-write bodies: agent-sized requests of
about 100 series and large ones of 2,000 series, one sample per series, each request a
few milliseconds newer than the one before (so that Prometheus takes every sample in
order). Each server runs pinned to CPU 1; the load generator (this process, keep-alive
connections, a few requests in flight) runs pinned to CPU 0. We measure the server's
CPU time (utime + stime from /proc) over the load and report samples per CPU-second.

The collector runs three ways: accepting only (no `forward:`: liveness and limits, no
history), and with `forward:` to a sink that answers 204 without reading (the queue on
disk with group commit, forwarding included; the sink runs on CPU 0 and is not
counted), which is its real job; Prometheus appends every sample to its head and WAL.

    .venv/bin/python -m benchmarks.ingest_vs_prometheus [--requests 3000] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from kipu.remote_write.codec import encode, normalise_labels
from tests.agent_process import free_port
from tests.collector_process import issue_token
from tests.support.prometheus import PROMETHEUS

ROOT = Path(__file__).resolve().parents[1]
SERVER_CPU = 1
LOAD_CPU = 0
SITE = "jun-0001"
SITES = textwrap.dedent(
    """\
    sites:
      - {site_id: jun-0001, site_name: IE 30012, project: junin, ubigeo: "120206",
         institution_type: school, upstream_node: nodo-concepcion, access_tech: microwave}
    """
)


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def bodies(requests: int, series: int, start_ms: int) -> list[bytes]:
    """`requests` bodies of `series` series each, timestamps 5 ms apart, site-shaped labels."""
    label_sets = []
    for i in range(series):
        target = f"target-{i // 16}"
        label_sets.append(
            normalise_labels(
                {
                    "__name__": "kipu_probe_rtt_seconds_bucket",
                    "site_id": SITE,
                    "target": target,
                    "role": "pop",
                    "le": str(i % 16),
                    "instance": f"router-{i // 256}",
                }
            )
        )
    out = []
    for r in range(requests):
        stamp = start_ms + r * 5
        out.append(encode({labels: [(stamp, float(r + i))] for i, labels in enumerate(label_sets)}))
    return out


async def load(url: str, payloads: Sequence[bytes], token: str | None, concurrency: int) -> int:
    """Send every payload in order, `concurrency` at a time; the number of 2xx answers."""
    headers = {
        "Content-Encoding": "snappy",
        "Content-Type": "application/x-protobuf",
        "X-Prometheus-Remote-Write-Version": "0.1.0",
    }
    if token:
        headers["Authorization"] = f"Bearer {token}"
    ok = 0
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for body in payloads:
        queue.put_nowait(body)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal ok
            while not queue.empty():
                body = queue.get_nowait()
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    if 200 <= response.status < 300:
                        ok += 1
                    elif response.status >= 500:
                        raise RuntimeError(f"{url}: {response.status} {await response.text()}")

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ok


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} not ready")


@dataclass
class Figures:
    name: str
    series: int
    requests: int
    accepted: int
    cpu: float
    wall: float
    rss_mb: float

    @property
    def per_cpu_second(self) -> float:
        return self.accepted * self.series / self.cpu if self.cpu else 0.0


def measure(  # noqa: PLR0917 - a benchmark's one call site per server
    name: str,
    argv: list[str],
    ready: str,
    url: str,
    token: str | None,
    workloads: list[tuple[int, list[bytes]]],
    concurrency: int,
    env: dict[str, str] | None = None,
) -> list[Figures]:
    proc = subprocess.Popen(
        ["taskset", "-c", str(SERVER_CPU), *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        wait_ready(ready, proc)
        figures = []
        for series, payloads in workloads:
            # A short warm-up: connections, caches, the first allocations.
            asyncio.run(load(url, payloads[:50], token, concurrency))
            before, started = cpu_seconds(proc.pid), time.perf_counter()
            accepted = asyncio.run(load(url, payloads[50:], token, concurrency))
            wall = time.perf_counter() - started
            cpu = cpu_seconds(proc.pid) - before
            figures.append(
                Figures(
                    name, series, len(payloads) - 50, accepted, cpu, wall, peak_rss_mb(proc.pid)
                )
            )
        return figures
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def sink(port: int) -> subprocess.Popen[bytes]:
    """A remote-write receiver that answers 204 without reading, on the load's CPU."""
    code = textwrap.dedent(
        f"""\
        from aiohttp import web
        async def ok(request):
            await request.read()
            return web.Response(status=204)
        app = web.Application(client_max_size=64 << 20)
        app.router.add_post("/api/v1/write", ok)
        app.router.add_get("/", ok)
        web.run_app(app, host="127.0.0.1", port={port}, print=None, access_log=None)
        """
    )
    return subprocess.Popen(["taskset", "-c", str(LOAD_CPU), sys.executable, "-c", code])


def run(requests: int, concurrency: int, workdir: Path) -> list[Figures]:
    os.sched_setaffinity(0, {LOAD_CPU})
    start_ms = int(time.time() * 1000) - 60_000
    small = bodies(requests, 100, start_ms)
    large = bodies(max(100, requests // 20), 2000, start_ms + requests * 5 + 1000)
    workloads = [(100, small), (2000, large)]
    results: list[Figures] = []

    port = free_port()
    prom_dir = workdir / "prom"
    prom_dir.mkdir()
    # Requests in flight together land out of order: the window takes them all, as kipu's
    # deployments need it anyway for backfill.
    (prom_dir / "prometheus.yml").write_text(
        "global: {scrape_interval: 1m}\nstorage: {tsdb: {out_of_order_time_window: 2h}}\n"
    )
    results += measure(
        "prometheus",
        [
            PROMETHEUS,
            f"--config.file={prom_dir / 'prometheus.yml'}",
            f"--storage.tsdb.path={prom_dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-remote-write-receiver",
        ],
        f"http://127.0.0.1:{port}/-/ready",
        f"http://127.0.0.1:{port}/api/v1/write",
        None,
        workloads,
        concurrency,
    )

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for variant, forward in (
        ("kipu-collector, accepting", None),
        ("kipu-collector, forwarding", True),
    ):
        directory = workdir / variant.split(", ")[1]
        directory.mkdir()
        (directory / "sites.yaml").write_text(SITES)
        extra = "limits: {max_series_per_site: 100000}\n"
        sink_proc = None
        if forward:
            sink_port = free_port()
            sink_proc = sink(sink_port)
            extra += f"forward: {{url: 'http://127.0.0.1:{sink_port}/api/v1/write'}}\n"
        config = directory / "collector.yaml"
        config.write_text(f"inventory: sites.yaml\nstate_dir: state\n{extra}")
        token = issue_token(config, SITE)
        port = free_port()
        try:
            results += measure(
                variant,
                [
                    sys.executable,
                    "-m",
                    "collector",
                    f"--config.file={config}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--log.level=warn",
                ],
                f"http://127.0.0.1:{port}/healthz",
                f"http://127.0.0.1:{port}/api/v1/write",
                token,
                workloads,
                concurrency,
                env,
            )
        finally:
            if sink_proc is not None:
                sink_proc.terminate()
                sink_proc.wait(10)
    return results


def report(results: list[Figures]) -> str:
    lines = [
        "| server | series per request | requests | CPU s | samples per CPU-second | "
        "wall s | peak RSS MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in results:
        lines.append(
            f"| {f.name} | {f.series} | {f.accepted}/{f.requests} | {f.cpu:.2f} | "
            f"{f.per_cpu_second:,.0f} | {f.wall:.2f} | {f.rss_mb:.0f} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = run(args.requests, args.concurrency, Path(tmp))
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
