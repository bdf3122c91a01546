"""Application checks against real counterparts: HTTPS with a test CA, dnsmasq, TCP.

Every failure reason of DESIGN's fixed set appears as documented: each kind against
loopback servers, then the agent (in process and as a real process) exporting them.
"""

from __future__ import annotations

import asyncio
import signal
import ssl
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from agent import metrics
from agent.app import Agent, make_app
from agent.checks.dns import run_dns
from agent.checks.http import MAX_BODY, HttpProber, TlsContexts, classify
from agent.checks.model import RESULTS, CheckResult, PhaseTimer, all_phases
from agent.checks.runner import CheckRunner, CheckRuntime, next_start
from agent.checks.tcp import run_tcp
from agent.config import Check, DnsCheck, HttpCheck, TcpCheck, load_config
from tests.agent.check_servers import (
    Issued,
    TestCA,
    WebServer,
    closed_tcp_port,
    dnsmasq,
    silent_udp_port,
)
from tests.agent_process import AgentProcess, free_port, loopback_post
from tests.metrics_util import Scrape, eventually, parse, wait_until

Client = TestClient[web.Request, web.Application]


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def good_cert(ca: TestCA) -> Issued:
    return ca.issue("good")


@pytest.fixture(scope="module")
def https(good_cert: Issued) -> Iterator[WebServer]:
    with WebServer(good_cert) as server:
        yield server


@pytest.fixture(scope="module")
def expired_https(ca: TestCA) -> Iterator[WebServer]:
    with WebServer(ca.issue("expired", expired=True)) as server:
        yield server


@pytest.fixture(scope="module")
def plain_http() -> Iterator[WebServer]:
    with WebServer() as server:
        yield server


@pytest.fixture
def dns_port(tmp_path: Path) -> Iterator[int]:
    with dnsmasq(tmp_path / "dnsmasq.log") as port:
        yield port


@dataclass(frozen=True)
class Counterparts:
    """Everything the agent's checks talk to in the end-to-end tests."""

    https: WebServer
    expired: WebServer
    ca: TestCA
    good_cert: Issued
    dns_port: int
    closed_port: int


@pytest.fixture
def counterparts(
    https: WebServer, expired_https: WebServer, ca: TestCA, good_cert: Issued, dns_port: int
) -> Counterparts:
    return Counterparts(https, expired_https, ca, good_cert, dns_port, closed_tcp_port())


def http(url: str, ca: TestCA | None = None, **options: object) -> HttpProber:
    return HttpProber(HttpCheck(url=url, ca_file=ca.pem if ca else None, **options))  # type: ignore[arg-type]


def phases(result: CheckResult) -> dict[str, float]:
    return dict(result.phases)


# --- HTTP and HTTPS -------------------------------------------------------------------


async def test_https_with_a_good_certificate(
    https: WebServer, ca: TestCA, good_cert: Issued
) -> None:
    result = await http(https.url(host="localhost"), ca, body="SIAGIE").run(10)
    assert result.result == "ok", result.detail
    spent = phases(result)
    for phase in ("resolve", "connect", "tls", "processing", "transfer"):
        assert spent[phase] > 0, (phase, spent)
    assert result.tls_expiry == good_cert.not_after.timestamp()


async def test_checks_sharing_a_tls_context_report_their_own_certificates(
    https: WebServer, ca: TestCA, good_cert: Issued
) -> None:
    other_cert = ca.issue("other", days=30)
    contexts = TlsContexts()
    with WebServer(other_cert) as other:
        first = HttpProber(HttpCheck(url=https.url(), ca_file=ca.pem), contexts)
        second = HttpProber(HttpCheck(url=other.url(), ca_file=ca.pem), contexts)
        for _ in range(3):
            a, b = await asyncio.gather(first.run(10), second.run(10))
            assert (a.result, b.result) == ("ok", "ok")
            assert a.tls_expiry == good_cert.not_after.timestamp()
            assert b.tls_expiry == other_cert.not_after.timestamp()


async def test_https_is_verified_against_the_system_cas_by_default(https: WebServer) -> None:
    result = await http(https.url()).run(10)
    assert result.result == "tls"
    assert "certificate verify failed" in result.detail
    assert result.tls_expiry is None


async def test_expired_certificate_is_tls(expired_https: WebServer, ca: TestCA) -> None:
    result = await http(expired_https.url(), ca).run(10)
    assert result.result == "tls"
    assert "expired" in result.detail
    assert phases(result)["tls"] > 0


