"""kipu-agent and Debian's prometheus-smokeping-prober, side by side, on the same targets.

Both probe the same emulated targets (an echo responder in a network namespace, each
target with its own configured delay) every second for the same period. For each we
print CPU seconds (whole run and the measured window), peak RSS, and the RTT error
against the configured delay: per target, the mean RTT over the window (histogram sum
over count) minus the delay; the median and the worst of those over the targets.

Run as root (it builds network namespaces):

    .venv/bin/python -m benchmarks.icmp_vs_smokeping [--targets 20] [--seconds 60]
"""

from __future__ import annotations

import argparse
import compileall
import functools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from demo.netns import Testbed, http_get
from tests.metrics_util import Scrape, parse

SMOKEPING = shutil.which("prometheus-smokeping-prober") or "/usr/bin/prometheus-smokeping-prober"
ROOT = Path(__file__).resolve().parents[1]
# Fibre and microwave hops, unlicensed radio, rural 4G, LEO and GEO satellite (DESIGN §7).
DELAYS_MS = [0.5, 1, 2, 5, 8, 12, 15, 20, 25, 30, 40, 54, 60, 80, 100, 150, 250, 400, 600, 700]


@dataclass
class Prober:
    """One prober under test: how to start it and how to read its RTT histogram."""

    name: str
    argv: list[str]
    port: int
    rtt_metric: str
    target_label: str
    proc: subprocess.Popen[bytes] | None = None
    cpu_start: float = 0.0
    cpu_window: float = 0.0
    cpu_total: float = 0.0
    peak_rss_kib: int = 0
    errors_ms: list[float] | None = None
    lost: float = 0.0
    sent: float = 0.0


def clock_ticks() -> int:
    return int(os.sysconf("SC_CLK_TCK"))


def cpu_seconds(pid: int) -> float:
    """User plus system CPU of a process, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / clock_ticks()


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def scrape(bed: Testbed, port: int) -> Scrape:
    status, _, body = http_get(bed.site_ns, "127.0.0.1", port, "/metrics")
    if status != 200:
        raise RuntimeError(f"scrape of :{port} answered {status}")
    return parse(body.decode())


def has_samples(bed: Testbed, port: int) -> bool:
    return bool(scrape(bed, port).samples)


def rtt_means(s: Scrape, metric: str, label: str) -> dict[str, tuple[float, float]]:
    """Per target: (sum, count) of the RTT histogram."""
    out: dict[str, tuple[float, float]] = {}
    for (name, labels), value in s.samples.items():
        lbl = dict(labels)
        if label not in lbl:
            continue
        total, count = out.get(lbl[label], (0.0, 0.0))
        if name == f"{metric}_sum":
            out[lbl[label]] = (value, count)
        elif name == f"{metric}_count":
            out[lbl[label]] = (total, value)
    return out


def wait_for(check: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            if check():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready within {within}s")
        time.sleep(0.1)


def agent_config(path: Path, addresses: list[str]) -> None:
    lines = [
        "site_id: bench-0001",
        f"state_dir: {path.parent / 'state'}",
        "probes:",
        "  interval: 1s",
        "  timeout: 2s",
        "  targets:",
    ]
    lines += [f"    - {{name: '{a}', address: {a}, role: other}}" for a in addresses]
    path.write_text("\n".join(lines) + "\n")


def run(targets: int, seconds: float, warmup: float) -> list[Prober]:
    if not Path(SMOKEPING).exists():
        raise SystemExit(f"{SMOKEPING} not found: apt-get install prometheus-smokeping-prober")
    # An installed agent runs from compiled bytecode (pip compiles wheels); an editable
    # checkout with PYTHONDONTWRITEBYTECODE would compile at every start and inflate RSS.
    compileall.compile_dir(ROOT / "agent", quiet=1)
    delays = [DELAYS_MS[i % len(DELAYS_MS)] / 1000 for i in range(targets)]
    with Testbed(targets=targets) as bed, tempfile.TemporaryDirectory() as tmp:
        addresses = bed.target_addresses
        for address, delay in zip(addresses, delays, strict=True):
            bed.set(address, delay=delay)
        configured = dict(zip(addresses, delays, strict=True))
        config = Path(tmp) / "agent.yaml"
        agent_config(config, addresses)
        probers = [
            Prober(
                "kipu-agent",
                [
                    sys.executable,
                    "-m",
                    "agent",
                    f"--config.file={config}",
                    "--web.listen-address=127.0.0.1:19108",
                    "--log.level=warn",
                ],
                19108,
                "kipu_probe_rtt_seconds",
                "target",
            ),
            Prober(
                "smokeping_prober",
                [
                    SMOKEPING,
                    "--privileged",
                    "--web.listen-address=127.0.0.1:19374",
                    "--ping.interval=1s",
                    "--log.level=warn",
                    *addresses,
                ],
                19374,
                "smokeping_response_duration_seconds",
                "host",
            ),
        ]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        log = (Path(tmp) / "probers.log").open("wb")
        for prober in probers:
            prober.proc = bed.exec_site(prober.argv, stdout=log, stderr=log, env=env)
        for prober in probers:
            wait_for(functools.partial(has_samples, bed, prober.port), 20, prober.name)
        time.sleep(warmup)  # let both reach steady state before the window opens
        before = {p.name: scrape(bed, p.port) for p in probers}
        for prober in probers:
            assert prober.proc is not None
            prober.cpu_start = cpu_seconds(prober.proc.pid)
        bed.reset_stats()
        time.sleep(seconds)  # the measured window: both probe for exactly this long
        for prober in probers:
            assert prober.proc is not None
            after = scrape(bed, prober.port)
            prober.cpu_total = cpu_seconds(prober.proc.pid)
            prober.cpu_window = prober.cpu_total - prober.cpu_start
            prober.peak_rss_kib = peak_rss_kib(prober.proc.pid)
            first = rtt_means(before[prober.name], prober.rtt_metric, prober.target_label)
            last = rtt_means(after, prober.rtt_metric, prober.target_label)
            prober.errors_ms = []
            for address, delay in configured.items():
                s0, c0 = first.get(address, (0.0, 0.0))
                s1, c1 = last[address]
                if c1 > c0:
                    prober.errors_ms.append(((s1 - s0) / (c1 - c0) - delay) * 1000)
        late = bed.stats().late_max
        log.close()
    print(f"responder: replies at most {late * 1e6:.0f} µs after their due time")
    return probers


def report(probers: list[Prober], targets: int, seconds: float) -> str:
    lines = [
        f"{targets} targets, 1 s interval, {seconds:.0f} s window "
        f"(configured delays {DELAYS_MS[0]} ms … {max(DELAYS_MS[:targets])} ms)",
        "",
        "| prober | CPU s (window) | CPU s (whole run) | peak RSS MB "
        "| median RTT error ms | worst RTT error ms |",
        "|---|---|---|---|---|---|",
    ]
    for p in probers:
        errors = p.errors_ms or [float("nan")]
        worst = max(errors, key=abs)
        lines.append(
            f"| {p.name} | {p.cpu_window:.2f} | {p.cpu_total:.2f} | {p.peak_rss_kib / 1024:.1f} "
            f"| {statistics.median(abs(e) for e in errors):.3f} | {worst:+.3f} |"
        )
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--targets", type=int, default=20)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--warmup", type=float, default=5.0)
    args = p.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: the benchmark builds network namespaces")
    probers = run(args.targets, args.seconds, args.warmup)
    print(report(probers, args.targets, args.seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
