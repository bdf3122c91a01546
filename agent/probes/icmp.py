"""ICMP echo over one socket per address family: the only module that imports icmplib.

icmplib builds and sends the echo requests and opens the socket, privileged (raw) or
not (datagram, where ``net.ipv4.ping_group_range`` allows it). Replies for all
targets arrive on the same socket, so we demultiplex them ourselves by sequence
number in a reader callback; icmplib's own receive calls each expect to own the
socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import itertools
import logging
import os
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import icmplib

log = logging.getLogger(__name__)

T = TypeVar("T")
Opener = Callable[[Callable[[], T]], T]

_ECHO_REPLY = {4: 0, 6: 129}
# Kernel receive timestamps: the reply's arrival, not the moment the loop got to it.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_TIMESPEC = struct.Struct("@qq")
_ANCILLARY_SIZE = socket.CMSG_SPACE(_TIMESPEC.size)
_ERRORS = {
    4: {3: "destination unreachable", 11: "time exceeded"},
    6: {1: "destination unreachable", 3: "time exceeded"},
}


@dataclass(frozen=True, slots=True)
class IcmpResult:
    """The outcome of one echo request. `rtt` is in seconds, None when lost."""

    address: str
    sent: bool
    rtt: float | None = None
    error: str | None = None

    @property
    def success(self) -> bool:
        return self.rtt is not None


@dataclass(frozen=True, slots=True)
class ParsedReply:
    """What matters of a packet read from the ICMP socket."""

    echo_reply: bool
    identifier: int
    sequence: int
    error: str | None


class IcmpPermissionError(Exception):
    """Neither a raw nor an unprivileged ICMP socket could be opened."""


def parse_reply(packet: bytes, family: int, has_ip_header: bool) -> ParsedReply | None:
    """Read type, identifier and sequence from an echo reply or an ICMP error.

    For errors (unreachable, time exceeded) the identifier and sequence are those of the
    request quoted inside. Raw IPv4 sockets deliver the IP header first; datagram
    sockets and IPv6 sockets do not. Returns None for anything else.
    """
    offset = 0
    if has_ip_header:
        if len(packet) < 20:
            return None
        offset = (packet[0] & 0x0F) * 4
    if len(packet) < offset + 8:
        return None
    icmp_type = packet[offset]
    if icmp_type == _ECHO_REPLY[family]:
        identifier, sequence = struct.unpack_from("!HH", packet, offset + 4)
        return ParsedReply(True, identifier, sequence, None)
    reason = _ERRORS[family].get(icmp_type)
    if reason is None:
        return None
    inner = offset + 8
    if family == 4:
        if len(packet) < inner + 20:
            return None
        inner += (packet[inner] & 0x0F) * 4
    else:
        inner += 40
    if len(packet) < inner + 8:
        return None
    identifier, sequence = struct.unpack_from("!HH", packet, inner + 4)
    return ParsedReply(False, identifier, sequence, reason)


def kernel_timestamp(ancillary: list[tuple[int, int, bytes]]) -> float | None:
    """The SO_TIMESTAMPNS receive time (wall clock) among a packet's ancillary data."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
            seconds, nanoseconds = _TIMESPEC.unpack_from(data)
            return float(seconds + nanoseconds / 1e9)
    return None


def round_trip(user_rtt: float, sent_wall: float, ancillary: list[tuple[int, int, bytes]]) -> float:
    """The RTT from the kernel's receive stamp when it is sane, else the user-space one.

    The kernel stamps the reply when it arrives, so the time the event loop takes to
    read it does not count (about 0.2 ms on a busy or virtualised host). The stamp is
    wall-clock: if the clock stepped during the probe, the result is off by the step,
    so it is used only when it is consistent with the monotonic measurement.
    """
    stamp = kernel_timestamp(ancillary)
    if stamp is None:
        return user_rtt
    kernel_rtt = stamp - sent_wall
    if 0.0 <= kernel_rtt <= user_rtt + 0.001:
        return kernel_rtt
    return user_rtt


def permission_help() -> str:
    """Explain which sysctl or capability would let the agent ping."""
    try:
        with open("/proc/sys/net/ipv4/ping_group_range", encoding="ascii") as f:
            low, high = (int(x) for x in f.read().split())
        current = f"currently {low} {high}"
    except (OSError, ValueError):
        current = "unknown here"
    return (
        "cannot open an ICMP socket: run kipu-agent with CAP_NET_RAW (systemd: "
        "AmbientCapabilities=CAP_NET_RAW; or setcap cap_net_raw+ep on the interpreter) "
        f"or let group {os.getgid()} use unprivileged ICMP with "
        f"sysctl -w net.ipv4.ping_group_range='0 2147483647' ({current})"
    )


def _direct(fn: Callable[[], T]) -> T:
    return fn()


