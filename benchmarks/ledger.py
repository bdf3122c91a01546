"""The availability ledger at 10,000 sites: bytes on disk, memory, report times.

Builds a month (October 2026, America/Lima) of hourly points for N sites the way a
running collector writes them: one journal chunk per save right after each hour ends,
holding every site's point of that hour (link counters, WiFi, traffic; 1 % of the
site-hours down, a few power cuts). Prints:

- the hot path: the cost of `Ledger.observe` for one live push (7 series, 1 sample);
- the journal's bytes on disk per site per month (and the raw 56 bytes per point);
- the time and peak memory (RSS) to read the month and build the SLA CSV of all sites,
  the panel rows of the month, and the HTML and PDF of one project of 558 sites (the
  Junín project's size) and of all sites.

    python -m benchmarks.ledger [--sites 10000] [--dir /tmp] [--pdf-all]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import random
import resource
import shutil
import tempfile
import time
from pathlib import Path

from collector import reports
from collector.config import CollectorConfig, Maintenance
from collector.inventory import Inventory, Site
from collector.ledger import (
    POINT_BYTES,
    Ledger,
    Point,
    Taken,
    compact,
    month_bounds,
    utc_month,
)
from collector.reports import panel, render, sla
from kipu.remote_write.codec import encode_samples, normalise_labels

MONTH = "2026-10"
ZONE = "America/Lima"
PROJECT_SIZE = 558


def inventory(count: int) -> Inventory:
    sites = {}
    for n in range(count):
        site_id = f"s{n:05d}"
        project = "junin" if n < PROJECT_SIZE else f"p{n // 1000}"
        sites[site_id] = Site(
            site_id=site_id,
            site_name=f"IE {n}",
            project=project,
            region="Junín",
            province="Concepción",
            district="Comas",
            ubigeo="120206",
            institution_type=("school", "health", "police")[n % 3],
            institution_code="",
            upstream_node="nodo",
            access_tech="4g",
            latitude=None,
            longitude=None,
        )
    return Inventory(sites)


def build(state_dir: Path, count: int) -> tuple[float, int, int, float]:
    """Write the month; (seconds, journal bytes, compactions, seconds of the last full
    compaction of October)."""
    start, end = month_bounds(MONTH, ZONE)
    first_hour = int(start // 3600)
    hours = int((end - start) // 3600) + 1
    ledger = Ledger(state_dir)
    ledger.load()
    rng = random.Random(7)
    counters = [[0.0, 0.0, 0.0, 0.0, 0.0] for _ in range(count)]  # up, down, off, out, bytes
    began = time.perf_counter()
    for step in range(hours):
        hour = first_hour + step
        final: dict[str, list[Point]] = {}
        for n in range(count):
            c = counters[n]
            roll = rng.random()
            if roll < 0.01:
                c[1] += 3600.0
                c[3] += 1
            elif roll < 0.012:
                c[2] += 3600.0
            else:
                c[0] += 3600.0 - roll
            c[4] += 1e8 + roll * 9e8
            offset = 3_585_000 + int(roll * 10_000)
            final[f"s{n:05d}"] = [
                (hour, offset, offset, offset, c[0], c[1], c[2], c[3], float(int(roll * 40)), c[4])
            ]
        ledger.write(Taken({utc_month(hour): final}, {}, None, (hour + 1) * 3600.0 + 5))
    elapsed = time.perf_counter() - began
    began = time.perf_counter()
    compact(state_dir / "ledger" / "2026-10.journal")  # as an hour after the month ends
    last = time.perf_counter() - began
    size = sum(p.stat().st_size for p in (state_dir / "ledger").glob("*.journal"))
    return elapsed, size, ledger.compactions, last


def hot_path(rounds: int = 20000) -> float:
    """Microseconds of `Ledger.observe` per live push."""
    ledger = Ledger(Path(tempfile.mkdtemp()))
    names = (
        "kipu_link_up_seconds_total",
        "kipu_link_down_seconds_total",
        "kipu_agent_offline_seconds_total",
        "kipu_link_outages_total",
        "kipu_wifi_unique_clients",
        "kipu_interface_receive_bytes_total",
        "kipu_interface_transmit_bytes_total",
    )
    now = 1_800_000_000.0
    pushes = []
    for n in range(rounds):
        stamp = int((now + n * 0.5) * 1000)
        pushes.append(
            [
                (normalise_labels({"__name__": name}), encode_samples([(stamp, float(n))]))
                for name in names
            ]
        )
    began = time.perf_counter()
    for n, push in enumerate(pushes):
        ledger.observe(f"s{n % 10000:05d}", push, now + n * 0.5)
    return (time.perf_counter() - began) / rounds * 1e6


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=10_000)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--pdf-all", action="store_true", help="also the PDF of every site")
    args = parser.parse_args()
    print(f"hot path: {hot_path():.1f} µs per live push (Ledger.observe, 7 series)")
    work = Path(tempfile.mkdtemp(dir=args.dir, prefix="kipu-ledger-"))
    try:
        state = work / "state"
        # Built in a child process, so that the peak memory below is the reports' own.
        with concurrent.futures.ProcessPoolExecutor(
            1, mp_context=multiprocessing.get_context("fork")
        ) as pool:
            seconds, size, compactions, last = pool.submit(build, state, args.sites).result()
        start, end = month_bounds(MONTH, ZONE)
        hours = int((end - start) // 3600) + 1
        print(
            f"{args.sites} sites x {hours} hours: written in {seconds:.1f} s, journal "
            f"{size / 1e6:.1f} MB = {size / args.sites / 1e3:.1f} KB per site-month "
            f"(raw {POINT_BYTES * hours / 1e3:.1f} KB); {compactions} compactions on the way, "
            f"the last (the whole month) {last:.1f} s"
        )
        config = CollectorConfig(inventory=work / "sites.yaml", state_dir=state)
        sites = inventory(args.sites)
        before = rss_mb()  # the interpreter and the modules
        began = time.perf_counter()
        report = reports.sla_report(config, sites, Maintenance(), MONTH)
        text = sla.to_csv(report.rows)
        csv_seconds = time.perf_counter() - began
        print(
            f"SLA CSV of {len(report.rows)} sites: {csv_seconds:.1f} s, "
            f"{len(text.encode()) / 1e6:.1f} MB, peak RSS {rss_mb():.0f} MB "
            f"(before: {before:.0f} MB)"
        )
        began = time.perf_counter()
        cells = reports.panel_report(config, sites, Maintenance(), MONTH, MONTH)
        panel.to_csv(cells)
        print(f"panel of the month: {time.perf_counter() - began:.1f} s")
        began = time.perf_counter()
        junin = reports.sla_report(config, sites, Maintenance(), MONTH, project="junin")
        read_seconds = time.perf_counter() - began
        began = time.perf_counter()
        document = render.html(junin, "es")
        html_seconds = time.perf_counter() - began
        began = time.perf_counter()
        pdf = render.pdf(document)
        print(
            f"one project ({len(junin.rows)} sites): read {read_seconds:.1f} s, HTML "
            f"{html_seconds:.2f} s, PDF {time.perf_counter() - began:.1f} s "
            f"({len(pdf) / 1e3:.0f} KB), peak RSS {rss_mb():.0f} MB"
        )
        if args.pdf_all:
            began = time.perf_counter()
            pdf = render.pdf(render.html(report, "es"))
            print(
                f"PDF of all {len(report.rows)} sites: {time.perf_counter() - began:.1f} s "
                f"({len(pdf) / 1e6:.1f} MB), peak RSS {rss_mb():.0f} MB"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