async def test_wrong_status_and_listed_statuses(https: WebServer, ca: TestCA) -> None:
    assert (await http(https.url("/status/500"), ca).run(10)).result == "status"
    assert (await http(https.url("/status/404"), ca).run(10)).result == "status"
    listed = await http(https.url("/status/404"), ca, status=(404,)).run(10)
    assert listed.result == "ok"
    not_listed = await http(https.url("/"), ca, status=(302,)).run(10)
    assert not_listed.result == "status"
    assert "HTTP 200, expected 302" in not_listed.detail


async def test_body_mismatch(https: WebServer, ca: TestCA) -> None:
    result = await http(https.url("/"), ca, body="MINSA").run(10)
    assert result.result == "body"
    assert (await http(https.url("/"), ca, body="Bienvenido").run(10)).result == "ok"


async def test_only_the_first_mebibyte_is_read(https: WebServer, ca: TestCA) -> None:
    result = await http(https.url("/big"), ca, body="SIAGIE").run(20)
    assert result.result == "body"
    assert f"first {MAX_BODY} bytes" in result.detail


async def test_slow_server_times_out(https: WebServer, ca: TestCA) -> None:
    result = await http(https.url("/slow"), ca).run(1.0)
    assert result.result == "timeout"
    spent = phases(result)
    assert spent["tls"] > 0
    assert spent["processing"] > 0
    assert sum(spent.values()) >= 0.9  # the phase that timed out counts until the deadline


async def test_redirects_are_followed_up_to_the_limit(https: WebServer, ca: TestCA) -> None:
    assert (await http(https.url("/redirect/3"), ca, body="SIAGIE").run(10)).result == "ok"
    assert (await http(https.url("/redirect/5"), ca).run(10)).result == "ok"
    too_many = await http(https.url("/redirect/6"), ca).run(10)
    assert too_many.result == "status"
    assert "redirects" in too_many.detail
    unfollowed = await http(https.url("/redirect/1"), ca, max_redirects=0, status=(302,)).run(10)
    assert unfollowed.result == "ok"


async def test_plain_http(plain_http: WebServer) -> None:
    result = await http(plain_http.url("/"), body="SIAGIE").run(10)
    assert result.result == "ok"
    assert phases(result).get("tls", 0.0) == 0.0
    assert result.tls_expiry is None
    assert dict(all_phases("http", result.phases))["tls"] == 0.0


async def test_refused_connection(ca: TestCA) -> None:
    port = closed_tcp_port()
    assert (await http(f"http://127.0.0.1:{port}/").run(10)).result == "connect"
    assert (await http(f"https://127.0.0.1:{port}/", ca).run(10)).result == "connect"


async def test_unreadable_ca_file_is_tls(tmp_path: Path, https: WebServer) -> None:
    prober = HttpProber(HttpCheck(url=https.url(), ca_file=tmp_path / "missing.pem"))
    result = await prober.run(10)
    assert result.result == "tls"
    assert "missing.pem" in result.detail


def test_client_errors_map_to_results() -> None:
    """Name resolution fails only against a real resolver (not on loopback): map by type."""
    key = aiohttp.client_reqrep.ConnectionKey("x.invalid", 80, False, True, None, None, None)
    gaierror = OSError(-2, "Name or service not known")
    assert classify(aiohttp.ClientConnectorDNSError(key, gaierror)) == "dns"
    assert (
        classify(aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "x"))) == "connect"
    )
    cert_error = ssl.SSLCertVerificationError(1, "certificate verify failed")
    assert classify(aiohttp.ClientConnectorCertificateError(key, cert_error)) == "tls"
    assert classify(aiohttp.ServerTimeoutError("read")) == "timeout"
    assert classify(aiohttp.ServerDisconnectedError()) == "connect"


def test_phase_timer_gives_time_to_the_innermost_phase() -> None:
    now = [0.0]
    timer = PhaseTimer(clock=lambda: now[0])
    timer.start("connect")
    now[0] = 1.0
    timer.start("resolve")
    now[0] = 3.0
    timer.end("resolve")
    now[0] = 4.0
    timer.start("tls")
    now[0] = 8.0
    timer.end("tls")
    timer.end("connect")
    timer.start("processing")
    now[0] = 10.0
    assert dict(timer.close()) == {"connect": 2.0, "resolve": 2.0, "tls": 4.0, "processing": 2.0}


