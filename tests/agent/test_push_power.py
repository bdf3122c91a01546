"""Power cuts and full disks: the agent as a process, SIGKILLed at random moments, and
its state folder on a tiny tmpfs; a loopback receiver records every sample."""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import random
import signal
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent_process import AgentProcess, free_port
from tests.metrics_util import wait_until
from tests.support.receiver import Receiver

INTERVAL = 0.1


def config(tmp_path: Path, url: str, state_dir: Path, max_spool: str = "4MiB") -> Path:
    path = tmp_path / "agent.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            site_id: power-0001
            state_dir: {state_dir}
            heartbeat_interval: 100ms
            probes:
              interval: 50ms
              timeout: 500ms
              targets:
                - {{name: gw, address: 127.0.0.1, role: gateway}}
            push:
              url: {url}
              interval: {int(INTERVAL * 1000)}ms
              timeout: 1s
              spread: 0s
              clock_settle: 0s
              max_spool: {max_spool}
            """
        )
    )
    return path


def test_sigkill_at_random_moments(tmp_path: Path) -> None:
    rng = random.Random(2026)
    runs: list[tuple[float, float]] = []
    with Receiver() as receiver:
        path = config(tmp_path, receiver.url, tmp_path / "state")
        for _ in range(8):  # bounded: eight power cuts
            agent = AgentProcess(path, free_port(), tmp_path / "agent.log").start()
            started = time.time()
            # The cut comes at a random moment of writing and sending.
            time.sleep(rng.uniform(0.3, 1.2))
            killed = time.time()
            agent.stop(signal.SIGKILL)
            runs.append((started, killed))
        with AgentProcess(path, free_port(), tmp_path / "agent.log") as final:
            wait_until(lambda: final.scrape().value("kipu_spool_samples") == 0, timeout=30)
            final.stop(signal.SIGTERM)

    # Nothing arrives twice with a different value.
    values: dict[tuple[object, int], float] = {}
    for series, stamp, value in receiver.samples:
        previous = values.setdefault((series, stamp), value)
        assert previous == value or (math.isnan(previous) and math.isnan(value)), (series, stamp)
    # Every snapshot synced before a cut arrived: within each run, the snapshots are
    # contiguous up to one interval (plus the sync in progress) before the cut.
    stamps = sorted({t / 1000 for t, _ in receiver.series("kipu_agent_build_info")})
    previous_cut = 0.0
    for started, killed in runs:
        # The run's snapshots: after the previous cut, up to this one (its start-up,
        # before it answered /healthz, comes before `started`).
        in_run = [t for t in stamps if max(previous_cut, started - 5) < t <= killed]
        previous_cut = killed
        assert in_run, (started, killed)
        gaps = [b - a for a, b in itertools.pairwise(in_run)]
        assert not gaps or max(gaps) < 3 * INTERVAL, max(gaps)
        assert killed - in_run[-1] < 3 * INTERVAL + 0.2, killed - in_run[-1]


def test_spool_full_drops_oldest_keeps_probing_and_recovers(tmp_path: Path) -> None:
    receiver = Receiver()
    receiver.start()
    port = receiver.port
    receiver.stop()  # the uplink is down
    try:
        path = config(tmp_path, receiver.url, tmp_path / "state", max_spool="64KiB")
        with AgentProcess(path, free_port(), tmp_path / "agent.log") as agent:
            wait_until(
                lambda: agent.scrape().value("kipu_spool_dropped_samples_total") > 0, timeout=60
            )
            scrape = agent.scrape()
            assert scrape.value("kipu_spool_bytes") <= 64 * 1024
            sent = scrape.value("kipu_probe_packets_sent_total", target="gw", role="gateway")
            wait_until(
                lambda: (
                    agent.scrape().value(
                        "kipu_probe_packets_sent_total", target="gw", role="gateway"
                    )
                    > sent + 10
                )
            )
            receiver.start(port)
            wait_until(lambda: agent.scrape().value("kipu_spool_samples") == 0, timeout=30)
        # What arrived is the newest part: the oldest was dropped, the rest is contiguous.
        stamps = sorted({t / 1000 for t, _ in receiver.series("kipu_agent_build_info")})
        gaps = [b - a for a, b in itertools.pairwise(stamps)]
        assert max(gaps) < 3 * INTERVAL
    finally:
        receiver.__exit__(None, None, None)


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path) -> Path:
    """Fill the filesystem of `directory` to the last byte."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as f:
        with contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 4096)
        with contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 64)
        with contextlib.suppress(OSError):
            os.fsync(f.fileno())
    return filler


def test_full_disk_keeps_probing_counts_drops_and_recovers(tmp_path: Path) -> None:
    receiver = Receiver()
    receiver.start()
    port = receiver.port
    receiver.stop()
    try:
        with tmpfs(tmp_path / "state", "512k") as state:
            path = config(tmp_path, receiver.url, state, max_spool="64KiB")
            with AgentProcess(path, free_port(), tmp_path / "agent.log") as agent:
                wait_until(lambda: agent.scrape().value("kipu_spool_samples") > 0)
                filler = fill(state)
                wait_until(
                    lambda: agent.scrape().value("kipu_spool_dropped_samples_total") > 0, timeout=60
                )
                sent = agent.scrape().value(
                    "kipu_probe_packets_sent_total", target="gw", role="gateway"
                )
                wait_until(
                    lambda: (
                        agent.scrape().value(
                            "kipu_probe_packets_sent_total", target="gw", role="gateway"
                        )
                        > sent + 10
                    )
                )
                filler.unlink()  # space returns
                receiver.start(port)  # and the uplink
                wait_until(lambda: agent.scrape().value("kipu_spool_samples") == 0, timeout=30)
                assert agent.healthy()
            assert "spool" in agent.log()
        assert receiver.series("kipu_agent_build_info")
    finally:
        receiver.__exit__(None, None, None)
