"""HTTPS without a proxy: a kipu agent pushes to the collector through a private CA, and
SIGHUP makes the collector read its certificate again: new connections get the new one,
connections already open keep working."""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import ssl
import subprocess
import textwrap
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.agent_process import AgentProcess, free_port
from tests.collector.test_cli import start_fails
from tests.collector_process import CollectorProcess, issue_token, write_collector
from tests.metrics_util import Scrape, parse, wait_until
from tests.support.fixtures import fail_missing

JUNIN = {"site_id": "jun-0001", "project": "junin", "region": "Junín"}
SERVER_EXTENSIONS = (
    "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
    "basicConstraints=critical,CA:FALSE\n"
    "keyUsage=critical,digitalSignature\n"
    "extendedKeyUsage=serverAuth\n"
    "subjectKeyIdentifier=hash\n"
    "authorityKeyIdentifier=keyid,issuer\n"
)


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path

    def der(self) -> bytes:
        return ssl.PEM_cert_to_DER_cert(self.cert.read_text())


class Pki:
    """A test CA (openssl, as tests/kipu/test_remote_write.py makes it) and its servers."""

    def __init__(self, folder: Path) -> None:
        openssl = shutil.which("openssl")
        if openssl is None:
            fail_missing("openssl", "the command that makes the test CA is not installed")
        self.openssl = openssl
        self.folder = folder
        folder.mkdir(parents=True)
        (folder / "server.ext").write_text(SERVER_EXTENSIONS)
        self._run(
            "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
            " -keyout ca.key -out ca.pem -days 2 -subj /CN=kipu-test-CA"
            " -addext basicConstraints=critical,CA:TRUE"
            " -addext keyUsage=critical,keyCertSign,cRLSign"
        )
        self.ca = folder / "ca.pem"

    def _run(self, command: str) -> None:
        subprocess.run(
            [self.openssl, *command.split()], cwd=self.folder, check=True, capture_output=True
        )

    def server(self, name: str, serial: int) -> Certificate:
        """A certificate for 127.0.0.1 with its own key, subject and serial."""
        self._run(
            "req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
            f" -keyout {name}.key -out {name}.csr -subj /CN={name}"
        )
        self._run(
            f"x509 -req -in {name}.csr -CA ca.pem -CAkey ca.key -set_serial {serial}"
            f" -out {name}.pem -days 2 -extfile server.ext"
        )
        return Certificate(self.folder / f"{name}.pem", self.folder / f"{name}.key")


class HttpsCollector(CollectorProcess):
    """A collector serving HTTPS, its health and metrics read through the test CA."""

    def __init__(self, config: Path, log: Path, ca: Path) -> None:
        super().__init__(config, log)
        self.context = ssl.create_default_context(cafile=str(ca))

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def get(self, path: str) -> tuple[int, bytes]:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=5, context=self.context) as r:
            return int(r.status), bytes(r.read())

    def healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"collector exited {self.proc.returncode}:\n{self.log()}")
        try:
            status, _ = self.get("/healthz")
        except OSError:
            return False
        return status == 200

    def scrape(self) -> Scrape:
        status, body = self.get("/metrics")
        assert status == 200, body
        return parse(body.decode())

    def __enter__(self) -> HttpsCollector:
        self.start()
        return self

    def connection(self) -> http.client.HTTPSConnection:
        """A keep-alive connection, connected."""
        connection = http.client.HTTPSConnection(
            "127.0.0.1", self.port, context=self.context, timeout=5
        )
        connection.connect()
        return connection

    def certificate(self) -> bytes:
        """The certificate a new TLS connection gets (DER)."""
        connection = self.connection()
        try:
            return peer_certificate(connection)
        finally:
            connection.close()


def peer_certificate(connection: http.client.HTTPSConnection) -> bytes:
    assert isinstance(connection.sock, ssl.SSLSocket)
    der = connection.sock.getpeercert(binary_form=True)
    assert der is not None
    return der


def get(connection: http.client.HTTPSConnection, path: str) -> int:
    """One request on the connection as it is: it must not reconnect."""
    before = connection.sock
    connection.request("GET", path)
    response = connection.getresponse()
    response.read()
    assert connection.sock is before, "the connection was opened again"
    assert not response.will_close
    return int(response.status)


def install(certificate: Certificate, folder: Path) -> None:
    """Put `certificate` where the collector reads it, each file replaced atomically."""
    for source, target in ((certificate.key, "noc.key"), (certificate.cert, "noc.crt")):
        temporary = folder / f".{target}.new"
        shutil.copyfile(source, temporary)
        os.replace(temporary, folder / target)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path / "pki")


def https_config(tmp_path: Path) -> tuple[Path, Path]:
    """A collector configuration serving tmp_path/tls/noc.{crt,key}; (config, tls folder)."""
    tls = tmp_path / "tls"
    tls.mkdir()
    config = write_collector(
        tmp_path / "noc",
        extra=f"tls: {{cert_file: {tls / 'noc.crt'}, key_file: {tls / 'noc.key'}}}\n",
    )
    return config, tls


