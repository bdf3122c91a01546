"""Remote write 1.0: the codec, the outcome table and the backoff as pure functions; the
client against real aiohttp servers on loopback (plain HTTP and HTTPS with a private CA).

Bodies that must not decode are built by hand (snappy literals, protobuf fields with
prompb's numbers), so the checks do not lean on the code under test.
"""

from __future__ import annotations

import ast
import asyncio
import email.utils
import logging
import math
import os
import random
import re
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from pytest_aiohttp import AiohttpServer

from kipu.remote_write.client import RemoteWriteClient
from kipu.remote_write.codec import (
    MAX_DECOMPRESSED,
    STALE_NAN,
    InvalidLabelsError,
    RemoteWriteDecodeError,
    Series,
    decode,
    encode,
    is_stale_marker,
    normalise_labels,
    serialize,
    snappy_uncompressed_length,
)
from kipu.remote_write.policy import Backoff, Outcome, classify, parse_retry_after
from kipu.remote_write.proto import remote_pb2
from tests.support.fixtures import fail_missing, need_module

ROOT = Path(__file__).resolve().parents[2]
USER_AGENT = "kipu-agent/0.0.0-test"
WRITE_PATH = "/api/v1/write"

RTT = normalise_labels(
    {"__name__": "kipu_probe_rtt_seconds_bucket", "target": "gw", "role": "gateway", "le": "0.5"}
)
UP = normalise_labels({"__name__": "kipu_link_up"})


# --- hand-made wire format ---------------------------------------------------------------


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def snappy_literal(data: bytes) -> bytes:
    """A snappy block holding `data` as literals (valid snappy, no compression)."""
    out = bytearray(varint(len(data)))
    for start in range(0, len(data), 60):
        chunk = data[start : start + 60]
        out.append((len(chunk) - 1) << 2)
        out += chunk
    return bytes(out)


