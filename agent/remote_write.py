"""Prometheus remote write 1.0: the codec, the retry policy and the HTTP sender.

The agent pushes its snapshots with it and the collector receives with `decode` and
forwards to the store with the same `encode` and `RemoteWriteClient`. This is the only
module that imports the generated protobuf code, cramjam (snappy) and the aiohttp
client. Specification: https://prometheus.io/docs/specs/remote_write_spec/

- The codec (`normalise_labels`, `encode`, `decode`) and the policy (`classify`,
  `Backoff`, `parse_retry_after`) are pure and need no event loop.
- `RemoteWriteClient.send` posts one encoded body and returns a `SendResult`; it never
  raises for a network problem: refused, reset, TLS and timeouts come back as RETRY
  with the reason in `detail`. Whether and when to send again is the caller's.
"""

from __future__ import annotations

import datetime
import email.utils
import enum
import functools
import logging
import math
import random
import re
import ssl
import struct
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

import aiohttp
import cramjam
from google.protobuf.message import DecodeError

from agent.proto import remote_pb2

log = logging.getLogger(__name__)

Series = tuple[tuple[str, str], ...]
"""A series' labels as (name, value) pairs sorted by name, `__name__` among them."""

Sample = tuple[int, float]
"""(timestamp in milliseconds since the Unix epoch, value)."""

METRIC_NAME_LABEL = "__name__"

PROTOCOL_VERSION = "0.1.0"
"""What remote write 1.0 senders put in X-Prometheus-Remote-Write-Version."""

MAX_DECOMPRESSED = 32 * 1024 * 1024
"""`decode` refuses a body whose snappy header announces more bytes than this."""

STALE_NAN: float = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]
"""The stale marker: the NaN with exactly these bits, and no other NaN, marks a series
that will not be appended to any more (spec: Stale Markers)."""

PERMANENT_SERVER_ERRORS = (
    "too old sample",
    "out of bounds",
    "out of order sample",
    "duplicate sample for timestamp",
)
"""Prometheus' storage errors (storage/interface.go). Before 2.50 its receiver answered
"too old sample" (outside the out-of-order window), and any of these when wrapped, with
500: sending the same samples again can never succeed, so they are not retried."""

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_TOKEN = re.compile(r"[\x21-\x7e]+")  # visible ASCII: no header injection, no spaces
_BODY_READ_LIMIT = 4096
_DETAIL_LIMIT = 512
_SERIES_CACHE = 1 << 16


# --- codec -------------------------------------------------------------------------


class InvalidLabelsError(ValueError):
    """A label set that remote write 1.0 does not allow."""


class RemoteWriteDecodeError(ValueError):
    """A body that is not a valid remote write 1.0 request; the message says why."""


def normalise_labels(labels: Mapping[str, str]) -> Series:
    """The labels as a `Series`: sorted by name and checked against the specification.

    Raises `InvalidLabelsError` for a missing or invalid `__name__`, an invalid label
    name, an empty value or a value that is not encodable as UTF-8.
    """
    return _checked(tuple(labels.items()))


@functools.lru_cache(maxsize=_SERIES_CACHE)
def _checked(pairs: Series) -> Series:
    # Cached: a site sends the same hundred label sets every interval, so each is
    # checked once rather than once per snapshot. Errors are not cached.
    ordered = tuple(sorted(pairs))
    previous = None
    metric_name = None
    for name, value in ordered:
        if not isinstance(name, str) or not isinstance(value, str):
            raise InvalidLabelsError(f"label {name!r}: names and values must be strings")
        if _LABEL_NAME.fullmatch(name) is None:
            raise InvalidLabelsError(f"label name {name!r} does not match [a-zA-Z_][a-zA-Z0-9_]*")
        if name == previous:
            raise InvalidLabelsError(f"label name {name!r} is repeated")
        if not value:
            raise InvalidLabelsError(f"label {name!r} has an empty value")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidLabelsError(f"label {name!r}: value is not valid UTF-8") from None
        if name == METRIC_NAME_LABEL:
            metric_name = value
        previous = name
    if metric_name is None:
        raise InvalidLabelsError(f"no {METRIC_NAME_LABEL} label in {_show(ordered)}")
    if _METRIC_NAME.fullmatch(metric_name) is None:
        raise InvalidLabelsError(
            f"metric name {metric_name!r} does not match [a-zA-Z_:][a-zA-Z0-9_:]*"
        )
    return ordered