# --- DNS ------------------------------------------------------------------------------


def server(port: int) -> str:
    return f"127.0.0.1:{port}"


async def test_dns_answering(dns_port: int) -> None:
    result = await run_dns(DnsCheck(query="ok.kipu.test", server=server(dns_port)), 5)
    assert result.result == "ok", result.detail
    assert phases(result)["resolve"] > 0
    expected = DnsCheck(query="ok.kipu.test", server=server(dns_port), expect="10.9.8.7")
    assert (await run_dns(expected, 5)).result == "ok"
    either = DnsCheck(
        query="ok.kipu.test", server=server(dns_port), expect=("10.9.8.6", "10.9.8.7")
    )
    assert (await run_dns(either, 5)).result == "ok"


async def test_dns_answer_without_the_expected_address_is_body(dns_port: int) -> None:
    check = DnsCheck(query="ok.kipu.test", server=server(dns_port), expect="10.9.8.6")
    result = await run_dns(check, 5)
    assert result.result == "body"
    assert "10.9.8.7" in result.detail


async def test_dns_refused_is_dns(dns_port: int) -> None:
    result = await run_dns(DnsCheck(query="www.minedu.gob.pe", server=server(dns_port)), 5)
    assert result.result == "dns"
    assert "REFUSED" in result.detail


@pytest.mark.parametrize(
    ("rdtype", "query", "expect"),
    [
        ("CNAME", "alias.kipu.test", "OK.kipu.test."),
        ("MX", "kipu.test", "mail.kipu.test"),
        ("TXT", "txt.kipu.test", "kipu ok"),
    ],
)
async def test_dns_other_record_types(dns_port: int, rdtype: str, query: str, expect: str) -> None:
    check = DnsCheck(query=query, type=rdtype, server=server(dns_port), expect=expect)  # type: ignore[arg-type]
    result = await run_dns(check, 5)
    assert result.result == "ok", result.detail
    wrong = DnsCheck(query=query, type=rdtype, server=server(dns_port), expect="nope")  # type: ignore[arg-type]
    assert (await run_dns(wrong, 5)).result == "body"


async def test_dns_server_that_never_answers_times_out() -> None:
    with silent_udp_port() as port:
        result = await run_dns(DnsCheck(query="ok.kipu.test", server=server(port)), 1.0)
    assert result.result == "timeout"
    assert phases(result)["resolve"] >= 0.9


async def test_dns_through_the_system_resolver() -> None:
    # localhost comes from /etc/hosts: no query leaves the machine.
    check = DnsCheck(query="localhost", expect="127.0.0.1")
    result = await run_dns(check, 5)
    assert result.result == "ok", result.detail


# --- TCP ------------------------------------------------------------------------------


async def test_tcp_open_and_closed_ports(plain_http: WebServer) -> None:
    result = await run_tcp(f"localhost:{plain_http.port}", 5)
    assert result.result == "ok", result.detail
    assert set(phases(result)) == {"resolve", "connect"}
    closed = await run_tcp(f"127.0.0.1:{closed_tcp_port()}", 5)
    assert closed.result == "connect"
    assert "refused" in closed.detail.lower()


# --- The schedule ---------------------------------------------------------------------


async def test_each_check_runs_once_per_interval_and_never_overlaps() -> None:
    running: dict[str, int] = {}
    overlaps: list[str] = []
    done: dict[str, int] = {}
    enough = asyncio.Event()

    def make(check: Check, shared: object) -> object:
        async def execute(deadline: float) -> CheckResult:
            running[check.name] = running.get(check.name, 0) + 1
            if running[check.name] > 1:
                overlaps.append(check.name)
            await asyncio.sleep(0.01)
            running[check.name] -= 1
            done[check.name] = done.get(check.name, 0) + 1
            if all(done.get(n, 0) >= 3 for n in ("a", "b")):
                enough.set()
            return CheckResult("ok")

        return execute

    runner = CheckRunner(make)  # type: ignore[arg-type]
    checks = tuple(
        Check(name=n, tcp=TcpCheck(address="127.0.0.1:1"), interval=0.05) for n in ("a", "b")
    )
    runner.configure(checks)
    task = asyncio.create_task(runner.run())
    try:
        async with asyncio.timeout(30):
            await enough.wait()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert not overlaps
    snapshot = {s.name: s for s in runner.snapshot()}
    assert snapshot["a"].success is True
    assert dict(snapshot["a"].runs)["ok"] >= 3
    assert set(dict(snapshot["a"].runs)) == set(RESULTS)