def pb_bytes(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def pb_label(name: str, value: str) -> bytes:
    return pb_bytes(1, pb_bytes(1, name.encode()) + pb_bytes(2, value.encode()))


def pb_sample(value: float, timestamp: int) -> bytes:
    # Sample.value = 1 (double, fixed64), Sample.timestamp = 2 (int64 varint).
    sample = varint(1 << 3 | 1) + struct.pack("<d", value) + varint(2 << 3) + varint(timestamp)
    return pb_bytes(2, sample)


def pb_series(labels: list[tuple[str, str]], samples: list[tuple[float, int]]) -> bytes:
    body = b"".join(pb_label(n, v) for n, v in labels)
    body += b"".join(pb_sample(v, t) for v, t in samples)
    return pb_bytes(1, body)  # WriteRequest.timeseries = 1


# --- labels --------------------------------------------------------------------------------


def test_labels_sorted_strictly_by_name() -> None:
    # Upper case sorts before '_' (0x5F) and lower case after it: by name, as the spec says.
    series = normalise_labels({"job": "j", "__name__": "up", "Zone": "a", "a": "b"})
    assert [name for name, _ in series] == ["Zone", "__name__", "a", "job"]
    assert dict(series) == {"job": "j", "__name__": "up", "Zone": "a", "a": "b"}


def test_recording_rule_names_with_colons_are_metric_names() -> None:
    assert dict(normalise_labels({"__name__": "site:kipu_loss:ratio5m"}))


def test_empty_label_values_are_left_out() -> None:
    # Prometheus treats a label with an empty value as absent; the spec forbids sending it.
    assert normalise_labels({"__name__": "up", "target": "", "role": "gw"}) == (
        ("__name__", "up"),
        ("role", "gw"),
    )


@pytest.mark.parametrize(
    ("labels", "reason"),
    [
        ({"target": "gw"}, "no __name__"),
        ({"__name__": "1up"}, "metric name"),
        ({"__name__": "kipu-up"}, "metric name"),
        ({"__name__": "up", "le-x": "1"}, "label name"),
        ({"__name__": "up", "0a": "1"}, "label name"),
        ({"__name__": "up", "a:b": "1"}, "label name"),
        ({"__name__": "up", "": "1"}, "label name"),
        ({"__name__": ""}, "no __name__"),
        ({"__name__": "up", "ssid": "caf\udce9"}, "UTF-8"),
    ],
)
def test_invalid_labels_refused(labels: dict[str, str], reason: str) -> None:
    with pytest.raises(InvalidLabelsError, match=reason):
        normalise_labels(labels)


def test_utf8_label_values_allowed() -> None:
    series = normalise_labels({"__name__": "kipu_wifi_clients", "ssid": "WiFi Junín ñandú"})
    assert decode(encode({series: [(1, 3.0)]})) == {series: [(1, 3.0)]}


# --- encode and decode -----------------------------------------------------------------------


def test_round_trip() -> None:
    now = 1_767_225_600_000
    batch: dict[Series, list[tuple[int, float]]] = {
        RTT: [(now + 30_000, 12.0), (now, 10.0), (now + 15_000, 11.0)],
        UP: [(now, 1.0), (now + 15_000, 0.0)],
        normalise_labels({"__name__": "kipu_probe_jitter_seconds", "target": "gw"}): [
            (now, -0.5),
            (now + 1, math.inf),
            (2**62, 1e-300),
        ],
        normalise_labels({"__name__": "kipu_never_sampled"}): [],
    }
    decoded = decode(encode(batch))
    assert decoded == {
        RTT: [(now, 10.0), (now + 15_000, 11.0), (now + 30_000, 12.0)],
        UP: [(now, 1.0), (now + 15_000, 0.0)],
        normalise_labels({"__name__": "kipu_probe_jitter_seconds", "target": "gw"}): [
            (now, -0.5),
            (now + 1, math.inf),
            (2**62, 1e-300),
        ],
    }


def test_stale_marker_keeps_its_bits() -> None:
    decoded = decode(encode({UP: [(1, STALE_NAN), (2, math.nan)]}))[UP]
    assert is_stale_marker(decoded[0][1])
    assert math.isnan(decoded[1][1])
    assert not is_stale_marker(decoded[1][1])
    assert not is_stale_marker(1.0)


def test_body_is_snappy_block_of_a_write_request() -> None:
    batch = {RTT: [(1000, 3.0)], UP: [(1000, 1.0)]}
    body = encode(batch)
    assert not body.startswith(b"\xff\x06\x00\x00sNaPpY")  # the framed format's header
    raw = serialize(batch)
    assert snappy_uncompressed_length(body) == len(raw)
    request = remote_pb2.WriteRequest.FromString(raw)
    first = request.timeseries[0]
    assert [(label.name, label.value) for label in first.labels] == list(RTT)
    assert [(s.timestamp, s.value) for s in first.samples] == [(1000, 3.0)]


def test_field_numbers_are_prompb() -> None:
    # A WriteRequest built byte by byte with Prometheus' field numbers.
    raw = pb_series([("__name__", "up"), ("job", "kipu")], [(1.5, 1000), (2.5, 2000)])
    assert decode(snappy_literal(raw)) == {
        (("__name__", "up"), ("job", "kipu")): [(1000, 1.5), (2000, 2.5)]
    }
    assert serialize({(("__name__", "up"), ("job", "kipu")): [(1000, 1.5), (2000, 2.5)]}) == raw


def test_decode_forgives_label_order_and_joins_repeated_series() -> None:
    raw = pb_series([("job", "kipu"), ("__name__", "up")], [(1.0, 1000)])
    raw += pb_series([("__name__", "up"), ("job", "kipu")], [(2.0, 2000)])
    raw += pb_series([("__name__", "empty")], [])
    assert decode(snappy_literal(raw)) == {
        (("__name__", "up"), ("job", "kipu")): [(1000, 1.0), (2000, 2.0)]
    }


def test_empty_request() -> None:
    assert encode({}) == b"\x00"
    assert decode(b"\x00") == {}


def test_encode_refuses_what_the_protocol_cannot_carry() -> None:
    with pytest.raises(InvalidLabelsError, match="not normalised"):
        encode({(("job", "x"), ("__name__", "up")): [(1, 1.0)]})
    with pytest.raises(InvalidLabelsError, match="not normalised"):
        encode({(("__name__", "up"), ("job", "")): [(1, 1.0)]})
    with pytest.raises(ValueError, match="bad sample"):
        encode({UP: [(2**63, 1.0)]})
    with pytest.raises(ValueError, match="bad sample"):
        encode({UP: [(1, "one")]})  # type: ignore[list-item]


def _valid_body() -> bytes:
    return encode({RTT: [(t, float(t)) for t in range(0, 600_000, 15_000)]})


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "snappy: empty body"),
        (b"this is not snappy at all", "snappy"),
        (_valid_body()[:-7], "snappy"),
        (b"\xff\xff\xff\xff\xff\xff", "snappy: invalid length header"),
        (snappy_literal(b"\xff\xff\xff\xff"), "protobuf"),
        (snappy_literal(b"\x0a\x05\x0a\x03\x0a\x01"), "protobuf"),
        (snappy_literal(pb_series([("job", "x")], [(1, 1)])), "no __name__"),
        (snappy_literal(pb_series([("__name__", "up"), ("a", "1"), ("a", "2")], [])), "repeat"),
        (snappy_literal(pb_series([("__name__", "up"), ("a-b", "1")], [])), "label name"),
        (
            snappy_literal(pb_series([("__name__", "up")], []) + pb_series([("x", "y")], [])),
            "timeseries 1: no __name__",
        ),
    ],
)
def test_decode_errors_say_why(body: bytes, reason: str) -> None:
    with pytest.raises(RemoteWriteDecodeError, match=re.escape(reason)):
        decode(body)


