"""Reading replies off the ICMP socket: pure, no network."""

from __future__ import annotations

import socket
import struct

import pytest

from agent.probes.icmp import SO_TIMESTAMPNS, kernel_timestamp, parse_reply, round_trip


def icmp(kind: int, ident: int, seq: int, payload: bytes = b"x" * 8) -> bytes:
    return struct.pack("!BBHHH", kind, 0, 0, ident, seq) + payload


def ipv4(payload: bytes, ihl: int = 5) -> bytes:
    header = bytes([0x40 | ihl]) + b"\x00" * (ihl * 4 - 1)
    return header + payload


def test_echo_reply_raw_v4() -> None:
    reply = parse_reply(ipv4(icmp(0, 0x1234, 7)), 4, has_ip_header=True)
    assert reply is not None
    assert (reply.echo_reply, reply.identifier, reply.sequence) == (True, 0x1234, 7)


def test_ip_options_are_skipped() -> None:
    reply = parse_reply(ipv4(icmp(0, 1, 2), ihl=6), 4, has_ip_header=True)
    assert reply is not None
    assert reply.sequence == 2


def test_echo_reply_datagram_and_v6() -> None:
    v4 = parse_reply(icmp(0, 9, 300), 4, has_ip_header=False)
    v6 = parse_reply(icmp(129, 9, 301), 6, has_ip_header=False)
    assert v4 is not None
    assert v4.sequence == 300
    assert v6 is not None
    assert v6.echo_reply
    assert v6.sequence == 301


def test_unreachable_quotes_our_request() -> None:
    quoted = ipv4(icmp(8, 0x1234, 42))
    packet = ipv4(icmp(3, 0, 0, payload=quoted))
    reply = parse_reply(packet, 4, has_ip_header=True)
    assert reply is not None
    assert not reply.echo_reply
    assert (reply.identifier, reply.sequence) == (0x1234, 42)
    assert reply.error == "destination unreachable"


def test_v6_time_exceeded_quotes_our_request() -> None:
    quoted = b"\x60" + b"\x00" * 39 + icmp(128, 5, 6)
    reply = parse_reply(icmp(3, 0, 0, payload=quoted), 6, has_ip_header=False)
    assert reply is not None
    assert reply.error == "time exceeded"
    assert reply.sequence == 6


def test_other_and_truncated_packets_are_ignored() -> None:
    assert parse_reply(ipv4(icmp(8, 1, 1)), 4, has_ip_header=True) is None  # a request
    assert parse_reply(icmp(135, 0, 0), 6, has_ip_header=False) is None  # neighbour solicit
    assert parse_reply(b"\x45\x00", 4, has_ip_header=True) is None
    assert parse_reply(ipv4(b"\x00\x00"), 4, has_ip_header=True) is None
    assert parse_reply(ipv4(icmp(3, 0, 0, payload=b"short")), 4, has_ip_header=True) is None


def timestamp(seconds: int, nanoseconds: int) -> list[tuple[int, int, bytes]]:
    return [(socket.SOL_SOCKET, SO_TIMESTAMPNS, struct.pack("@qq", seconds, nanoseconds))]


def test_kernel_timestamp_is_read_from_ancillary_data() -> None:
    assert kernel_timestamp(timestamp(1_700_000_000, 500_000_000)) == 1_700_000_000.5
    assert kernel_timestamp([]) is None
    assert kernel_timestamp([(socket.SOL_IP, 1, b"\x00" * 16)]) is None


def test_round_trip_prefers_the_kernel_stamp_when_consistent() -> None:
    sent = 1_700_000_000.0
    stamp = timestamp(1_700_000_000, 80_100_000)  # arrived 80.1 ms after the send
    assert round_trip(0.0803, sent, stamp) == pytest.approx(0.0801)
    # The wall clock stepped during the probe: the stamp disagrees, use the monotonic RTT.
    assert round_trip(0.0803, sent - 3600, stamp) == 0.0803
    assert round_trip(0.0803, sent + 1, stamp) == 0.0803
    assert round_trip(0.0803, sent, []) == 0.0803