def test_reconfigure_keeps_unchanged_checks() -> None:
    runner = CheckRunner(lambda check, shared: None)  # type: ignore[arg-type,return-value]
    keep = Check(name="keep", tcp=TcpCheck(address="127.0.0.1:1"))
    change = Check(name="change", tcp=TcpCheck(address="127.0.0.1:1"))
    runner.configure((keep, change))
    kept, changed = runner.runtimes["keep"], runner.runtimes["change"]
    kept.record(CheckResult("connect"))
    moved = Check(name="change", tcp=TcpCheck(address="127.0.0.1:2"))
    runner.configure((keep, moved))
    assert runner.runtimes["keep"] is kept
    assert runner.runtimes["change"] is not changed
    runner.configure((keep,))
    assert [s.name for s in runner.snapshot()] == ["keep"]
    assert isinstance(kept, CheckRuntime)


# --- The agent exports them -----------------------------------------------------------


def agent_config(path: Path, state: Path, checks: str) -> Path:
    path.write_text(
        textwrap.dedent(
            f"""\
            site_id: test-0001
            state_dir: {state}
            heartbeat_interval: 1s
            probes:
              interval: 200ms
              timeout: 500ms
              targets:
                - {{name: gw, address: 127.0.0.1, role: gateway}}
            checks:
            """
        )
        + textwrap.indent(textwrap.dedent(checks), "  ")
    )
    return path


def every_reason(c: Counterparts) -> str:
    """One check per result: ok, dns, connect, tls, timeout, status, body."""
    https, expired, ca, dns_port, closed = c.https, c.expired, c.ca, c.dns_port, c.closed_port
    good = f"{{url: '{https.url()}', ca_file: '{ca.pem}', body: SIAGIE}}"
    return f"""\
    - {{name: siagie, http: {good}, interval: 1s}}
    - name: dns-refused
      dns: {{query: www.minedu.gob.pe, server: "127.0.0.1:{dns_port}"}}
      interval: 1s
    - {{name: closed, tcp: {{address: "127.0.0.1:{closed}"}}, interval: 1s}}
    - {{name: expired, http: {{url: '{expired.url()}', ca_file: '{ca.pem}'}}, interval: 1s}}
    - name: slow
      http: {{url: '{https.url("/slow")}', ca_file: '{ca.pem}'}}
      interval: 1s
      timeout: 1s
    - name: error-page
      http: {{url: '{https.url("/status/503")}', ca_file: '{ca.pem}'}}
      interval: 1s
    - name: wrong-page
      http: {{url: '{https.url("/")}', ca_file: '{ca.pem}', body: "MINSA"}}
      interval: 1s
    - name: dns-ok
      dns: {{query: ok.kipu.test, server: "127.0.0.1:{dns_port}", expect: 10.9.8.7}}
      interval: 1s
    """


EXPECTED = {
    "siagie": ("http", "ok"),
    "dns-refused": ("dns", "dns"),
    "closed": ("tcp", "connect"),
    "expired": ("http", "tls"),
    "slow": ("http", "timeout"),
    "error-page": ("http", "status"),
    "wrong-page": ("http", "body"),
    "dns-ok": ("dns", "ok"),
}


def assert_every_reason(s: Scrape, good_cert: Issued) -> None:
    for name, (kind, result) in EXPECTED.items():
        assert s.value("kipu_check_runs_total", check=name, kind=kind, result=result) >= 1
        others = [
            r
            for r in RESULTS
            if r != result and s.value("kipu_check_runs_total", check=name, kind=kind, result=r)
        ]
        assert not others, (name, others)
        assert s.value("kipu_check_success", check=name, kind=kind) == (result == "ok")
    assert s.types["kipu_check_runs"] == "counter"
    assert s.types["kipu_check_success"] == "gauge"
    expiry = s.value("kipu_check_tls_expiry_timestamp_seconds", check="siagie")
    assert expiry == good_cert.not_after.timestamp()
    assert s.get("kipu_check_tls_expiry_timestamp_seconds", check="expired") is None
    http_phases = s.label_values("kipu_check_duration_seconds", "phase")
    assert http_phases == {"resolve", "connect", "tls", "processing", "transfer"}
    assert s.value("kipu_check_duration_seconds", check="siagie", kind="http", phase="tls") > 0
    assert s.value("kipu_check_duration_seconds", check="dns-ok", kind="dns", phase="resolve") > 0
    assert s.get("kipu_check_duration_seconds", check="dns-ok", kind="dns", phase="tls") is None