def test_decode_leaves_out_labels_with_empty_values() -> None:
    body = snappy_literal(pb_series([("__name__", "up"), ("job", "")], [(1, 1)]))
    assert decode(body) == {(("__name__", "up"),): [(1, 1.0)]}


def test_decode_refuses_a_bomb_before_decompressing() -> None:
    # The header announces 256 MiB; nothing follows. Refused by the header alone.
    bomb = varint(256 * 1024 * 1024) + b"\x00" * 16
    with pytest.raises(RemoteWriteDecodeError, match="over the limit"):
        decode(bomb)
    assert MAX_DECOMPRESSED < 256 * 1024 * 1024
    body = _valid_body()
    size = snappy_uncompressed_length(body)
    assert decode(body, max_decompressed=size)
    with pytest.raises(RemoteWriteDecodeError, match=f"{size} bytes uncompressed"):
        decode(body, max_decompressed=size - 1)


# --- outcome and backoff ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "outcome"),
    [
        (200, "", Outcome.OK),
        (204, "", Outcome.OK),
        (299, "", Outcome.OK),
        (400, "out of order sample", Outcome.REJECTED),
        (401, "unknown token", Outcome.BLOCKED),
        (403, "", Outcome.BLOCKED),
        (404, "", Outcome.BLOCKED),
        (407, "", Outcome.BLOCKED),
        (422, "", Outcome.REJECTED),
        (413, "body too large", Outcome.REJECTED),
        (429, "too many series", Outcome.RETRY),
        (500, "", Outcome.RETRY),
        (500, "write to WAL: no space left on device", Outcome.RETRY),
        (500, "too old sample\n", Outcome.REJECTED),
        (500, "out of bounds", Outcome.REJECTED),
        (500, "out of order sample", Outcome.REJECTED),
        (500, "duplicate sample for timestamp", Outcome.REJECTED),
        (502, "", Outcome.RETRY),
        (503, "", Outcome.RETRY),
        (504, "gateway timeout", Outcome.RETRY),
        (308, "", Outcome.RETRY),
    ],
)
def test_classify(status: int, body: str, outcome: Outcome) -> None:
    assert classify(status, body) is outcome


def test_outcomes_map_to_the_push_metric_results() -> None:
    assert {o.result for o in Outcome} == {"ok", "retry", "rejected"}
    assert Outcome.BLOCKED.result == "retry"  # the data is kept, as for a retry


