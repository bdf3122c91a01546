"""Throughput tests: the pure parts (reading, schedule, budget) with a fake clock, a
loopback run against the collector's speed test, and the real agent across a veth pair
shaped with tbf, its readings within 10% of the shaped rates and its budget held."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer
from pytest_aiohttp import AiohttpClient

from agent.config import Push, Throughput
from agent.config import load_config as load_agent_config
from agent.throughput import (
    Budget,
    Schedule,
    ThroughputTester,
    agree,
    goodput,
    load_budget,
    plan_day,
)
from collector.app import Collector, make_app
from collector.auth import TokenStore
from collector.config import load_config
from collector.speedtest import SPEEDTEST
from demo.netns import Testbed, http_get, http_post
from kipu.config import ConfigError
from tests.agent.test_app import start as start_agent
from tests.agent_process import AgentProcess
from tests.collector.test_app import SITES, config_text
from tests.collector.test_outage import log_tail, stop
from tests.collector_process import ROOT, issue_token, write_collector
from tests.metrics_util import Scrape, eventually, parse, wait_until

MiB = 1024**2


# -- the reading


def test_goodput_spans_all_streams_without_their_first_chunks() -> None:
    # Two streams at 1 MB/s each; the second starts 0.5 s late.
    first = [(0.0 + i * 0.1, 100_000 * (i + 1)) for i in range(20)]  # 0.0 .. 1.9 s
    second = [(0.5 + i * 0.1, 100_000 * (i + 1)) for i in range(20)]  # 0.5 .. 2.4 s
    assert goodput([first, second]) == pytest.approx(2 * 1_900_000 * 8 / 2.4)
    assert goodput([first]) == pytest.approx(8_000_000)
    assert goodput([[], [(1.0, 10)]]) is None  # one point: nothing measurable
    assert goodput([]) is None


def test_agreement() -> None:
    assert agree(100.0, 104.0)
    assert agree(104.0, 100.0)
    assert not agree(100.0, 110.0)


# -- the schedule, with a fake clock


def test_a_day_plan_falls_inside_the_windows() -> None:
    rng = random.Random(7)
    windows = ("02:00-05:00", "13:00-14:00")
    for offset in range(200):
        day = date(2026, 1, 1) + timedelta(days=offset)
        plan = plan_day(day, windows, 3, rng)
        assert len(plan) == 3
        assert plan == sorted(plan)
        for moment in plan:
            assert moment.date() == day
            minutes = moment.hour * 60 + moment.minute
            assert 120 <= minutes < 300 or 780 <= minutes < 840
    assert plan_day(date(2026, 1, 1), windows, 0, rng) == []


def test_the_schedule_gives_each_day_its_runs_and_never_a_past_one() -> None:
    schedule = Schedule(("02:00-05:00", "13:00-14:00"), 2, random.Random(3))
    now = datetime(2026, 3, 1, 12, 0)
    seen: list[datetime] = []
    while now < datetime(2026, 3, 11):
        due = schedule.next_after(now)
        assert due is not None
        assert due > now
        seen.append(due)
        now = due  # the fake clock jumps to the run
    per_day: dict[date, int] = {}
    for moment in seen:
        per_day[moment.date()] = per_day.get(moment.date(), 0) + 1
    days = [d for d in per_day if datetime(2026, 3, 2).date() <= d <= datetime(2026, 3, 10).date()]
    assert len(days) == 9
    assert all(per_day[d] == 2 for d in days)
    assert Schedule((), 2).next_after(now) is None
    assert Schedule(("02:00-03:00",), 0).next_after(now) is None


def test_the_budget_rolls_over_by_day_and_month(tmp_path: Path) -> None:
    config = Throughput(max_bytes_per_day=10 * MiB, max_bytes_per_month=25 * MiB)
    budget = Budget()
    day1 = datetime(2026, 5, 30, 10, 0)
    assert budget.left(config, day1) == 10 * MiB
    budget.spend("download", 6 * MiB, day1)
    assert budget.left(config, day1) == 4 * MiB
    day2 = datetime(2026, 5, 31, 0, 1)
    assert budget.left(config, day2) == 10 * MiB
    budget.spend("upload", 10 * MiB, day2)
    budget.spend("upload", 0, day2)
    assert budget.left(config, day2) == 0
    budget.spend("download", 8 * MiB, datetime(2026, 5, 31, 23, 0))  # over a day: month
    budget2 = Budget.decode(budget.encode())
    assert budget2.left(config, datetime(2026, 5, 31, 23, 30)) == 0
    assert budget2.total == {"download": 14 * MiB, "upload": 10 * MiB}
    june = datetime(2026, 6, 1, 0, 0)
    assert budget2.left(config, june) == 10 * MiB  # a new month and a new day
    path = tmp_path / "throughput.json"
    path.write_text("{not json")
    assert load_budget(path).total == {"download": 0, "upload": 0}


# -- a loopback run against the collector's speed test


async def test_tests_stop_at_the_budget_counted_at_the_collector(tmp_path: Path) -> None:
    (tmp_path / "sites.yaml").write_text(SITES)
    path = tmp_path / "collector.yaml"
    path.write_text(config_text(tmp_path))
    config = await asyncio.to_thread(load_config, path)
    token = await asyncio.to_thread(TokenStore(config.state_dir).issue, "jun-0001")
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    collector = Collector(config, path)
    app = make_app(collector)
    async with TestServer(app, host="127.0.0.1") as server:
        push = Push(url=str(server.make_url("/api/v1/write")), token_file=token_file)
        settings = Throughput(
            first_bytes=256 * 1024,
            max_bytes_per_test=2 * MiB,
            max_bytes_per_day=5 * MiB,
            max_bytes_per_month=100 * MiB,
        )
        state = tmp_path / "agent-state"
        state.mkdir()
        clock = [datetime(2026, 7, 1, 3, 0).timestamp()]
        tester = ThroughputTester(state, wall=lambda: clock[0])
        await tester.open()
        tester.configure(settings, push)
        results = [await tester.run_now() for _ in range(4)]
        seen = [(r["download"].result, r["upload"].result) for r in results]
        assert seen[0] == ("ok", "ok")
        assert seen[-1] == ("budget", "budget")
        served = sum(app[SPEEDTEST].snapshot().bytes_by_site.values())
        assert 0 < served <= settings.max_bytes_per_day
        assert served <= sum(tester.budget.total.values())
        # The spending survives a restart, and a new day brings a new budget.
        again = ThroughputTester(state, wall=lambda: clock[0])
        await again.open()
        again.configure(settings, push)
        assert (await again.run_now())["download"].result == "budget"
        clock[0] += 86400
        assert (await again.run_now())["download"].result == "ok"
        snapshot = again.snapshot()
        assert snapshot is not None
        assert dict(snapshot.bytes_total)["download"] > 0


async def test_a_scheduled_run_starts_at_its_planned_moment(tmp_path: Path) -> None:
    (tmp_path / "sites.yaml").write_text(SITES)
    path = tmp_path / "collector.yaml"
    path.write_text(config_text(tmp_path))
    config = await asyncio.to_thread(load_config, path)
    token = await asyncio.to_thread(TokenStore(config.state_dir).issue, "jun-0001")
    (tmp_path / "token").write_text(token)
    app = make_app(Collector(config, path))
    async with TestServer(app, host="127.0.0.1") as server:
        push = Push(url=str(server.make_url("/api/v1/write")), token_file=tmp_path / "token")
        settings = Throughput(windows=("02:00-05:00",), runs_per_day=1, max_bytes_per_test=MiB)
        day = date(2026, 7, 1)
        planned = plan_day(day, settings.windows, 1, random.Random(5))[0].timestamp()
        # A fake wall clock, 0.2 s before the planned moment, running at the real pace.
        offset = planned - 0.2 - time.time()
        tester = ThroughputTester(tmp_path, wall=lambda: time.time() + offset, rng=random.Random(5))
        await tester.open()
        tester.configure(settings, push)
        task = asyncio.create_task(tester.run())

        async def ran() -> bool:
            return tester.last_run is not None

        try:
            await eventually(ran, within=30)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert tester.last_run is not None
        assert tester.last_run >= planned
        assert tester.runs[("download", "ok")] == tester.runs[("upload", "ok")] == 1


# -- the real agent across a shaped veth pair

COLLECTOR_PORT = 9109
AGENT_PORT = 9108


@pytest.fixture
def shaped_noc(testbed: Testbed, tmp_path: Path) -> Iterator[tuple[Testbed, Path, str]]:
    """kipu-collector in the far namespace; yields the bed, its log and its address."""
    address = testbed.target_addresses[0]
    config = write_collector(tmp_path / "collector")
    log = tmp_path / "collector.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [
        sys.executable,
        "-m",
        "collector",
        f"--config.file={config}",
        f"--web.listen-address={address}:{COLLECTOR_PORT}",
    ]
    token = issue_token(config, "jun-0001")
    (tmp_path / "token").write_text(token + "\n")
    proc: subprocess.Popen[bytes] | None = None
    try:
        with log.open("ab") as out:
            proc = testbed.exec_far(argv, stdout=out, stderr=out, env=env)

        def healthy() -> bool:
            assert proc is not None
            if proc.poll() is not None:
                raise AssertionError(f"collector exited:\n{log_tail(log)}")
            try:
                status, _, _ = http_get(testbed.far_ns, address, COLLECTOR_PORT, "/healthz")
            except OSError:
                return False
            return status == 200

        wait_until(healthy, timeout=30, step=0.1)
        yield testbed, log, address
    finally:
        stop(proc)


def collector_scrape(bed: Testbed, address: str) -> Scrape:
    status, _, body = http_get(bed.far_ns, address, COLLECTOR_PORT, "/metrics")
    assert status == 200
    return parse(body.decode())


def served_to_site(scrape: Scrape) -> float:
    name = "kipu_collector_speedtest_site_bytes_total"
    return sum(
        scrape.get(name, site_id="jun-0001", direction=d) or 0.0 for d in ("download", "upload")
    )


@pytest.mark.timeout(900)
def test_readings_on_a_shaped_link_are_within_ten_percent(
    shaped_noc: tuple[Testbed, Path, str], tmp_path: Path
) -> None:
    bed, _, address = shaped_noc
    day_budget = 24 * MiB
    config = tmp_path / "agent.yaml"
    config.write_text(
        f"site_id: jun-0001\nstate_dir: {tmp_path / 'state'}\n"
        f"probes: {{targets: [{{name: pop, address: {address}, role: pop}}]}}\n"
        f"push: {{url: 'http://{address}:{COLLECTOR_PORT}/api/v1/write', "
        f"token_file: {tmp_path / 'token'}, interval: 5s}}\n"
        "throughput: {runs_per_day: 0, first_bytes: 256KiB, max_bytes_per_test: 8MiB, "
        f"max_bytes_per_day: {day_budget}B, timeout: 180s}}\n"
    )

    def get(host: str, port: int, path: str) -> tuple[int, bytes]:
        status, _, body = http_get(bed.site_ns, host, port, path)
        return status, body

    def test_now() -> dict[str, dict[str, object]]:
        status, _, body = http_post(
            bed.site_ns, "127.0.0.1", AGENT_PORT, "/-/throughput", timeout=600
        )
        assert status == 200, body
        answer: dict[str, dict[str, object]] = json.loads(body)
        return answer

    agent = AgentProcess(
        config,
        AGENT_PORT,
        tmp_path / "agent.log",
        prefix=["ip", "netns", "exec", bed.site_ns],
        http_get=get,
    )
    with agent:
        for down, up in (("4mbit", "1mbit"), ("12mbit", "12mbit")):
            bed.shape(down, up)
            answer = test_now()
            for direction, rate in (("download", down), ("upload", up)):
                shaped = float(rate.removesuffix("mbit")) * 1e6
                result = answer[direction]
                assert result["result"] == "ok", (direction, rate, result, agent.log())
                reading = float(str(result["bits_per_second"]))
                assert abs(reading - shaped) <= 0.10 * shaped, (direction, rate, result)
            scrape = agent.scrape()
            reading = scrape.value("kipu_throughput_bits_per_second", direction="upload")
            assert reading == answer["upload"]["bits_per_second"]
        # Spend the rest of the day's budget: the tests stop, the collector saw no more.
        for _ in range(40):
            answer = test_now()
            if answer["download"]["result"] == "budget" and answer["upload"]["result"] == "budget":
                break
        else:
            raise AssertionError(f"the budget never ran out: {answer}")
        served = served_to_site(collector_scrape(bed, address))
        assert 0 < served <= day_budget
        scrape = agent.scrape()
        spent = sum(
            scrape.value("kipu_throughput_bytes_total", direction=d) for d in ("download", "upload")
        )
        assert served <= spent <= day_budget
        assert scrape.value("kipu_throughput_runs_total", direction="upload", result="budget") >= 1


# -- the agent's endpoint and configuration


async def test_the_endpoint_answers_503_unconfigured_and_409_while_running(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    agent, client, _ = await start_agent(aiohttp_client, tmp_path)
    response = await client.post("/-/throughput")
    assert response.status == 503
    agent.throughput.configure(Throughput(), Push(url="http://127.0.0.1:9/api/v1/write"))
    async with agent.throughput.lock:  # a test (scheduled or asked for) is running
        response = await client.post("/-/throughput")
        assert response.status == 409
    scrape = parse(await (await client.get("/metrics")).text())
    assert scrape.value("kipu_throughput_runs_total", direction="download", result="ok") == 0
    assert scrape.get("kipu_throughput_last_run_timestamp_seconds") is None


def test_throughput_needs_push_and_valid_windows(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(
        "site_id: jun-0001\nprobes: {targets: [{name: gw, address: 127.0.0.1}]}\n"
        "throughput: {windows: ['05:00-02:00', '25:00-26:00', '13:00-14:00']}\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_agent_config(path)
    messages = [f"{p.key}: {p.message}" for p in caught.value.problems]
    assert any(m.startswith("throughput: ") and "push" in m for m in messages), messages
    assert any("'05:00-02:00' ends before it starts" in m for m in messages), messages
    assert any("'25:00-26:00' is not HH:MM-HH:MM" in m for m in messages), messages


def test_the_example_throughput_section_loads(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    example = (root / "deploy" / "examples" / "agent.yaml").read_text()
    # The example keeps its throughput section commented out; uncommented, it must load.
    lines = example.splitlines()
    block = []
    for line in lines[lines.index("# throughput:") :]:
        if not line.startswith("#"):
            break
        block.append(line[2:])
    path = tmp_path / "agent.yaml"
    uncommented = [line for line in lines if not line.startswith("#")]
    path.write_text("\n".join([*uncommented, *block]) + "\n")
    config = load_agent_config(path)
    assert config.throughput is not None
    assert config.throughput.max_bytes_per_month == 2 * 1024**3
    assert config.throughput.windows == ("02:00-05:00", "13:00-14:00")