def ran_all(s: Scrape) -> bool:
    return all(
        (s.get("kipu_check_runs_total", check=name, kind=kind, result=result) or 0) >= 1
        for name, (kind, result) in EXPECTED.items()
    )


async def scrape(client: Client) -> Scrape:
    response = await client.get("/metrics")
    assert response.status == 200
    return parse(await response.text())


async def test_agent_exports_every_failure_reason_and_follows_reloads(
    aiohttp_client: AiohttpClient, tmp_path: Path, counterparts: Counterparts
) -> None:
    c = counterparts
    https, ca = c.https, c.ca
    checks = every_reason(c)
    path = agent_config(tmp_path / "agent.yaml", tmp_path / "state", checks)
    agent = Agent(await asyncio.to_thread(load_config, path), path)
    client = await aiohttp_client(make_app(agent))

    async def all_ran() -> bool:
        return ran_all(await scrape(client))

    await eventually(all_ran, within=60, step=0.1)
    assert_every_reason(await scrape(client), c.good_cert)
    assert agent.healthy()  # ICMP probing went on beside the slow checks
    probes = (await scrape(client)).value(
        "kipu_probe_packets_sent_total", target="gw", role="gateway"
    )
    assert probes >= 5
    # The pusher sends what the registry holds: the checks' series are among them.
    pushed = {labels["__name__"] for labels, _ in metrics.samples(agent.registry)}
    assert {"kipu_check_runs_total", "kipu_check_success"} <= pushed

    # A reload that drops a check and changes another: their series go, the rest stay.
    only_two = f"""\
    - {{name: siagie, http: {{url: '{https.url()}', ca_file: '{ca.pem}'}}, interval: 1s}}
    - {{name: closed, tcp: {{address: "127.0.0.1:{c.closed_port}"}}, interval: 1s}}
    """
    agent_config(path, tmp_path / "state", only_two)
    response = await client.post("/-/reload")
    assert response.status == 200, await response.text()
    s = await scrape(client)
    assert s.label_values("kipu_check_runs_total", "check") == {"siagie", "closed"}
    assert s.get("kipu_check_tls_expiry_timestamp_seconds", check="siagie") is None  # changed
    assert s.get("kipu_check_success", check="closed", kind="tcp") == 0  # unchanged: kept

    async def siagie_ran() -> bool:
        s = await scrape(client)
        return (s.get("kipu_check_runs_total", check="siagie", kind="http", result="ok") or 0) >= 1

    await eventually(siagie_ran, within=30, step=0.1)


def test_agent_process_runs_checks_and_reloads_on_sighup(
    tmp_path: Path, counterparts: Counterparts
) -> None:
    checks = every_reason(counterparts)
    path = agent_config(tmp_path / "agent.yaml", tmp_path / "state", checks)
    with AgentProcess(path, free_port(), tmp_path / "agent.log") as agent:
        wait_until(lambda: ran_all(agent.scrape()), timeout=60, step=0.2)
        assert_every_reason(agent.scrape(), counterparts.good_cert)
        agent_config(
            path,
            tmp_path / "state",
            f"""\
        - {{name: his, tcp: {{address: "127.0.0.1:{counterparts.https.port}"}}, interval: 1s}}
        """,
        )
        agent.send(signal.SIGHUP)

        def reloaded() -> bool:
            s = agent.scrape()
            return s.label_values("kipu_check_runs_total", "check") == {"his"} and bool(
                s.get("kipu_check_runs_total", check="his", kind="tcp", result="ok")
            )

        wait_until(reloaded, timeout=30, step=0.2)
        assert loopback_post("127.0.0.1", agent.port, "/-/reload")[0] == 200
        assert agent.stop() == 0
    assert "check expired (http) failed: tls" in agent.log()


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (10.5, 11.0),  # on time: the next slot
        (11.0, 11.0),  # ended exactly at the next slot: start it
        (11.2, 11.0),  # a run as long as its interval (timeout = interval): start at once
        (13.5, 13.0),  # suspended for 2.5 intervals: skip the missed, start at once
    ],
)
def test_next_start(now: float, expected: float) -> None:
    assert next_start(10.0, 1.0, now) == expected