def test_backoff_equal_jitter_keeps_a_growing_floor() -> None:
    backoff = Backoff(base=0.5, cap=30.0, rng=random.Random(7))
    ceilings = [min(30.0, 0.5 * 2**n) for n in range(12)]
    for _ in range(200):
        delays = [backoff.next_delay() for _ in ceilings]
        assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
        backoff.reset()
    # The upper half stays random, so sites that failed together retry apart.
    draws = [
        Backoff(base=1.0, cap=8.0, rng=random.Random(seed)).next_delay() for seed in range(500)
    ]
    assert min(draws) < 0.55
    assert max(draws) > 0.95


def test_backoff_reset_and_seeded_sequence() -> None:
    first = Backoff(rng=random.Random(42))
    second = Backoff(rng=random.Random(42))
    assert [first.next_delay() for _ in range(5)] == [second.next_delay() for _ in range(5)]
    assert first.attempt == 5
    first.reset()
    assert first.attempt == 0
    assert first.base / 2 <= first.next_delay() <= first.base


def test_backoff_stays_at_cap_without_overflow() -> None:
    backoff = Backoff(base=1.0, cap=120.0, rng=random.Random(1))
    delays = [backoff.next_delay() for _ in range(5000)]
    assert max(delays) <= 120.0
    assert max(delays[100:]) > 60.0


def test_backoff_honours_retry_after_in_full_up_to_ten_minutes() -> None:
    backoff = Backoff(base=0.1, cap=60.0, rng=random.Random(3))
    assert backoff.next_delay(retry_after=7.0) == 7.0
    assert backoff.next_delay(retry_after=300.0) == 300.0  # beyond the backoff's own cap
    assert backoff.next_delay(retry_after=3600.0) == 600.0
    with pytest.raises(ValueError, match="base <= cap"):
        Backoff(base=10.0, cap=1.0)


def test_parse_retry_after() -> None:
    now = 1_767_225_600.0
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after(" 3 ", now) == 3.0
    assert parse_retry_after("-5", now) == 0.0
    assert parse_retry_after(None, now) is None
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after("nan", now) is None
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(date, now) == pytest.approx(30.0)
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now) == 0.0
    assert parse_retry_after(email.utils.formatdate(now + 60), now) == 60.0  # zone "-0000"