def _show(series: Series) -> str:
    return "{" + ", ".join(f"{name}={value!r}" for name, value in series) + "}"


def is_stale_marker(value: float) -> bool:
    """Whether `value` is the stale marker (an ordinary NaN is not)."""
    return struct.pack("<d", value) == struct.pack("<d", STALE_NAN)


def serialize(series: Mapping[Series, Sequence[Sample]]) -> bytes:
    """The uncompressed protobuf `WriteRequest` of `encode` (for sizes and tests)."""
    request = remote_pb2.WriteRequest()
    for labels, samples in series.items():
        if not samples:
            continue
        if _checked(labels) != labels:
            raise InvalidLabelsError(
                f"labels of {_show(labels)} are not sorted by name: build them with "
                "normalise_labels"
            )
        timeseries = request.timeseries.add()
        for name, label_value in labels:
            timeseries.labels.add(name=name, value=label_value)
        try:
            for timestamp, value in sorted(samples, key=_timestamp):
                timeseries.samples.add(timestamp=timestamp, value=value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{_show(labels)}: bad sample: {exc}") from None
    return bytes(request.SerializeToString())


def _timestamp(sample: Sample) -> int:
    return sample[0]


def encode(series: Mapping[Series, Sequence[Sample]]) -> bytes:
    """A remote write request body: protobuf `WriteRequest`, snappy block format.

    Keys are `Series` from `normalise_labels` (or `decode`); samples are (milliseconds,
    value) and are sent in timestamp order; series without samples are left out.
    Raises `InvalidLabelsError` or `ValueError` for data the protocol cannot carry.
    """
    return bytes(cramjam.snappy.compress_raw(serialize(series)))


def decode(body: bytes, *, max_decompressed: int = MAX_DECOMPRESSED) -> dict[Series, list[Sample]]:
    """The series and samples of a request body, samples in the order they came.

    Labels are checked as in `normalise_labels` (their order is forgiven and
    normalised); a series sent twice has its samples joined. Raises
    `RemoteWriteDecodeError` (a receiver answers 400 with its message) for a body that
    is not snappy block format, announces more than `max_decompressed` bytes (checked
    before anything is allocated), is not a `WriteRequest`, or has invalid labels.
    """
    size = snappy_uncompressed_length(body)
    if size > max_decompressed:
        raise RemoteWriteDecodeError(
            f"snappy: the body announces {size} bytes uncompressed, over the limit "
            f"of {max_decompressed}"
        )
    try:
        raw = cramjam.snappy.decompress_raw(body)
    except cramjam.DecompressionError as exc:
        reason = str(exc) if str(exc).startswith("snappy") else f"snappy: {exc}"
        raise RemoteWriteDecodeError(reason) from None
    request = remote_pb2.WriteRequest()
    try:
        request.ParseFromString(memoryview(raw))
    except DecodeError as exc:
        raise RemoteWriteDecodeError(f"protobuf: not a WriteRequest: {exc}") from None
    result: dict[Series, list[Sample]] = {}
    for index, timeseries in enumerate(request.timeseries):
        pairs = tuple((label.name, label.value) for label in timeseries.labels)
        try:
            labels = _checked(pairs)
        except InvalidLabelsError as exc:
            raise RemoteWriteDecodeError(f"timeseries {index}: {exc}") from None
        if timeseries.samples:
            result.setdefault(labels, []).extend(
                (sample.timestamp, sample.value) for sample in timeseries.samples
            )
    return result


def snappy_uncompressed_length(body: bytes) -> int:
    """The uncompressed length a snappy block announces in its varint header."""
    value = 0
    for index, byte in enumerate(body[:5]):
        value |= (byte & 0x7F) << (7 * index)
        if byte < 0x80:
            if value > 0xFFFFFFFF:
                break
            return value
    if not body:
        raise RemoteWriteDecodeError("snappy: empty body")
    raise RemoteWriteDecodeError("snappy: invalid length header (not snappy block format?)")


# --- outcome and retry policy --------------------------------------------------------


class Outcome(enum.StrEnum):
    """What a push came to; the values are kipu_push_requests_total's `result` label."""

    OK = "ok"
    RETRY = "retry"
    """Keep the data and send it again after a backoff."""
    REJECTED = "rejected"
    """The receiver will never take this request: count it and drop it."""


def classify(status: int, body: str) -> Outcome:
    """The outcome of an HTTP answer, following the specification's Retries & Backoff.

    2xx is OK. 5xx and 429 are RETRY, except a 5xx whose body is one of Prometheus'
    permanent storage errors (`PERMANENT_SERVER_ERRORS`), which is REJECTED like every
    other 4xx. Anything else (a redirect, which is not followed) says nothing about
    the data, so it is kept: RETRY.
    """
    if 200 <= status < 300:
        return Outcome.OK
    if status == 429:
        return Outcome.RETRY
    if 400 <= status < 500:
        return Outcome.REJECTED
    if 500 <= status < 600:
        text = body.lower()
        if any(error in text for error in PERMANENT_SERVER_ERRORS):
            return Outcome.REJECTED
    return Outcome.RETRY


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delay-seconds or an HTTP date).

    `now` is the current Unix time. None when absent or unreadable; never negative.
    """
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": HTTP dates are always GMT
        when = when.replace(tzinfo=datetime.UTC)
    return max(0.0, when.timestamp() - now)


@dataclass
class Backoff:
    """Exponential backoff with full jitter, for sending again after RETRY.

    The n-th delay in a row (from 0) is uniform in [0, min(cap, base * 2**n)]; `reset`
    after a success starts again from `base`. A server's Retry-After is honoured as a
    minimum, and every delay is at most `cap`.
    """

    base: float = 1.0
    cap: float = 120.0
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if not 0 < self.base <= self.cap:
            raise ValueError(f"backoff needs 0 < base <= cap, got {self.base} and {self.cap}")

    def next_delay(self, retry_after: float | None = None) -> float:
        """Seconds to wait before the next try."""
        ceiling = min(self.cap, self.base * 2.0 ** min(self.attempt, 1000))
        if ceiling < self.cap:
            self.attempt += 1
        delay = self.rng.uniform(0.0, ceiling)
        if retry_after is not None:
            delay = max(delay, retry_after)
        return min(delay, self.cap)

    def reset(self) -> None:
        """Back to the shortest delays (after a success)."""
        self.attempt = 0


# --- HTTP sender ---------------------------------------------------------------------


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


class _TokenFileError(Exception):
    pass


class RemoteWriteClient:
    """Posts remote write bodies to one URL over one keep-alive connection pool.

    - `token` or `token_file` sends `Authorization: Bearer …`. The file is read again
      whenever it changes (modification time, size or inode), surrounding whitespace
      stripped. While it is missing, unreadable, empty or not a single token, `send`
      posts nothing and answers RETRY with status None and the reason: the data stays
      queued rather than being refused as 401 and dropped. The problem is logged once
      when it starts (and once when it is fixed), not at every try.
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

    async def send(self, body: bytes) -> SendResult:
        """POST one body made by `encode`; never raises for network problems."""
        try:
            token = self._token()
        except _TokenFileError as exc:
            return SendResult(Outcome.RETRY, None, str(exc))
        headers = {
            "Content-Encoding": "snappy",
            "Content-Type": "application/x-protobuf",
            "User-Agent": self._user_agent,
            "X-Prometheus-Remote-Write-Version": PROTOCOL_VERSION,
        }
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        try:
            async with self._open_session().post(
                self.url, data=body, headers=headers, allow_redirects=False
            ) as response:
                status = response.status
                text = await _read_prefix(response.content, _BODY_READ_LIMIT)
                retry_after_header = response.headers.get("Retry-After")
                location = response.headers.get("Location")
        except aiohttp.ClientConnectorCertificateError as exc:
            return _network(f"TLS: certificate not trusted: {exc.certificate_error}")
        except (aiohttp.ClientSSLError, ssl.SSLError) as exc:
            return _network(f"TLS: {exc}")
        except TimeoutError:
            return _network(f"timeout: no answer within {self.timeout:g} s")
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
            retry_after = parse_retry_after(retry_after_header, time.time())
        return SendResult(outcome, status, detail, retry_after)

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

    def _token(self) -> str | None:
        if self._token_file is None:
            return self._static_token
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
        try:
            stat = path.stat()
            key = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
            if key != self._file_key or self._file_token is None:
                token = _checked_token(path.read_text(encoding="utf-8"))
                self._file_key, self._file_token = key, token
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise _TokenFileError(f"token file {path}: {reason}") from None
        return self._file_token


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
    return SendResult(Outcome.RETRY, None, _truncate(detail))


def _truncate(text: str) -> str:
    return text if len(text) <= _DETAIL_LIMIT else text[: _DETAIL_LIMIT - 1] + "…"