def agent_config(tmp_path: Path, url: str, token: str, ca: Path) -> Path:
    folder = tmp_path / "agent"
    folder.mkdir()
    (folder / "token").write_text(token + "\n")
    path = folder / "agent.yaml"
    path.write_text(
        textwrap.dedent(
            f"""\
            site_id: jun-0001
            state_dir: {folder / "state"}
            probes:
              interval: 100ms
              timeout: 500ms
              targets:
                - {{name: gw, address: 127.0.0.1, role: gateway}}
            push:
              url: {url}
              token_file: {folder / "token"}
              ca_file: {ca}
              interval: 200ms
              timeout: 2s
              spread: 0s
              clock_settle: 0s
            """
        )
    )
    return path


def test_an_agent_pushes_over_https_and_sighup_renews_the_certificate(
    tmp_path: Path, pki: Pki
) -> None:
    first, second = pki.server("kipu-noc-1", 1001), pki.server("kipu-noc-2", 2002)
    config, tls = https_config(tmp_path)
    install(first, tls)
    token = issue_token(config, "jun-0001")
    with HttpsCollector(config, tmp_path / "collector.log", pki.ca) as collector:
        write_url = f"{collector.url}/api/v1/write"
        agent = AgentProcess(
            agent_config(tmp_path, write_url, token, pki.ca), free_port(), tmp_path / "agent.log"
        )
        with agent:

            def pushed() -> float:
                return agent.scrape().get("kipu_push_requests_total", result="ok") or 0.0

            try:
                wait_until(lambda: pushed() >= 3, timeout=30)
            except AssertionError as err:
                raise AssertionError(f"{agent.log()[-3000:]}\n{collector.log()[-3000:]}") from err
            scrape = collector.scrape()
            assert scrape.value("kipu_collector_samples_received_total", project="junin") > 0
            assert scrape.value("kipu_site_reporting", **JUNIN) == 1
            assert collector.certificate() == first.der()

            kept = collector.connection()
            try:
                assert get(kept, "/healthz") == 200
                assert peer_certificate(kept) == first.der()
                install(second, tls)
                collector.send(signal.SIGHUP)
                wait_until(lambda: collector.certificate() == second.der(), timeout=10)
                # The connection opened before the reload still carries requests, with
                # the certificate it was opened with.
                assert get(kept, "/healthz") == 200
                assert get(kept, "/metrics") == 200
                assert peer_certificate(kept) == first.der()
            finally:
                kept.close()

            # The agent goes on pushing (same CA) after the reload.
            after = pushed()
            wait_until(lambda: pushed() >= after + 3, timeout=30)
            assert agent.scrape().get("kipu_push_requests_total", result="retry") in (None, 0.0)
            assert agent.stop() == 0
        assert "TLS certificate read again" in collector.log()
        assert collector.stop() == 0


def test_a_bad_certificate_on_sighup_keeps_the_old_one(tmp_path: Path, pki: Pki) -> None:
    first = pki.server("kipu-noc-1", 1001)
    config, tls = https_config(tmp_path)
    install(first, tls)
    with HttpsCollector(config, tmp_path / "collector.log", pki.ca) as collector:
        (tls / "noc.crt").write_text("not a certificate\n")
        collector.send(signal.SIGHUP)
        wait_until(lambda: "reload refused" in collector.log(), timeout=10)
        assert collector.certificate() == first.der()
        assert collector.healthy()
        assert collector.stop() == 0


def test_a_missing_certificate_at_start_is_named(tmp_path: Path, pki: Pki) -> None:
    """Exit 2, telling the operator which file is missing (not only the errno)."""
    config, tls = https_config(tmp_path)
    collector = HttpsCollector(config, tmp_path / "collector.log", pki.ca)
    assert start_fails(collector) == 2
    last = collector.log().splitlines()[-1]
    assert last.startswith("kipu-collector: "), last
    assert str(tls / "noc.crt") in last, last


def test_a_damaged_certificate_at_reload_is_named(tmp_path: Path, pki: Pki) -> None:
    """The reload is refused (400) and the answer names the file, not only OpenSSL's
    complaint."""
    config, tls = https_config(tmp_path)
    install(pki.server("kipu-noc-1", 1001), tls)
    with HttpsCollector(config, tmp_path / "collector.log", pki.ca) as collector:
        (tls / "noc.crt").write_text("not a certificate\n")
        request = urllib.request.Request(f"{collector.url}/-/reload", data=b"", method="POST")
        try:
            urllib.request.urlopen(request, timeout=10, context=collector.context)
        except urllib.error.HTTPError as err:
            status, answer = err.code, err.read().decode()
        else:
            raise AssertionError("a damaged certificate was taken")
        assert status == 400
        assert str(tls / "noc.crt") in answer, answer
        assert collector.stop() == 0