class IcmpPinger:
    """Sends echo requests and matches replies, for any number of concurrent targets.

    `open_in` runs the socket constructor; tests pass one that opens the socket inside
    a network namespace. `privileged` None tries raw sockets first, then datagram.
    """

    def __init__(
        self,
        privileged: bool | None = None,
        open_in: Opener[Any] = _direct,
        payload_size: int = 56,
    ) -> None:
        self._want_privileged = privileged
        self._open_in = open_in
        self._payload_size = payload_size
        self._sockets: dict[int, Any] = {}
        self._privileged: bool | None = None
        self._identifier = (os.getpid() ^ int(time.monotonic_ns() >> 10)) & 0xFFFF
        self._sequence = itertools.count(int.from_bytes(os.urandom(2), "big"))
        # (family, sequence) -> (future, send time on the performance counter,
        # send time on the wall clock as the kernel stamps it, address)
        self._pending: dict[
            tuple[int, int], tuple[asyncio.Future[IcmpResult], float, float, str]
        ] = {}

    @property
    def privileged(self) -> bool | None:
        """True for raw sockets, False for datagram ones, None before opening."""
        return self._privileged

    def open(self) -> None:
        """Open the IPv4 socket now, so a permission problem shows at start."""
        self._socket(4)

    def close(self) -> None:
        for family, sock in self._sockets.items():
            with contextlib.suppress(OSError, RuntimeError, ValueError):
                asyncio.get_running_loop().remove_reader(sock.sock.fileno())
            sock.close()
            log.debug("closed ICMPv%d socket", family)
        self._sockets.clear()
        for future, *_ in self._pending.values():
            if not future.done():
                future.cancel()
        self._pending.clear()

    def _socket(self, family: int) -> Any:
        sock = self._sockets.get(family)
        if sock is not None:
            return sock
        cls = icmplib.ICMPv4Socket if family == 4 else icmplib.ICMPv6Socket
        modes = [True, False] if self._want_privileged is None else [self._want_privileged]
        if self._privileged is not None:
            modes = [self._privileged]
        for privileged in modes:
            try:
                sock = self._open_in(functools.partial(cls, privileged=privileged))
            except icmplib.SocketPermissionError:
                continue
            break
        else:
            raise IcmpPermissionError(permission_help())
        sock.blocking = False
        with contextlib.suppress(OSError):
            sock.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self._privileged = sock.is_privileged
        self._sockets[family] = sock
        loop = asyncio.get_running_loop()
        loop.add_reader(sock.sock.fileno(), self._on_readable, family, sock)
        log.info(
            "ICMPv%d socket open (%s)", family, "raw" if sock.is_privileged else "unprivileged"
        )
        return sock

    async def ping(self, address: str, timeout: float) -> IcmpResult:  # noqa: ASYNC109
        """Send one echo request to an IP address and wait for its reply; never raises."""
        family = 6 if ":" in address else 4
        try:
            sock = self._socket(family)
        except (IcmpPermissionError, icmplib.ICMPLibError, OSError) as err:
            return IcmpResult(address, False, error=str(err))
        sequence = next(self._sequence) & 0xFFFF
        key = (family, sequence)
        if key in self._pending:  # 65536 requests in flight: the oldest is long lost
            self._pending.pop(key)[0].cancel()
        request = icmplib.ICMPRequest(
            destination=address,
            id=self._identifier,
            sequence=sequence,
            payload_size=self._payload_size,
        )
        loop = asyncio.get_running_loop()
        future: asyncio.Future[IcmpResult] = loop.create_future()
        try:
            sock.send(request)
        except icmplib.ICMPLibError as err:
            return IcmpResult(address, False, error=str(err))
        sent_at = time.perf_counter()
        self._pending[key] = (future, sent_at, request.time, address)
        try:
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            return IcmpResult(address, True, error="timeout")
        finally:
            self._pending.pop(key, None)

    def _on_readable(self, family: int, sock: Any) -> None:
        raw = sock.sock
        has_ip_header = family == 4 and sock.is_privileged
        while True:
            try:
                packet, ancillary, _, _ = raw.recvmsg(2048, _ANCILLARY_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:
                # ICMP errors queued on a datagram socket surface here; they carry no
                # sequence we could match, so the affected probe simply times out.
                if err.errno not in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ECONNREFUSED):
                    log.warning("ICMPv%d receive failed: %s", family, err)
                return
            received_at = time.perf_counter()
            reply = parse_reply(packet, family, has_ip_header)
            if reply is None:
                continue
            # Raw sockets see every ICMP packet of the host: keep only ours.
            if sock.is_privileged and reply.identifier != self._identifier:
                continue
            pending = self._pending.get((family, reply.sequence))
            if pending is None:
                continue
            future, sent_at, sent_wall, address = pending
            if future.done():
                continue
            if reply.echo_reply:
                rtt = round_trip(received_at - sent_at, sent_wall, ancillary)
                future.set_result(IcmpResult(address, True, rtt=rtt))
            else:
                future.set_result(IcmpResult(address, True, error=reply.error))
