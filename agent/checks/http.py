"""HTTP and HTTPS checks with aiohttp's client, timed phase by phase.

Each run opens fresh connections (nothing kept alive between runs: a check every few
minutes would only hold sockets open) and times the phases as blackbox_exporter does:
`resolve` (name resolution), `connect` (TCP), `tls` (the handshake), `processing`
(request sent to the response's headers) and `transfer` (the body). aiohttp's trace
signals mark all but the handshake, which the SSL object itself reports (see
`_RecordingSSLObject`), together with the verified certificate's expiry.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import socket
import ssl
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import aiohttp

from agent.checks.model import CheckResult, PhaseTimer, Result
from agent.config import HttpCheck
from kipu.version import __version__

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024
CLOSE_GRACE = 1.0  # seconds a run waits for its connections to finish closing
"""The most of a body read (and searched for `body`); the rest is not downloaded."""
USER_AGENT = f"kipu-agent/{__version__} (application check)"


@dataclass
class _Run:
    """What one run's handshakes report."""

    timer: PhaseTimer
    tls_expiry: float | None = None
    tls_error: str | None = None


_RUN: contextvars.ContextVar[_Run | None] = contextvars.ContextVar("kipu_check_run", default=None)
"""The run in progress in this task: asyncio calls the SSL object from callbacks that
carry the context of the task that opened the connection, so each check's handshakes
report to that check's run even when checks share a TLS context."""


class _RecordingSSLObject(ssl.SSLObject):
    """An SSLObject that times its handshake and reads the verified peer's notAfter.

    asyncio drives the handshake by calling `do_handshake` until it stops raising
    "want read/write"; the first call starts the phase, the one that returns ends it.
    `SSLContext.sslobject_class` is the documented hook for this.
    """

    _kipu_started = False

    def do_handshake(self) -> None:
        run = _RUN.get()
        if run is not None and not self._kipu_started:
            self._kipu_started = True
            run.timer.start("tls")
        try:
            super().do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            raise
        except ssl.SSLError as err:
            if run is not None:
                run.timer.end("tls")
                run.tls_error = str(err)
            raise
        if run is not None:
            run.timer.end("tls")
            cert = self.getpeercert()
            not_after = cert.get("notAfter") if cert else None
            if isinstance(not_after, str):
                run.tls_expiry = float(ssl.cert_time_to_seconds(not_after))


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """A verifying client context (the system's CAs, or `ca_file`'s). Reads files:
    call it off the event loop."""
    context = ssl.create_default_context(cafile=ca_file)
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    context.sslobject_class = _RecordingSSLObject
    return context


class TlsContexts:
    """TLS contexts shared by the checks, one per CA file (the system's CAs cost about
    1 MB of memory per context). `clear()` at a reload so CA files are read again."""

    def __init__(self) -> None:
        self._contexts: dict[str | None, ssl.SSLContext] = {}
        self._lock = asyncio.Lock()

    def clear(self) -> None:
        self._contexts = {}

    async def get(self, ca_file: str | None) -> ssl.SSLContext | str:
        """The context for `ca_file` (None: the system's CAs), or why it cannot be made;
        a failure is tried again at the next call, so a CA file put in place later works."""
        async with self._lock:
            context = self._contexts.get(ca_file)
            if context is None:
                try:
                    context = await asyncio.to_thread(tls_context, ca_file)
                except (OSError, ssl.SSLError) as err:
                    return f"cannot load the CA file {ca_file}: {err}"
                self._contexts[ca_file] = context
            return context


