"""kipu-agent's SNMP poll and Debian's prometheus-snmp-exporter, side by side, on one device.

Both poll the same recorded 48-interface router (tests/snmp_data/router48.snmprec) served
by one snmpsim responder on loopback, for the same objects: the agent with its built-in
``if_mib`` profile, the exporter with the hand-written module in
``benchmarks/snmp_exporter_if_mib.yml`` (numeric OIDs: Debian ships no ready snmp.yml
and no MIB files). They take turns, never at the same time, in interleaved rounds
(agent first in even rounds, exporter first in odd ones) so drift hits both alike.

- agent: a child process (``--child``) holds one ``SnmpClient`` for its whole life, as
  the agent does, and times each ``poll`` plus ``profile.extract`` (perf_counter), with
  its own CPU from ``time.process_time``.
- exporter: this process sends ``GET /snmp?target=...&module=if_mib`` over one
  keep-alive HTTP connection and times each request until the whole body is read; its
  CPU is utime+stime of the exporter process (/proc/PID/stat) over each round.
- responder: snmpsim's CPU (/proc/PID/stat) over each round, charged to that round's
  poller.

Both are checked before timing, and every timed poll after it, to have read all 48
interfaces; the run fails otherwise. Run from the repository root:

    PYTHONPATH=. .venv/bin/python -m benchmarks.snmp_vs_exporter [--rounds 5] [--polls 20]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
EXPORTER = shutil.which("prometheus-snmp-exporter") or "/usr/bin/prometheus-snmp-exporter"
EXPORTER_CONFIG = ROOT / "benchmarks" / "snmp_exporter_if_mib.yml"
COMMUNITY = "router48"
INTERFACES = 48
# The device settings an agent uses by default (agent/config.py): 5 s, 1 retry; the
# deadline of a poll is its interval (30 s by default).
TIMEOUT, RETRIES, DEADLINE = 5.0, 1, 30.0
# What the exporter module reads: the metric of each column (the same OIDs as the agent's
# IF_MIB_COLUMNS) and sysUpTime.
EXPORTER_COLUMNS = (
    "ifName",
    "ifDescr",
    "ifHCInOctets",
    "ifHCOutOctets",
    "ifInOctets",
    "ifOutOctets",
    "ifHighSpeed",
    "ifSpeed",
    "ifOperStatus",
)
EXPECTED_SERIES = 1 + INTERFACES * len(EXPORTER_COLUMNS)


class BenchmarkError(RuntimeError):
    """A poller did not read what it should have: the figures would mean nothing."""


# --------------------------------------------------------------------------- helpers


def clock_ticks() -> int:
    return int(os.sysconf("SC_CLK_TCK"))


def cpu_seconds(pid: int) -> float:
    """User plus system CPU of a process (all its threads), from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / clock_ticks()


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0 < q < 100), interpolated between the nearest ranks."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


# ------------------------------------------------------------------ the agent's side


class _CountingHlapi:
    """Stands in for pysnmp's hlapi module in a SnmpClient: counts requests and varbinds."""

    def __init__(self, hlapi: Any) -> None:
        self._hlapi = hlapi
        self.requests = 0
        self.varbinds = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._hlapi, name)

    async def get_cmd(self, *args: Any, **kwargs: Any) -> Any:
        return self._count(await self._hlapi.get_cmd(*args, **kwargs))

    async def bulk_cmd(self, *args: Any, **kwargs: Any) -> Any:
        return self._count(await self._hlapi.bulk_cmd(*args, **kwargs))

    def _count(self, result: Any) -> Any:
        self.requests += 1
        self.varbinds += len(result[3])
        return result


async def _agent_poll(client: Any, device: Any, profile: Any) -> tuple[float, Any, Any]:
    """One poll as the agent does it (poll, then extract): (seconds, reading, state)."""
    start = time.perf_counter()
    reading = await client.poll(device, profile.scalars, profile.columns, DEADLINE)
    state = profile.extract(reading) if reading.ok else None
    return time.perf_counter() - start, reading, state


