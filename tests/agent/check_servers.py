"""Real counterparts for the application checks: a test CA, HTTP(S) servers, dnsmasq.

The web servers run in a thread with their own event loop, so a test may block (a
synchronous scrape of an agent process) without stalling them, and the code under test
never shares a loop with them. dnsmasq runs as a subprocess on a loopback port and is
stopped by its PID.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
from aiohttp import web
from aiohttp.typedefs import Handler
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.agent_process import free_port
from tests.metrics_util import wait_until
from tests.support.fixtures import need

PAGE = b"<html><title>SIAGIE</title><body>Bienvenido al SIAGIE de prueba</body></html>"
"""What the test server answers at /: contains "SIAGIE"."""
BIG = 2 * 1024 * 1024
"""Bytes of /big (more than a check reads)."""


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path
    not_after: datetime.datetime


class TestCA:
    """A certificate authority made at test time, and the server certificates it signs."""

    __test__ = False  # not a test class, despite its name

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kipu test CA")])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=30))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        self.pem = folder / "ca.pem"
        self.pem.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, name: str, *, expired: bool = False, days: int = 90) -> Issued:
        """A certificate for localhost and 127.0.0.1, valid `days` more; `expired` ended a
        day ago."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
        if expired:
            start, end = now - datetime.timedelta(days=90), now - datetime.timedelta(days=1)
        else:
            start, end = now - datetime.timedelta(days=1), now + datetime.timedelta(days=days)
        ca_ski = self.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    ]
                ),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        cert_path, key_path = self.folder / f"{name}.pem", self.folder / f"{name}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return Issued(cert_path, key_path, end)


def _site_app(release: asyncio.Event, transports: set[asyncio.BaseTransport]) -> web.Application:
    @web.middleware
    async def remember(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.transport is not None:
            transports.add(request.transport)
        return await handler(request)

    async def page(request: web.Request) -> web.Response:
        return web.Response(body=PAGE, content_type="text/html")

    async def status(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="no\n")

    async def slow(request: web.Request) -> web.Response:
        await release.wait()  # answers only when the server stops
        return web.Response(text="late\n")

    async def redirect(request: web.Request) -> web.Response:
        left = int(request.match_info["n"])
        target = "/" if left <= 1 else f"/redirect/{left - 1}"
        raise web.HTTPFound(target)

    async def big(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = BIG
        await response.prepare(request)
        chunk = b"x" * 65536
        for _ in range(BIG // len(chunk)):
            await response.write(chunk)
        return response

    app = web.Application(middlewares=[remember])
    app.router.add_get("/", page)
    app.router.add_get("/status/{code}", status)
    app.router.add_get("/slow", slow)
    app.router.add_get("/redirect/{n}", redirect)
    app.router.add_get("/big", big)
    return app


class WebServer:
    """The test site over HTTP or HTTPS on 127.0.0.1, served from a thread of its own."""

    def __init__(self, issued: Issued | None = None) -> None:
        self.issued = issued
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._runner: web.AppRunner | None = None
        self._release: asyncio.Event | None = None
        # Every connection the server saw: closed hard when it stops. A TLS connection
        # whose client went away mid-request (a check that timed out) would otherwise
        # wait for a close_notify that never comes, and outlive the server's loop.
        self._transports: set[asyncio.BaseTransport] = set()

    @property
    def scheme(self) -> str:
        return "https" if self.issued is not None else "http"

    def url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    async def _start(self) -> None:
        self._release = asyncio.Event()
        context = None
        if self.issued is not None:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(self.issued.cert, self.issued.key)
        self._runner = web.AppRunner(_site_app(self._release, self._transports), shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None)
        assert sockets
        self.port = int(sockets[0].getsockname()[1])

    def _serve(self) -> None:
        loop = self._loop
        loop.run_forever()
        # Let closed connections finish closing their sockets before the loop goes.
        loop.run_until_complete(self._drain())
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    @staticmethod
    async def _drain() -> None:
        for _ in range(20):
            await asyncio.sleep(0)
        current = asyncio.current_task()
        left = [t for t in asyncio.all_tasks() if t is not current]
        for task in left:
            task.cancel()
        await asyncio.gather(*left, return_exceptions=True)

    async def _stop(self) -> None:
        if self._release is not None:
            self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()
        for transport in self._transports:
            if isinstance(transport, asyncio.Transport):
                transport.abort()

    def __enter__(self) -> WebServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(30)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(30)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


DNSMASQ_RECORDS = (
    "--address=/ok.kipu.test/10.9.8.7",
    "--cname=alias.kipu.test,ok.kipu.test",
    "--mx-host=kipu.test,mail.kipu.test,10",
    "--txt-record=txt.kipu.test,kipu ok",
)


def dnsmasq_missing() -> str | None:
    if shutil.which("dnsmasq") is None and not Path("/usr/sbin/dnsmasq").exists():
        return "dnsmasq is not installed (Debian package dnsmasq-base)"
    return None


@contextmanager
def dnsmasq(log: Path) -> Iterator[int]:
    """Debian's dnsmasq on 127.0.0.1, a free port: ok.kipu.test is 10.9.8.7, alias.kipu.test
    a CNAME of it, kipu.test has an MX and txt.kipu.test a TXT; with no upstream it
    answers REFUSED for every other name. Yields the port."""
    need("dnsmasq", dnsmasq_missing())
    # A port free for UDP may be taken for TCP (dnsmasq wants both), or taken by another
    # test meanwhile: try a few.
    for _ in range(5):
        port = free_udp_port()
        proc = _start_dnsmasq(port, log)
        try:
            if _wait_answering(proc, port, log):
                yield port
                return
        finally:
            _stop(proc)
    raise AssertionError(f"dnsmasq could not bind a loopback port: {log.read_text()}")


def _start_dnsmasq(port: int, log: Path) -> subprocess.Popen[bytes]:
    binary = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    argv = [
        binary,
        "--no-daemon",
        f"--port={port}",
        "--listen-address=127.0.0.1",
        "--bind-interfaces",
        "--no-resolv",
        "--no-hosts",
        "--pid-file=",
        "--conf-file=/dev/null",
        "--log-facility=-",
        "--log-queries",
        *DNSMASQ_RECORDS,
    ]
    with log.open("ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=out)


def _wait_answering(proc: subprocess.Popen[bytes], port: int, log: Path) -> bool:
    """True once dnsmasq answers; False if it exited because the port was taken."""
    exited: list[int] = []

    def answers() -> bool:
        if proc.poll() is not None:
            exited.append(proc.returncode)
            return True
        query = dns.message.make_query("ok.kipu.test", "A")
        try:
            reply = dns.query.udp(query, "127.0.0.1", port=port, timeout=0.5)
        except (OSError, dns.exception.Timeout):
            return False
        return reply.rcode() == dns.rcode.NOERROR

    wait_until(answers, timeout=20)
    if exited and "Address already in use" not in log.read_text():
        raise AssertionError(f"dnsmasq exited {exited[0]}: {log.read_text()}")
    return not exited


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@contextmanager
def silent_udp_port() -> Iterator[int]:
    """A bound UDP port that never answers: a DNS server that times out."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        yield int(s.getsockname()[1])


def closed_tcp_port() -> int:
    """A loopback port nothing listens on (connections are refused)."""
    return free_port()
