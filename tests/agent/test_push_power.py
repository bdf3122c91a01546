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

from agent.push import SPOOL_DIR
from kipu.remote_write.codec import decode
from kipu.spool import Spool
from tests.agent_process import AgentProcess, free_port
from tests.metrics_util import wait_until
from tests.support.fixtures import fail_missing
from tests.support.receiver import Receiver

INTERVAL = 0.1
#: Each snapshot carries this counter's value before it: 0, 1, 2... in each run.
COUNTER = "kipu_push_snapshots_total"


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


def spooled_values(state_dir: Path, name: str) -> list[float]:
    """Values of metric `name` in the snapshots a stopped agent left in its spool, oldest
    first."""
    spool = Spool(state_dir / SPOOL_DIR, 1 << 30)
    spool.open()
    try:
        payloads = [record.payload for record in spool.oldest(10**6)]
    finally:
        spool.close()
    return [
        value
        for payload in payloads
        for series, points in decode(payload).items()
        if dict(series)["__name__"] == name
        for _, value in points
    ]


def snapshots_between(receiver: Receiver, after: float, until: float) -> list[float]:
    """The counter of every snapshot stamped in (after, until], in time order; a snapshot
    sent again (after a cut) counts once."""
    return [v for t, v in sorted(set(receiver.series(COUNTER))) if after < t / 1000 <= until]


def test_sigkill_at_random_moments(tmp_path: Path) -> None:
    rng = random.Random(2026)
    runs: list[tuple[float, float]] = []  # (snapshots counted just before the cut, cut at)
    with Receiver() as receiver:
        path = config(tmp_path, receiver.url, tmp_path / "state")
        for _ in range(8):  # bounded: eight power cuts
            agent = AgentProcess(path, free_port(), tmp_path / "agent.log").start()
            # The cut comes at a random moment of writing and sending.
            time.sleep(rng.uniform(0.3, 1.2))
            counted = agent.scrape().value(COUNTER)
            killed = time.time()
            agent.stop(signal.SIGKILL)
            runs.append((counted, killed))
        with AgentProcess(path, free_port(), tmp_path / "agent.log") as final:
            wait_until(lambda: final.scrape().value("kipu_spool_samples") == 0, timeout=30)
            final_counted = final.scrape().value(COUNTER)
            # SIGTERM lets requests under way finish and flushes the spool: nothing moves.
            assert final.stop(signal.SIGTERM) == 0

    # Nothing arrives twice with a different value.
    values: dict[tuple[object, int], float] = {}
    for series, stamp, value in receiver.samples:
        previous = values.setdefault((series, stamp), value)
        assert previous == value or (math.isnan(previous) and math.isnan(value)), (series, stamp)
    # Every snapshot synced before a cut arrived, once: within each run the counters are
    # 0, 1, 2, ... with no gap. The snapshot counted last before the scrape may still
    # have been syncing when the cut came (a power cut loses at most the snapshot being
    # written); every one before it was on disk, so it arrived.
    previous_cut = 0.0
    for counted, killed in runs:
        in_run = snapshots_between(receiver, previous_cut, killed)
        previous_cut = killed
        assert in_run == [float(i) for i in range(len(in_run))], in_run
        assert len(in_run) >= counted - 1, (counted, in_run)
    # The last run stopped cleanly: all it took arrived or waits in the spool, in order.
    last = snapshots_between(receiver, previous_cut, math.inf)
    last += spooled_values(tmp_path / "state", COUNTER)
    assert last == [float(i) for i in range(len(last))], last
    assert len(last) >= final_counted
    # Stamps are evenly spaced within each run (the backlog kept the original ones).
    stamps = sorted({t / 1000 for t, _ in receiver.series("kipu_agent_build_info")})
    cuts = [killed for _, killed in runs]
    for start, end in itertools.pairwise([0.0, *cuts, math.inf]):
        in_run = [t for t in stamps if start < t <= end]
        gaps = [b - a for a, b in itertools.pairwise(in_run)]
        assert not gaps or max(gaps) < 3 * INTERVAL, max(gaps)


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
            counted = agent.scrape().value(COUNTER)
            assert agent.stop(signal.SIGTERM) == 0
        # What arrived (and what the stop left in the spool) is the newest part: the
        # oldest snapshots were dropped, every one after them is there, once, in order.
        kept = snapshots_between(receiver, 0, math.inf)
        kept += spooled_values(tmp_path / "state", COUNTER)
        assert kept, "nothing arrived"
        oldest = int(kept[0])
        assert oldest > 0, "the oldest snapshots were dropped"
        assert kept == [float(i) for i in range(oldest, oldest + len(kept))], kept
        assert oldest + len(kept) >= counted
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
        fail_missing("tmpfs", result.stderr.strip(), "mounting one needs root, as in CI")
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
                counted = agent.scrape().value(COUNTER)
                assert agent.stop(signal.SIGTERM) == 0
            # The drops were made for the full disk, not for max_spool.
            assert "spool: disk full, dropping" in agent.log()
            kept = snapshots_between(receiver, 0, math.inf) + spooled_values(state, COUNTER)
        # The oldest snapshots were dropped; every one after them arrived, once, in order.
        assert kept, "nothing arrived"
        oldest = int(kept[0])
        assert oldest > 0, "the oldest snapshots were dropped"
        assert kept == [float(i) for i in range(oldest, oldest + len(kept))], kept
        assert oldest + len(kept) >= counted
    finally:
        receiver.__exit__(None, None, None)
