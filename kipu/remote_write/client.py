"""Prometheus remote write 1.0, the HTTP sender: one URL, a bearer token, TLS.

`RemoteWriteClient.send` posts one encoded body and returns a `SendResult`; it never
raises for a network problem: refused, reset, TLS and timeouts come back as RETRY with
the reason in `detail`. Whether and when to send again is the caller's (`kipu.lanes`).
This is the only module that imports the aiohttp client.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

import aiohttp

from kipu.remote_write.policy import Outcome, classify, parse_http_date, parse_retry_after

log = logging.getLogger(__name__)

PROTOCOL_VERSION = "0.1.0"
"""What remote write 1.0 senders put in X-Prometheus-Remote-Write-Version."""

BACKLOG_HEADER = "X-Kipu-Backlog"
"""Set on requests of the backlog lane: old samples that can wait when a receiver is busy."""

_TOKEN = re.compile(r"[\x21-\x7e]+")  # visible ASCII: no header injection, no spaces
_BODY_READ_LIMIT = 4096
_DETAIL_LIMIT = 512


@dataclass(frozen=True)
class SendResult:
    """The outcome of one POST."""

    outcome: Outcome
    status: int | None
    """The HTTP status; None when no answer came (network, TLS, timeout, token file)."""
    detail: str
    """Short reason for logs: the status and the receiver's message (at most 512
    characters of it), or what went wrong on the way."""
    retry_after: float | None = None
    """Seconds the receiver asked to wait (Retry-After on 429 and 503)."""
    date: float | None = None
    """The receiver's clock: its Date header as Unix time, when it answered with one."""
    received_at: float | None = None
    """Our wall clock when the answer arrived (to compare with `date`)."""
    timed_out: bool = False
    """No answer within the timeout: the request may be too large for the link."""


class _TokenFileError(Exception):
    pass


