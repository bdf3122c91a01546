"""kipu's throughput test and Debian's iperf3, side by side, on the same tbf-shaped links.

Two network namespaces joined by a veth pair (demo.netns.Testbed); the far end's egress
is shaped with tbf to the download rate, the site end's to the upload rate (4/1 Mbit/s,
then 12/12 Mbit/s). In the far namespace run kipu-collector and `iperf3 -s`; in the site
namespace kipu-agent (throughput configured, no schedule) and `iperf3 -c ... -t 10 -P 4
[-R]`. For each link and direction we print the reading, its error against the shaped
rate, the bytes the test moved and how long it took. tbf counts whole Ethernet frames,
so TCP goodput tops out near 95.6% of the shaped rate (1448 payload bytes per 1514-byte
frame with TCP timestamps): that ceiling is printed too.

Run as root (it builds network namespaces):

    PYTHONPATH=. .venv/bin/python -m benchmarks.throughput_vs_iperf3 [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from demo.netns import Testbed, http_get, http_post, terminate
from tests.collector_process import ROOT, issue_token, write_collector
from tests.metrics_util import wait_until

COLLECTOR_PORT = 9109
AGENT_PORT = 9108
IPERF_PORT = 5201
LINKS = (("4mbit", "1mbit"), ("12mbit", "12mbit"))
CEILING = 1448 / 1514
"""TCP payload per Ethernet frame (MTU 1500, timestamps on): goodput's share of tbf's rate."""


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None:
        terminate(proc, grace=15)


def iperf3(bed: Testbed, address: str, seconds: int, reverse: bool) -> tuple[float, int, float]:
    """(bits per second received, bytes sent, wall seconds) of one iperf3 client run."""
    argv = ["ip", "netns", "exec", bed.site_ns, "iperf3", "-c", address, "-p", str(IPERF_PORT)]
    argv += ["-t", str(seconds), "-P", "4", "-J", *(["-R"] if reverse else [])]
    started = time.monotonic()
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=120).stdout
    took = time.monotonic() - started
    end = json.loads(out)["end"]
    return float(end["sum_received"]["bits_per_second"]), int(end["sum_sent"]["bytes"]), took


def wait_http(ns: str, host: str, port: int, proc: subprocess.Popen[bytes]) -> None:
    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited {proc.returncode}")
        try:
            status, _, _ = http_get(ns, host, port, "/healthz")
        except OSError:
            return False
        return status == 200

    wait_until(ready, timeout=30, step=0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="iperf3's -t")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kipu-throughput-"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rows = []
    with Testbed() as bed:
        address = bed.target_addresses[0]
        config = write_collector(work / "collector")
        token = issue_token(config, "jun-0001")
        (work / "token").write_text(token + "\n")
        agent_config = work / "agent.yaml"
        agent_config.write_text(
            f"site_id: jun-0001\nstate_dir: {work / 'state'}\n"
            f"probes: {{targets: [{{name: pop, address: {address}, role: pop}}]}}\n"
            f"push: {{url: 'http://{address}:{COLLECTOR_PORT}/api/v1/write', "
            f"token_file: {work / 'token'}}}\n"
            "throughput: {runs_per_day: 0}\n"
        )
        collector = agent = iperf = None
        try:
            collector = bed.exec_far(
                [sys.executable, "-m", "collector", f"--config.file={config}",
                 f"--web.listen-address={address}:{COLLECTOR_PORT}"],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            wait_http(bed.far_ns, address, COLLECTOR_PORT, collector)
            agent = bed.exec_site(
                [sys.executable, "-m", "agent", f"--config.file={agent_config}",
                 f"--web.listen-address=127.0.0.1:{AGENT_PORT}"],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            wait_http(bed.site_ns, "127.0.0.1", AGENT_PORT, agent)
            iperf = bed.exec_far(
                ["iperf3", "-s", "-B", address, "-p", str(IPERF_PORT)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(0.5)  # iperf3 -s has no readiness signal; a refused client says so
            for down, up in LINKS:
                bed.shape(down, up)
                status, _, body = http_post(
                    bed.site_ns, "127.0.0.1", AGENT_PORT, "/-/throughput", timeout=600
                )
                assert status == 200, body
                kipu = json.loads(body)
                for direction, rate in (("download", down), ("upload", up)):
                    shaped = float(rate.removesuffix("mbit")) * 1e6
                    bps, sent, took = iperf3(bed, address, args.seconds, direction == "download")
                    rows.append((f"{down}/{up}", direction, shaped, "iperf3", bps, sent, took))
                    k = kipu[direction]
                    rows.append(
                        (f"{down}/{up}", direction, shaped, "kipu",
                         float(k["bits_per_second"] or 0), int(k["bytes"]), float(k["seconds"]))
                    )  # fmt: skip
        finally:
            stop(iperf)
            stop(agent)
            stop(collector)
    print(f"goodput ceiling: {CEILING:.1%} of the shaped rate (TCP/IP/Ethernet headers)")
    print("| link (down/up) | direction | tool | reading | vs shaped | bytes | duration |")
    print("|---|---|---|---:|---:|---:|---:|")
    for link, direction, shaped, tool, bps, spent, took in rows:
        error = (bps - shaped) / shaped
        print(
            f"| {link} | {direction} | {tool} | {bps / 1e6:.2f} Mbit/s | {error:+.1%} "
            f"| {spent / 1e6:.2f} MB | {took:.1f} s |"
        )


if __name__ == "__main__":
    main()