def _varbinds(reading: Any) -> int:
    return len(reading.scalars) + sum(len(rows) for rows in reading.columns.values())


def _complete(state: Any) -> bool:
    if state is None or state.uptime_seconds is None or len(state.interfaces) != INTERFACES:
        return False
    return all(
        i.rx_bytes is not None
        and i.tx_bytes is not None
        and i.up is not None
        and i.speed_bytes is not None
        and i.name != f"if{i.index}"  # the fallback when ifName and ifDescr are missing
        for i in state.interfaces
    )


async def _child_session(port: int, stdin: IO[str], stdout: IO[str]) -> None:
    from agent.probes.snmp import Credentials, Device, SnmpClient  # noqa: PLC0415
    from agent.profiles import BUILTIN  # noqa: PLC0415

    def send(message: dict[str, Any]) -> None:
        stdout.write(json.dumps(message) + "\n")
        stdout.flush()

    loop = asyncio.get_running_loop()
    profile = BUILTIN["if_mib"]
    device = Device(
        "router48", "127.0.0.1", port, Credentials(community=COMMUNITY), TIMEOUT, RETRIES
    )
    client = SnmpClient()
    try:
        await client.warm()
        send({"ready": True})
        while True:
            line = await loop.run_in_executor(None, stdin.readline)
            command = line.split()
            if not command or command[0] == "quit":
                return
            if command[0] == "check":
                # One poll through a counting stand-in for pysnmp's API, then the real one.
                counting = _CountingHlapi(client._hlapi)
                client._hlapi = counting
                try:
                    _, reading, state = await _agent_poll(client, device, profile)
                finally:
                    client._hlapi = counting._hlapi
                send(
                    {
                        "error": reading.error,
                        "complete": _complete(state),
                        "varbinds": _varbinds(reading),
                        "names": sorted(i.name for i in state.interfaces) if state else [],
                        "requests": counting.requests,
                        "varbinds_received": counting.varbinds,
                    }
                )
            elif command[0] == "poll":
                walls: list[float] = []
                incomplete = 0
                varbinds = 0
                cpu_start = time.process_time()
                for _ in range(int(command[1])):
                    wall, reading, state = await _agent_poll(client, device, profile)
                    walls.append(wall)
                    incomplete += not _complete(state)
                    varbinds = _varbinds(reading)
                cpu = time.process_time() - cpu_start
                send({"walls": walls, "cpu": cpu, "incomplete": incomplete, "varbinds": varbinds})
            else:
                raise SystemExit(f"unknown command {line!r}")
    finally:
        client.close()


def child_main(port: int) -> int:
    """The agent's side, in its own process, driven by commands on stdin."""
    asyncio.run(_child_session(port, sys.stdin, sys.stdout))
    return 0


# ------------------------------------------------------------------------ the harness


@dataclass
class Tally:
    """Figures of one poller over all rounds."""

    name: str
    walls: list[float] = field(default_factory=list)
    cpu: float = 0.0
    cpu_proc: float = 0.0  # the agent's CPU as /proc sees it, a cross-check
    responder_cpu: float = 0.0
    returned: int = 0
    requests: int = 0
    received: int = 0
    round_medians: list[float] = field(default_factory=list)

    @property
    def polls(self) -> int:
        return len(self.walls)