# --- the client against real servers -------------------------------------------------------------


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A remote write endpoint on loopback whose answer each test sets."""

    url: str = ""
    status: int = 204
    text: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False
    release: asyncio.Event = field(default_factory=asyncio.Event)
    requests: list[Received] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(Received(dict(request.headers), await request.read()))
        if self.hang:
            await self.release.wait()
        return web.Response(status=self.status, text=self.text, headers=self.headers)


async def start_receiver(aiohttp_server: AiohttpServer, **kwargs: Any) -> Receiver:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post(WRITE_PATH, receiver.handle)
    server = await aiohttp_server(app, **kwargs)
    receiver.url = str(server.make_url(WRITE_PATH))
    return receiver


@pytest.fixture
async def receiver(aiohttp_server: AiohttpServer) -> AsyncIterator[Receiver]:
    started = await start_receiver(aiohttp_server)
    try:
        yield started
    finally:
        started.release.set()


MakeClient = Callable[..., RemoteWriteClient]


@pytest.fixture
async def make_client() -> AsyncIterator[MakeClient]:
    made: list[RemoteWriteClient] = []

    def make(url: str, **kwargs: Any) -> RemoteWriteClient:
        client = RemoteWriteClient(url, user_agent=USER_AGENT, **kwargs)
        made.append(client)
        return client

    try:
        yield make
    finally:
        for client in made:
            await client.close()


BATCH = {RTT: [(1_000, 4.0), (16_000, 5.0)], UP: [(1_000, 1.0)]}


async def test_headers_and_body_as_the_spec_says(
    receiver: Receiver, make_client: MakeClient
) -> None:
    client = make_client(receiver.url)
    result = await client.send(encode(BATCH))
    assert (result.outcome, result.status, result.detail, result.retry_after) == (
        Outcome.OK,
        204,
        "HTTP 204",
        None,
    )
    # The receiver's clock comes with every answer (aiohttp sends Date).
    assert result.date is not None
    assert result.received_at is not None
    assert abs(result.received_at - result.date) < 2
    [request] = receiver.requests
    assert request.headers["Content-Encoding"] == "snappy"
    assert request.headers["Content-Type"] == "application/x-protobuf"
    assert request.headers["X-Prometheus-Remote-Write-Version"] == "0.1.0"
    assert request.headers["User-Agent"] == USER_AGENT
    assert "Authorization" not in request.headers
    assert decode(request.body) == BATCH


async def test_connection_is_kept_for_the_next_send(
    receiver: Receiver, make_client: MakeClient
) -> None:
    client = make_client(receiver.url)
    for _ in range(3):
        assert (await client.send(encode(BATCH))).outcome is Outcome.OK
    assert len(receiver.requests) == 3


HTTP_DATE_IN_30_S = "HTTP-DATE+30"


@dataclass(frozen=True)
class Answer:
    status: int
    text: str
    outcome: Outcome
    headers: tuple[tuple[str, str], ...] = ()
    retry_after: float | None = None


@pytest.mark.parametrize(
    "answer",
    [
        Answer(200, "", Outcome.OK),
        Answer(204, "", Outcome.OK),
        Answer(400, "invalid label name", Outcome.REJECTED),
        Answer(401, "unknown token", Outcome.BLOCKED),
        Answer(403, "not this site", Outcome.BLOCKED),
        Answer(413, "body over 8MiB", Outcome.REJECTED),
        Answer(429, "series limit", Outcome.RETRY, (("Retry-After", "7"),), 7.0),
        Answer(429, "rate limit", Outcome.RETRY),
        Answer(500, "internal error", Outcome.RETRY),
        Answer(500, "too old sample", Outcome.REJECTED),
        Answer(503, "starting", Outcome.RETRY, (("Retry-After", HTTP_DATE_IN_30_S),), 30.0),
        Answer(503, "starting", Outcome.RETRY),
        Answer(308, "", Outcome.RETRY, (("Location", "https://elsewhere/"),)),
    ],
    ids=lambda answer: f"{answer.status}-{answer.text or 'empty'}",
)
async def test_answers(receiver: Receiver, make_client: MakeClient, answer: Answer) -> None:
    receiver.status, receiver.text = answer.status, answer.text
    receiver.headers = {
        k: email.utils.formatdate(time.time() + 30, usegmt=True) if v == HTTP_DATE_IN_30_S else v
        for k, v in answer.headers
    }
    result = await make_client(receiver.url).send(encode(BATCH))
    assert result.outcome is answer.outcome
    assert result.status == answer.status
    assert result.detail.startswith(f"HTTP {answer.status}")
    assert answer.text in result.detail
    if answer.retry_after is None:
        assert result.retry_after is None
    else:
        assert result.retry_after == pytest.approx(answer.retry_after, abs=1.5)
    assert len(receiver.requests) == 1
    assert decode(receiver.requests[0].body) == BATCH


async def test_long_error_body_is_cut(receiver: Receiver, make_client: MakeClient) -> None:
    receiver.status, receiver.text = 400, "x" * 100_000
    result = await make_client(receiver.url).send(encode(BATCH))
    assert result.outcome is Outcome.REJECTED
    assert len(result.detail) <= len("HTTP 400: ") + 512


async def test_timeout_is_retry(receiver: Receiver, make_client: MakeClient) -> None:
    receiver.hang = True
    client = make_client(receiver.url, timeout=0.2)
    started = time.monotonic()
    result = await client.send(encode(BATCH))
    assert time.monotonic() - started < 2.0
    assert result.outcome is Outcome.RETRY
    assert result.status is None
    assert result.timed_out
    assert "timeout" in result.detail


async def test_connection_refused_is_retry(make_client: MakeClient) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = await make_client(f"http://127.0.0.1:{port}{WRITE_PATH}", timeout=5).send(b"\x00")
    assert result.outcome is Outcome.RETRY
    assert result.status is None
    assert "cannot connect" in result.detail


async def test_server_closing_the_connection_is_retry(
    aiohttp_server: AiohttpServer, make_client: MakeClient
) -> None:
    async def drop(request: web.Request) -> web.Response:
        assert request.transport is not None
        request.transport.close()
        await asyncio.sleep(1)
        return web.Response()

    app = web.Application()
    app.router.add_post(WRITE_PATH, drop)
    server = await aiohttp_server(app)
    result = await make_client(str(server.make_url(WRITE_PATH)), timeout=5).send(b"\x00")
    assert result.outcome is Outcome.RETRY
    assert result.status is None


# --- bearer token ---------------------------------------------------------------------------------


def authorization(receiver: Receiver) -> str | None:
    return receiver.requests[-1].headers.get("Authorization")


async def test_static_token(receiver: Receiver, make_client: MakeClient) -> None:
    await make_client(receiver.url, token="s3cret-token").send(b"\x00")
    assert authorization(receiver) == "Bearer s3cret-token"


async def test_token_file_is_read_again_when_it_changes(
    receiver: Receiver, make_client: MakeClient, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("  first-token\n")
    client = make_client(receiver.url, token_file=token_file)
    assert (await client.send(b"\x00")).outcome is Outcome.OK
    assert authorization(receiver) == "Bearer first-token"
    token_file.write_text("other-token\n")
    stat = token_file.stat()
    os.utime(token_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert (await client.send(b"\x00")).outcome is Outcome.OK
    assert authorization(receiver) == "Bearer other-token"


async def test_missing_token_file_blocks_quietly(
    receiver: Receiver,
    make_client: MakeClient,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    token_file = tmp_path / "token"
    client = make_client(receiver.url, token_file=token_file)
    caplog.set_level(logging.INFO, logger="kipu.remote_write.client")
    results = [await client.send(b"\x00") for _ in range(3)]
    for result in results:
        assert result.outcome is Outcome.BLOCKED
        assert result.status is None
        assert str(token_file) in result.detail
    assert not await client.credentials_changed()
    assert receiver.requests == []
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert str(token_file) in warnings[0].getMessage()

    token_file.write_text("late-token\n")
    assert await client.credentials_changed()
    assert (await client.send(b"\x00")).outcome is Outcome.OK
    assert not await client.credentials_changed()
    assert authorization(receiver) == "Bearer late-token"
    assert any("readable again" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(("content", "reason"), [("\n", "empty"), ("two words", "one word")])
async def test_bad_token_file_is_not_sent(
    receiver: Receiver, make_client: MakeClient, tmp_path: Path, content: str, reason: str
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(content)
    result = await make_client(receiver.url, token_file=token_file).send(b"\x00")
    assert result.outcome is Outcome.BLOCKED
    assert reason in result.detail
    assert receiver.requests == []


def test_client_configuration_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not both"):
        RemoteWriteClient("http://x/", token="a", token_file=tmp_path / "t", user_agent=USER_AGENT)
    with pytest.raises(ValueError, match="http"):
        RemoteWriteClient("ftp://x/", user_agent=USER_AGENT)
    with pytest.raises(ValueError, match="not https"):
        RemoteWriteClient("http://x/", ca_file=tmp_path / "ca.pem", user_agent=USER_AGENT)
    with pytest.raises(ValueError, match=re.escape("ca.pem")):
        RemoteWriteClient("https://x/", ca_file=tmp_path / "ca.pem", user_agent=USER_AGENT)
    with pytest.raises(ValueError, match="one word"):
        RemoteWriteClient("https://x/", token="a\r\nX-Injected: 1", user_agent=USER_AGENT)


# --- HTTPS with a private CA ----------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca: Path
    cert: Path
    key: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    openssl = shutil.which("openssl")
    if openssl is None:
        fail_missing("openssl", "the command that makes the test CA is not installed")
    folder = tmp_path_factory.mktemp("pki")
    ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"

    def run(command: str) -> None:
        subprocess.run([openssl, *command.split()], cwd=folder, check=True, capture_output=True)

    run(
        f"req -x509 {ec} -keyout ca.key -out ca.pem -days 2 -subj /CN=kipu-test-CA"
        " -addext basicConstraints=critical,CA:TRUE"
        " -addext keyUsage=critical,keyCertSign,cRLSign"
    )
    run(f"req {ec} -keyout server.key -out server.csr -subj /CN=localhost")
    (folder / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid,issuer\n"
    )
    run(
        "x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem"
        " -days 2 -extfile server.ext"
    )
    return Pki(folder / "ca.pem", folder / "server.pem", folder / "server.key")


@pytest.fixture
async def tls_receiver(aiohttp_server: AiohttpServer, pki: Pki) -> AsyncIterator[Receiver]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.cert, pki.key)
    started = await start_receiver(aiohttp_server, ssl=context)
    assert started.url.startswith("https://127.0.0.1:")
    try:
        yield started
    finally:
        started.release.set()


async def test_https_with_private_ca(
    tls_receiver: Receiver, make_client: MakeClient, pki: Pki
) -> None:
    client = make_client(tls_receiver.url, ca_file=pki.ca, token="tls-token")
    result = await client.send(encode(BATCH))
    assert result.outcome is Outcome.OK, result.detail
    assert decode(tls_receiver.requests[0].body) == BATCH
    assert authorization(tls_receiver) == "Bearer tls-token"


async def test_https_without_the_ca_is_refused(
    tls_receiver: Receiver, make_client: MakeClient
) -> None:
    result = await make_client(tls_receiver.url, token="tls-token").send(encode(BATCH))
    assert result.outcome is Outcome.RETRY
    assert result.status is None
    assert result.detail.startswith("TLS")
    assert "certificate" in result.detail
    assert tls_receiver.requests == []


# --- generated code -------------------------------------------------------------------------------


def _regenerate(tmp_path: Path) -> tuple[str, str]:
    need_module("grpc_tools")  # grpcio-tools, pinned in pyproject's dev extra
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I.", f"--python_out={tmp_path}",
         f"--pyi_out={tmp_path}", "kipu/remote_write/proto/remote.proto"],
        cwd=ROOT, check=True, capture_output=True,
    )  # fmt: skip
    generated = tmp_path / "kipu" / "remote_write" / "proto"
    return (generated / "remote_pb2.py").read_text(), (generated / "remote_pb2.pyi").read_text()


def _gencode_version(source: str) -> str:
    found = re.search(r"^# Protobuf Python Version: (\S+)$", source, re.MULTILINE)
    return found.group(1) if found else "unknown"


def test_generated_schema_matches_proto(tmp_path: Path) -> None:
    python, _ = _regenerate(tmp_path)
    found = re.search(r"AddSerializedFile\((b'.*?')\)", python)
    assert found is not None
    assert ast.literal_eval(found.group(1)) == remote_pb2.DESCRIPTOR.serialized_pb, (
        "kipu/remote_write/proto/remote_pb2.py is out of date with remote.proto: regenerate "
        "it (see the comment at the top of remote.proto)"
    )


def test_generated_files_are_identical(tmp_path: Path) -> None:
    python, stubs = _regenerate(tmp_path)
    committed = (ROOT / "kipu" / "remote_write" / "proto" / "remote_pb2.py").read_text()
    # The dev extra pins grpcio-tools to one version, and with it the protoc that writes
    # the code: a different protobuf version means the pin and the committed code disagree.
    assert _gencode_version(python) == _gencode_version(committed), (
        f"the pinned grpcio-tools makes protobuf {_gencode_version(python)} code, the "
        f"committed code is {_gencode_version(committed)}: regenerate it with the pinned "
        "grpcio-tools (see the comment at the top of remote.proto)"
    )
    assert python == committed
    assert stubs == (ROOT / "kipu" / "remote_write" / "proto" / "remote_pb2.pyi").read_text()
