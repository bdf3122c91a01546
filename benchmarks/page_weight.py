"""The NOC page's weight and render time for a fleet of 600 sites.

A kipu-collector process gets an inventory of 600 sites over six projects (real INEI
districts); 80 % of them push a day of history then their present (as agents do after
an outage), 10 % are silent (their last push 15 minutes ago, seeded in the state
folder) and 10 % never pushed. Then each endpoint is requested N times, as a browser
does (gzip accepted) and once without compression, and the table gives its weight
(raw and gzip), the server's time to build and render it (its `Server-Timing`) and the
round trip of the request on loopback, as medians.

    .venv/bin/python -m benchmarks.page_weight [--sites 600] [--requests 30]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from collector.auth import TokenStore
from collector.liveness import Liveness
from tests.collector.pushing import post_write
from tests.collector.test_web_fleet import SILENT_FOR, FleetSite, fleet, inventory_yaml, pushes
from tests.collector_process import CollectorProcess

BUDGET = 150 * 1024  # bytes, the page compressed


@dataclass(frozen=True)
class Measure:
    path: str
    raw_bytes: int
    gzip_bytes: int
    server_ms: float
    round_trip_ms: float


def fetch(url: str, encoding: str) -> tuple[bytes, float, float]:
    """(body as sent, server time in ms, round trip in ms) of one GET."""
    request = urllib.request.Request(url, headers={"Accept-Encoding": encoding})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:
        body = response.read()
        timing = response.headers.get("Server-Timing", "dur=nan")
    round_trip = (time.perf_counter() - started) * 1000
    return body, float(timing.split("dur=")[1]), round_trip


def measure(base: str, path: str, requests: int) -> Measure:
    url = base + path
    raw, _, _ = fetch(url, "identity")
    for _ in range(3):  # warm up: templates, caches, connection paths
        fetch(url, "gzip")
    server: list[float] = []
    trips: list[float] = []
    compressed = b""
    for _ in range(requests):
        compressed, spent, trip = fetch(url, "gzip")
        server.append(spent)
        trips.append(trip)
    return Measure(
        path, len(raw), len(compressed), statistics.median(server), statistics.median(trips)
    )


def feed(url: str, sites: list[FleetSite], tokens: dict[str, str]) -> None:
    """Every reporting site pushes its day, then its present."""
    now_ms = int(time.time() * 1000)

    def one(site: FleetSite) -> None:
        for body in pushes(site, now_ms):
            status, text = post_write(url, tokens[site.site_id], body, timeout=60)
            if status != 204:
                raise RuntimeError(f"{site.site_id}: {status} {text}")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, [s for s in sites if s.state == "reporting"]))


def run(count: int, requests: int, directory: Path) -> list[Measure]:
    sites = fleet(count, projects=6)
    (directory / "sites.yaml").write_text(inventory_yaml(sites), encoding="utf-8")
    config = directory / "collector.yaml"
    config.write_text(
        "inventory: sites.yaml\nstate_dir: state\nsilent_after: 10m\n"
        "limits: {max_samples_per_second_per_site: 100000}\n"
    )
    state = directory / "state"
    tokens = TokenStore(state).issue_many([s.site_id for s in sites if s.state == "reporting"])
    liveness = Liveness(state, 600)
    for site in sites:
        if site.state == "silent":
            liveness.pushed(site.site_id, time.time() - SILENT_FOR)
    liveness.save(force=True)
    with CollectorProcess(config, directory / "collector.log") as process:
        started = time.perf_counter()
        feed(process.write_url, sites, tokens)
        print(
            f"{count} sites ({sum(s.state == 'reporting' for s in sites)} reporting) fed in "
            f"{time.perf_counter() - started:.1f} s\n"
        )
        reporting = next(s for s in sites if s.state == "reporting")
        paths = ["/", "/?lang=en", "/api/v1/sites", f"/sites/{reporting.site_id}"]
        return [measure(process.url, path, requests) for path in paths]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sites", type=int, default=600)
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kipu-page-") as directory:
        measures = run(args.sites, args.requests, Path(directory))
    print(f"| endpoint ({args.sites} sites) | raw | gzip | server, median | round trip, median |")
    print("|---|---:|---:|---:|---:|")
    for m in measures:
        print(
            f"| `{m.path}` | {m.raw_bytes / 1024:.0f} kB | {m.gzip_bytes / 1024:.1f} kB | "
            f"{m.server_ms:.1f} ms | {m.round_trip_ms:.1f} ms |"
        )
    page = measures[0]
    verdict = "within" if page.gzip_bytes <= BUDGET else "OVER"
    print(
        f"\nThe page, compressed: {page.gzip_bytes / 1024:.1f} kB, {verdict} the budget of "
        f"{BUDGET // 1024} kB (median of {args.requests} requests each, loopback)."
    )


if __name__ == "__main__":
    main()