class AgentChild:
    """The ``--child`` process and its line protocol."""

    def __init__(self, snmp_port: int) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.snmp_vs_exporter", "--child", str(snmp_port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            env=env,
        )
        self.receive()  # {"ready": true} once warm

    def receive(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise BenchmarkError(f"the agent child exited ({self.proc.wait()})")
        message: dict[str, Any] = json.loads(line)
        return message

    def ask(self, command: str) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.receive()

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Exporter:
    """prometheus-snmp-exporter with the benchmark's module, and one HTTP connection."""

    def __init__(self, snmp_port: int, log: IO[bytes]) -> None:
        if not Path(EXPORTER).exists():
            raise SystemExit(f"{EXPORTER} not found: apt-get install prometheus-snmp-exporter")
        self.port = free_tcp_port()
        self.proc = subprocess.Popen(
            [
                EXPORTER,
                f"--config.file={EXPORTER_CONFIG}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=log,
        )
        self.path = f"/snmp?target=127.0.0.1:{snmp_port}&module=if_mib"
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise BenchmarkError("prometheus-snmp-exporter did not start") from None
                time.sleep(0.05)
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def get(self) -> tuple[float, str]:
        """One poll: (seconds until the whole body was read, body)."""
        start = time.perf_counter()
        self.conn.request("GET", self.path)
        response = self.conn.getresponse()
        body = response.read()
        wall = time.perf_counter() - start
        if response.status != 200:
            raise BenchmarkError(f"exporter answered {response.status}: {body[:300]!r}")
        return wall, body.decode()

    def close(self) -> None:
        self.conn.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass(frozen=True)
class ExporterCheck:
    series: int  # device series, without the exporter's own snmp_scrape_* ones
    names: list[str]
    packets: int
    pdus: int


def check_exporter_body(body: str) -> ExporterCheck:
    """Every column for all 48 interfaces, labelled with ifName, and sysUpTime."""
    from tests.metrics_util import parse  # noqa: PLC0415 (prometheus-client's parser)

    scrape = parse(body)
    device = {key: v for key, v in scrape.samples.items() if not key[0].startswith("snmp_")}
    problems = []
    if scrape.get("sysUpTime") is None:
        problems.append("no sysUpTime")
    names: set[str] = set()
    for column in EXPORTER_COLUMNS:
        # prometheus-client's parser names counter samples NAME_total
        rows = [dict(lbls) for name, lbls in device if name.removesuffix("_total") == column]
        indexes = {row.get("ifIndex") for row in rows}
        if len(rows) != INTERFACES or len(indexes) != INTERFACES:
            problems.append(f"{column}: {len(rows)} series, {len(indexes)} ifIndex values")
        if any(not row.get("ifName") for row in rows):
            problems.append(f"{column}: series without an ifName label")
        names |= {row.get("ifName", "") for row in rows}
    if problems:
        raise BenchmarkError("exporter did not read the whole device: " + "; ".join(problems))
    return ExporterCheck(
        len(device),
        sorted(names),
        int(scrape.value("snmp_scrape_packets_sent")),
        int(scrape.value("snmp_scrape_pdus_returned")),
    )


@contextmanager
def pollers() -> Iterator[tuple[Any, AgentChild, Exporter]]:
    """snmpsim with a private copy of the recordings, the agent child and the exporter."""
    from tests.support.snmp import SnmpSim, copy_recordings  # noqa: PLC0415

    with tempfile.TemporaryDirectory(prefix="kipu-snmp-bench-") as tmp:
        data = copy_recordings(Path(tmp) / "data", [COMMUNITY])
        with SnmpSim(data) as sim, (Path(tmp) / "exporter.log").open("wb") as log:
            agent = AgentChild(sim.port)
            exporter: Exporter | None = None
            try:
                exporter = Exporter(sim.port, log)
                yield sim, agent, exporter
            except BaseException:
                log.flush()
                sys.stderr.write((Path(tmp) / "exporter.log").read_text(errors="replace")[-2000:])
                raise
            finally:
                agent.close()
                if exporter is not None:
                    exporter.close()


def run(rounds: int, polls: int, warmup: int) -> tuple[Tally, Tally]:
    agent_tally, exporter_tally = Tally("kipu-agent (if_mib)"), Tally("snmp_exporter 0.21")
    with pollers() as (sim, agent, exporter):
        responder_pid = sim.pid
        assert responder_pid is not None

        # Both read the whole device, and the same interfaces, before anything is timed.
        check = agent.ask("check")
        if check["error"] or not check["complete"]:
            raise BenchmarkError(f"agent did not read all {INTERFACES} interfaces: {check}")
        agent_tally.requests, agent_tally.received = check["requests"], check["varbinds_received"]
        exp = check_exporter_body(exporter.get()[1])
        exporter_tally.requests, exporter_tally.received = exp.packets, exp.pdus
        if exp.names != check["names"]:
            raise BenchmarkError(f"interface names differ: {exp.names} vs {check['names']}")
        if exp.series != EXPECTED_SERIES or check["varbinds"] != EXPECTED_SERIES:
            raise BenchmarkError(
                f"expected {EXPECTED_SERIES} values, agent {check['varbinds']}, "
                f"exporter {exp.series}"
            )
        for _ in range(warmup):  # untimed
            agent.ask("poll 1")
            exporter.get()

        def agent_round() -> None:
            responder = cpu_seconds(responder_pid)
            proc_cpu = cpu_seconds(agent.proc.pid)
            result = agent.ask(f"poll {polls}")
            agent_tally.responder_cpu += cpu_seconds(responder_pid) - responder
            agent_tally.cpu_proc += cpu_seconds(agent.proc.pid) - proc_cpu
            if result["incomplete"]:
                raise BenchmarkError(f"agent: {result['incomplete']} incomplete polls")
            agent_tally.walls += result["walls"]
            agent_tally.cpu += result["cpu"]
            agent_tally.returned = result["varbinds"]
            agent_tally.round_medians.append(statistics.median(result["walls"]))

        def exporter_round() -> None:
            walls = []
            bodies = []
            responder = cpu_seconds(responder_pid)
            cpu = cpu_seconds(exporter.proc.pid)
            for _ in range(polls):
                wall, body = exporter.get()
                walls.append(wall)
                bodies.append(body)
            exporter_tally.cpu += cpu_seconds(exporter.proc.pid) - cpu
            exporter_tally.responder_cpu += cpu_seconds(responder_pid) - responder
            for body in bodies:  # checked after the round, outside the measurement
                exporter_tally.returned = check_exporter_body(body).series
            exporter_tally.walls += walls
            exporter_tally.round_medians.append(statistics.median(walls))

        for number in range(rounds):
            order = (agent_round, exporter_round)
            for poll_round in order if number % 2 == 0 else reversed(order):
                poll_round()
    return agent_tally, exporter_tally


def report(tallies: tuple[Tally, ...], rounds: int, polls: int) -> str:
    lines = [
        f"router48 (48 interfaces, {EXPECTED_SERIES} values) on snmpsim, loopback; "
        f"{rounds} interleaved rounds of {polls} polls per poller",
        "",
        "| poller | median wall ms/poll | p90 wall ms | CPU ms/poll (poller) "
        "| CPU ms/poll (responder) | varbinds/series returned | SNMP requests/poll "
        "| varbinds received/poll |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in tallies:
        lines.append(
            f"| {t.name} | {statistics.median(t.walls) * 1000:.1f} "
            f"| {percentile(t.walls, 90) * 1000:.1f} | {t.cpu / t.polls * 1000:.2f} "
            f"| {t.responder_cpu / t.polls * 1000:.1f} | {t.returned} | {t.requests} "
            f"| {t.received} |"
        )
    lines.append("")
    for t in tallies:
        medians = ", ".join(f"{m * 1000:.1f}" for m in t.round_medians)
        lines.append(f"{t.name}: median wall ms per round: {medians}")
    agent = tallies[0]
    lines.append(
        f"agent CPU from /proc/PID/stat (10 ms ticks): {agent.cpu_proc / agent.polls * 1000:.2f}"
        " ms/poll (process_time above)"
    )
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--polls", type=int, default=20, help="polls per poller per round")
    p.add_argument("--warmup", type=int, default=3, help="untimed polls per poller")
    p.add_argument("--child", type=int, metavar="SNMP_PORT", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child is not None:
        return child_main(args.child)
    if args.rounds < 1 or args.polls < 1:
        raise SystemExit("--rounds and --polls must be positive")
    tallies = run(args.rounds, args.polls, args.warmup)
    print(report(tallies, args.rounds, args.polls))
    return 0


if __name__ == "__main__":
    sys.exit(main())