@dataclass
class HttpProber:
    """Runs one HTTP check."""

    spec: HttpCheck
    contexts: TlsContexts = field(default_factory=TlsContexts)

    async def run(self, deadline: float) -> CheckResult:
        """GET the URL within `deadline` seconds; never raises for a failing server."""
        timer = PhaseTimer()
        run = _Run(timer)
        ca_file = str(self.spec.ca_file) if self.spec.ca_file is not None else None
        context = await self.contexts.get(ca_file)
        if isinstance(context, str):
            return CheckResult("tls", detail=context)
        token = _RUN.set(run)
        try:
            async with asyncio.timeout(deadline):
                result, detail = await self._get(context, run)
        except TimeoutError:
            result, detail = "timeout", f"no complete answer within {deadline:g}s"
        except aiohttp.ClientError as err:
            result, detail = classify(err), _describe(err)
        except ssl.SSLError as err:
            result, detail = "tls", str(err)
        except OSError as err:
            result, detail = "connect", str(err) or type(err).__name__
        finally:
            _RUN.reset(token)
        if result == "tls" and run.tls_error:
            detail = run.tls_error
        return CheckResult(result, timer.close(), detail, run.tls_expiry)

    async def _get(self, context: ssl.SSLContext, run: _Run) -> tuple[Result, str]:
        # The run's sockets, so that it ends only once they are closed: a connection
        # closes over a few turns of the loop, and a run that timed out would otherwise
        # leave it to whoever runs the loop next (or to the garbage collector).
        sockets: list[socket.socket] = []

        def make_socket(addr_info: Any) -> socket.socket:
            family, kind, proto = addr_info[0], addr_info[1], addr_info[2]
            sock = socket.socket(family=family, type=kind, proto=proto)
            sockets.append(sock)
            return sock

        try:
            return await self._session_get(context, run, make_socket)
        finally:
            await _closed(sockets)

    async def _session_get(
        self, context: ssl.SSLContext, run: _Run, make_socket: Any
    ) -> tuple[Result, str]:
        timer = run.timer
        connector = aiohttp.TCPConnector(
            ssl=context, use_dns_cache=False, force_close=True, limit=1,
            socket_factory=make_socket,
        )  # fmt: skip
        async with aiohttp.ClientSession(
            connector=connector,
            trace_configs=[_trace_config(timer)],
            timeout=aiohttp.ClientTimeout(total=None),
            headers={"User-Agent": USER_AGENT},
        ) as session:
            # aiohttp gives up *at* its max_redirects-th redirect, and 0 means no limit.
            follow = self.spec.max_redirects
            async with session.get(
                self.spec.url, allow_redirects=follow > 0, max_redirects=follow + 1
            ) as response:
                status = response.status
                timer.start("transfer")
                body = await _read_body(response.content)
                timer.end("transfer")
        wanted = self.spec.status
        if (status not in wanted) if wanted else not 200 <= status <= 299:
            expected = ", ".join(map(str, wanted)) if wanted else "2xx"
            return "status", f"HTTP {status}, expected {expected}"
        if self.spec.body is not None and self.spec.body.encode() not in body:
            return "body", f"{self.spec.body!r} is not in the first {len(body)} bytes of the body"
        return "ok", f"HTTP {status}"


async def _closed(sockets: list[socket.socket]) -> None:
    """Wait (at most CLOSE_GRACE) until every socket is closed; shielded, so that a run
    cancelled by its timeout still waits."""

    async def wait() -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CLOSE_GRACE
        # A socket's close has no event to wait on: look every 5 ms, for a second at most.
        while any(s.fileno() != -1 for s in sockets) and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.005)

    await asyncio.shield(wait())


async def _read_body(content: aiohttp.StreamReader) -> bytes:
    data = bytearray()
    while len(data) < MAX_BODY:
        chunk = await content.read(MAX_BODY - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)


def _trace_config(timer: PhaseTimer) -> aiohttp.TraceConfig:
    """Phase marks from aiohttp's tracing signals (summed over redirects)."""
    trace = aiohttp.TraceConfig()

    def mark(action: Any, phase: Any) -> Any:
        async def handler(
            session: aiohttp.ClientSession, ctx: SimpleNamespace, params: Any
        ) -> None:
            action(phase)

        return handler

    trace.on_dns_resolvehost_start.append(mark(timer.start, "resolve"))
    trace.on_dns_resolvehost_end.append(mark(timer.end, "resolve"))
    trace.on_connection_create_start.append(mark(timer.start, "connect"))
    trace.on_connection_create_end.append(mark(timer.end, "connect"))
    trace.on_request_headers_sent.append(mark(timer.start, "processing"))
    trace.on_request_redirect.append(mark(timer.end, "processing"))
    trace.on_request_end.append(mark(timer.end, "processing"))
    trace.freeze()
    return trace


def classify(err: aiohttp.ClientError) -> Result:
    """The result of a request that raised `err` (a pure function of its type)."""
    if isinstance(err, aiohttp.ClientConnectorDNSError):
        return "dns"
    if isinstance(err, aiohttp.ClientSSLError):
        return "tls"
    if isinstance(err, aiohttp.ServerTimeoutError):
        return "timeout"
    if isinstance(err, aiohttp.TooManyRedirects | aiohttp.InvalidURL):
        return "status"  # the last answer was a redirect the check does not follow
    return "connect"  # refused, unreachable, reset, or the connection broke mid-answer


def _describe(err: aiohttp.ClientError) -> str:
    if isinstance(err, aiohttp.TooManyRedirects):
        last = err.history[-1].status if err.history else "?"
        return f"more redirects than max_redirects {len(err.history) - 1} (the last: HTTP {last})"
    return str(err) or type(err).__name__