class RemoteWriteClient:
    """Posts remote write bodies to one URL over one keep-alive connection pool.

    - `token` or `token_file` sends `Authorization: Bearer …`. The file is read again
      (off the event loop) whenever it changes (modification time, size or inode),
      surrounding whitespace stripped. While it is missing, unreadable, empty or not a
      single token, `send` posts nothing and answers BLOCKED with status None and the
      reason: the data stays queued. The problem is logged once when it starts (and
      once when it is fixed), not at every try. `credentials_changed()` tells a sender
      waiting out a BLOCKED answer that the file changed, so it can try again at once.
    - TLS certificates are always verified for https; `ca_file` trusts a private CA in
      addition to the system's.
    - The aiohttp session is made at the first `send`, inside the running loop, with at
      most two connections; `close()` ends it.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        token_file: Path | None = None,
        ca_file: Path | None = None,
        timeout: float = 30.0,
        user_agent: str,
    ) -> None:
        scheme = urlsplit(url).scheme
        if scheme not in ("http", "https") or not urlsplit(url).hostname:
            raise ValueError(f"remote write URL {url!r} is not an http:// or https:// URL")
        if token is not None and token_file is not None:
            raise ValueError("give a token or a token file, not both")
        if not user_agent or not user_agent.isprintable():
            raise ValueError(f"user agent {user_agent!r} must be printable text")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        self.url = url
        self.timeout = timeout
        self._user_agent = user_agent
        self._static_token = None if token is None else _checked_token(token)
        self._token_file = token_file
        self._file_token: str | None = None
        self._file_key: tuple[int, int, int] | None = None
        self._token_problem: str | None = None
        self._ssl: ssl.SSLContext | bool = True
        if ca_file is not None:
            if scheme != "https":
                raise ValueError(f"ca_file {ca_file} is given but {url!r} is not https")
            context = ssl.create_default_context()
            try:
                context.load_verify_locations(cafile=ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(f"ca_file {ca_file}: {exc}") from exc
            self._ssl = context
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connections; a later `send` opens new ones."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def credentials_changed(self) -> bool:
        """Whether the token file changed since it was last read (stat, off the loop)."""
        if self._token_file is None:
            return False
        key = await asyncio.to_thread(_file_key, self._token_file)
        return key != self._file_key

    async def send(self, body: bytes, *, backlog: bool = False) -> SendResult:
        """POST one body made by `encode`; never raises for network problems.

        `backlog` marks a request of old samples (`BACKLOG_HEADER`), so that a busy
        collector can put it off and keep serving live pushes.
        """
        try:
            token = self._static_token
            if self._token_file is not None:
                token = await asyncio.to_thread(self._token)
        except _TokenFileError as exc:
            return SendResult(Outcome.BLOCKED, None, str(exc), received_at=time.time())
        headers = {
            "Content-Encoding": "snappy",
            "Content-Type": "application/x-protobuf",
            "User-Agent": self._user_agent,
            "X-Prometheus-Remote-Write-Version": PROTOCOL_VERSION,
        }
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if backlog:
            headers[BACKLOG_HEADER] = "1"
        try:
            async with self._open_session().post(
                self.url, data=body, headers=headers, allow_redirects=False
            ) as response:
                status = response.status
                received_at = time.time()
                text = await _read_prefix(response.content, _BODY_READ_LIMIT)
                retry_after_header = response.headers.get("Retry-After")
                location = response.headers.get("Location")
                date = parse_http_date(response.headers.get("Date"))
        except aiohttp.ClientConnectorCertificateError as exc:
            return _network(f"TLS: certificate not trusted: {exc.certificate_error}")
        except (aiohttp.ClientSSLError, ssl.SSLError) as exc:
            return _network(f"TLS: {exc}")
        except TimeoutError:
            return SendResult(
                Outcome.RETRY,
                None,
                f"timeout: no answer within {self.timeout:g} s",
                received_at=time.time(),
                timed_out=True,
            )
        except aiohttp.ClientConnectorError as exc:
            return _network(f"cannot connect: {exc}")
        except aiohttp.ClientError as exc:
            return _network(f"HTTP: {type(exc).__name__}: {exc}")
        except OSError as exc:
            return _network(f"network: {exc}")
        outcome = classify(status, text)
        message = _truncate(text.strip())
        if 300 <= status < 400:
            message = f"redirect to {location} not followed: correct the URL"
        detail = f"HTTP {status}: {message}" if message else f"HTTP {status}"
        retry_after = None
        if status in (429, 503):
            retry_after = parse_retry_after(retry_after_header, received_at)
        return SendResult(outcome, status, detail, retry_after, date, received_at)

    def _open_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # Two connections and a minute of keep-alive: sends are every few seconds
            # at most, and a TLS handshake costs seconds over a satellite link.
            connector = aiohttp.TCPConnector(
                limit=2, limit_per_host=2, keepalive_timeout=60, ssl=self._ssl
            )
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=self.timeout)
            )
        return self._session

    def _token(self) -> str:
        assert self._token_file is not None
        try:
            token = self._read_token_file(self._token_file)
        except _TokenFileError as exc:
            if str(exc) != self._token_problem:
                log.warning(
                    "remote write to %s: %s; nothing is sent until it is fixed", self.url, exc
                )
                self._token_problem = str(exc)
            raise
        if self._token_problem is not None:
            log.info(
                "remote write to %s: token file %s is readable again", self.url, self._token_file
            )
            self._token_problem = None
        return token

    def _read_token_file(self, path: Path) -> str:
        key = _file_key(path)
        if key is not None and key == self._file_key and self._file_token is not None:
            return self._file_token
        # Remember what was seen even when it cannot be used, so that
        # `credentials_changed` reports the next change, not this one again.
        self._file_key, self._file_token = key, None
        try:
            token = _checked_token(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise _TokenFileError(f"token file {path}: {reason}") from None
        self._file_token = token
        return token


def _file_key(path: Path) -> tuple[int, int, int] | None:
    """What changes when a file is replaced or rewritten; None when it cannot be read."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)


def _checked_token(text: str) -> str:
    token = text.strip()
    if not token:
        raise ValueError("the token is empty")
    if _TOKEN.fullmatch(token) is None:
        raise ValueError("the token must be one word of visible ASCII characters")
    return token


async def _read_prefix(stream: aiohttp.StreamReader, limit: int) -> str:
    # A receiver's message is short; never hold a large or endless body in memory.
    data = bytearray()
    while len(data) < limit:
        chunk = await stream.read(limit - len(data))
        if not chunk:
            break
        data += chunk
    return data.decode("utf-8", errors="replace")


def _network(detail: str) -> SendResult:
    return SendResult(Outcome.RETRY, None, _truncate(detail), received_at=time.time())


def _truncate(text: str) -> str:
    return text if len(text) <= _DETAIL_LIMIT else text[: _DETAIL_LIMIT - 1] + "…"
