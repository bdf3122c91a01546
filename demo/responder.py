"""Userspace ICMP echo responder with per-address delay, jitter, loss and outage profiles.

Run inside a network namespace whose kernel echo replies are disabled
(``net.ipv4.icmp_echo_ignore_all=1``)::

    python responder.py --control /tmp/x/ctl.sock [--seed N] [--exit-on-stdin-eof]

It answers every ICMP echo request addressed to the namespace with an echo reply whose IPv4
source is the address that was pinged. Replies are scheduled at
``read time + delay + uniform(-jitter, +jitter)`` (clamped at the read time) and sent within a
few microseconds of that instant: the loop waits with ``select()`` until shortly before the due
time and then busy-spins on ``time.perf_counter()``.

Control protocol: a UNIX stream socket at the ``--control`` path; newline-delimited JSON
commands, each answered with exactly one JSON line.

``{"cmd": "set", "address": "10.1.2.3" | "*", "delay": s, "jitter": s, "loss": p, "down": b}``
    Update the profile of one address (``"*"`` is the default profile). Omitted fields keep
    their value; a field never set for an address falls back to the ``"*"`` profile.
``{"cmd": "clear", "address": "10.1.2.3" | "*"}``
    Forget the per-address overrides (``"*"``: reset every profile to the defaults).
``{"cmd": "profile", "address": "10.1.2.3"}``
    The effective profile of an address.
``{"cmd": "stats"}``
    ``{"ok": true, "received": {addr: n}, "replied": {addr: n}, "late_max": s}``; ``late_max``
    is the largest delay between a reply's due time and its ``sendto()`` call.
``{"cmd": "reset_stats"}``
    Zero the counters (and ``late_max``).
``{"cmd": "seed", "seed": n}``
    Reseed the loss/jitter random generator (makes a run reproducible mid-session).
``{"cmd": "ping"}``
    Liveness check.

Failures are answered with ``{"ok": false, "error": "..."}``; nothing a client sends can stop
the responder. SIGTERM and SIGINT make it exit cleanly (status 0).

Only the standard library is used so the script runs under any Python 3.11 interpreter.
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import ipaddress
import json
import math
import os
import random
import select
import signal
import socket
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import Any

ICMP_ECHO_REPLY = 0
ICMP_ECHO_REQUEST = 8
#: Wake up this long before a reply is due, then spin (select/epoll timers are coarse).
SPIN_WINDOW = 0.0015
MAX_CONTROL_LINE = 64 * 1024
MAX_CONTROL_OUTPUT = 1024 * 1024
PROFILE_FIELDS = ("delay", "jitter", "loss", "down")


def checksum(data: bytes) -> int:
    """RFC 1071 Internet checksum."""
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return int(~total & 0xFFFF)


@dataclass
class Profile:
    delay: float = 0.0
    jitter: float = 0.0
    loss: float = 0.0
    down: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"delay": self.delay, "jitter": self.jitter, "loss": self.loss, "down": self.down}


def _validate_field(name: str, value: object) -> float | bool:
    if name == "down":
        if not isinstance(value, bool):
            raise ValueError("'down' must be a boolean")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name!r} must be a number")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{name!r} must be a finite number >= 0")
    if name == "loss" and number > 1:
        raise ValueError("'loss' must be between 0 and 1")
    if name in ("delay", "jitter") and number > 3600:
        raise ValueError(f"{name!r} must be at most 3600 seconds")
    return number


@dataclass
class Profiles:
    default: Profile = field(default_factory=Profile)
    overrides: dict[str, dict[str, float | bool]] = field(default_factory=dict)

    def effective(self, address: str) -> Profile:
        over = self.overrides.get(address)
        if not over:
            return self.default
        merged = self.default.as_dict()
        merged.update(over)
        return Profile(
            delay=float(merged["delay"]),
            jitter=float(merged["jitter"]),
            loss=float(merged["loss"]),
            down=bool(merged["down"]),
        )

    def update(self, address: str, values: dict[str, float | bool]) -> None:
        if address == "*":
            for name, value in values.items():
                setattr(self.default, name, value)
        else:
            self.overrides.setdefault(address, {}).update(values)

    def clear(self, address: str) -> None:
        if address == "*":
            self.default = Profile()
            self.overrides.clear()
        else:
            self.overrides.pop(address, None)


def _parse_address(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("'address' must be a string")
    if value == "*":
        return value
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise ValueError(f"'address' is not an IPv4 address or '*': {value!r}") from None


class _Connection:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.inbuf = b""
        self.outbuf = b""
        self.closing = False


class Responder:
    def __init__(self, control_path: str, seed: int, watch_fd: int | None = None) -> None:
        self.control_path = control_path
        #: Exit when this descriptor (the parent's pipe) reaches EOF: the parent died.
        self.watch_fd = watch_fd
        self.rng = random.Random(seed)
        self.profiles = Profiles()
        self.received: dict[str, int] = {}
        self.replied: dict[str, int] = {}
        #: Largest (sendto() call - due time) in seconds: the responder's scheduling error.
        self.late_max = 0.0
        # (due perf_counter, tie breaker, packet, destination)
        self.pending: list[tuple[float, int, bytes, str]] = []
        self.sequence = 0
        self.ip_id = 0
        self.connections: dict[int, _Connection] = {}
        self.stopping = False

        self.raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        self.raw.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
        with contextlib.suppress(OSError):
            self.raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self.raw.setblocking(False)

        with contextlib.suppress(FileNotFoundError):
            os.unlink(control_path)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(control_path)
        self.listener.listen(16)
        self.listener.setblocking(False)

        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)

    # ------------------------------------------------------------------ ICMP

    def _drain_raw(self) -> None:
        while True:
            try:
                packet = self.raw.recv(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            self._handle_packet(packet, time.perf_counter())

    def _handle_packet(self, packet: bytes, read_at: float) -> None:
        if len(packet) < 20 or packet[0] >> 4 != 4:
            return
        ihl = (packet[0] & 0x0F) * 4
        total_length = struct.unpack_from("!H", packet, 2)[0]
        if ihl < 20 or len(packet) < ihl + 8:
            return
        if ihl <= total_length <= len(packet):
            packet = packet[:total_length]
        icmp = packet[ihl:]
        if icmp[0] != ICMP_ECHO_REQUEST or icmp[1] != 0:
            return
        if checksum(icmp) != 0:
            return
        source = socket.inet_ntoa(packet[12:16])
        destination_raw = packet[16:20]
        destination = socket.inet_ntoa(destination_raw)
        if destination_raw[0] >= 224:  # multicast / limited broadcast: never answer
            return

        self.received[destination] = self.received.get(destination, 0) + 1
        profile = self.profiles.effective(destination)
        if profile.down:
            return
        if profile.loss > 0 and self.rng.random() < profile.loss:
            return
        delay = profile.delay
        if profile.jitter > 0:
            delay += self.rng.uniform(-profile.jitter, profile.jitter)
        delay = max(delay, 0.0)

        reply_icmp = bytearray(icmp)
        reply_icmp[0] = ICMP_ECHO_REPLY
        reply_icmp[2:4] = b"\x00\x00"
        reply_icmp[2:4] = struct.pack("!H", checksum(bytes(reply_icmp)))
        self.ip_id = (self.ip_id + 1) & 0xFFFF
        header = bytearray(
            struct.pack(
                "!BBHHHBBH4s4s",
                0x45,
                0,
                20 + len(reply_icmp),
                self.ip_id,
                0x4000,  # don't fragment
                64,
                socket.IPPROTO_ICMP,
                0,
                destination_raw,
                packet[12:16],
            )
        )
        header[10:12] = struct.pack("!H", checksum(bytes(header)))
        self.sequence += 1
        heapq.heappush(
            self.pending, (read_at + delay, self.sequence, bytes(header + reply_icmp), source)
        )

    def _send_due(self) -> None:
        """Send every reply that is due, spinning for those due within the spin window."""
        while self.pending:
            due = self.pending[0][0]
            now = time.perf_counter()
            if due - now > SPIN_WINDOW:
                return
            while now < due:
                # Keep reading requests while spinning so their read time stays accurate.
                self._drain_raw()
                now = time.perf_counter()
            # Requests read during the spin may be due even earlier: send in heap order.
            due, _, packet, source = heapq.heappop(self.pending)
            self.late_max = max(self.late_max, time.perf_counter() - due)
            try:
                self.raw.sendto(packet, (source, 0))
            except OSError as exc:
                print(f"responder: send to {source} failed: {exc}", file=sys.stderr)
                continue
            pinged = socket.inet_ntoa(packet[12:16])
            self.replied[pinged] = self.replied.get(pinged, 0) + 1

    # --------------------------------------------------------------- control

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                print(f"responder: accept failed: {exc}", file=sys.stderr)
                return
            conn.setblocking(False)
            self.connections[conn.fileno()] = _Connection(conn)

    def _close(self, conn: _Connection) -> None:
        self.connections.pop(conn.sock.fileno(), None)
        conn.sock.close()

    def _read_control(self, conn: _Connection) -> None:
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)
            return
        if not data:
            if conn.inbuf.strip():
                conn.outbuf += self._answer(conn.inbuf)
            conn.inbuf = b""
            conn.closing = True
            self._flush(conn)
            return
        conn.inbuf += data
        while b"\n" in conn.inbuf:
            line, conn.inbuf = conn.inbuf.split(b"\n", 1)
            if line.strip():
                conn.outbuf += self._answer(line)
        if len(conn.inbuf) > MAX_CONTROL_LINE:
            conn.outbuf += _encode({"ok": False, "error": "command line too long"})
            conn.inbuf = b""
            conn.closing = True
        if len(conn.outbuf) > MAX_CONTROL_OUTPUT:  # client never reads its answers
            self._close(conn)
            return
        self._flush(conn)

    def _flush(self, conn: _Connection) -> None:
        while conn.outbuf:
            try:
                sent = conn.sock.send(conn.outbuf)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._close(conn)
                return
            conn.outbuf = conn.outbuf[sent:]
        if conn.closing:
            self._close(conn)

    def _answer(self, line: bytes) -> bytes:
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("command must be a JSON object")
            reply = self._execute(request)
        except (ValueError, TypeError, KeyError) as exc:
            reply = {"ok": False, "error": str(exc) or type(exc).__name__}
        except Exception as exc:  # never let a command crash the responder
            reply = {"ok": False, "error": f"internal error: {type(exc).__name__}: {exc}"}
        return _encode(reply)

    def _execute(self, request: dict[str, Any]) -> dict[str, Any]:
        cmd = request.get("cmd")
        if cmd == "set":
            unknown = set(request) - {"cmd", "address", *PROFILE_FIELDS}
            if unknown:
                raise ValueError(f"unknown field(s): {', '.join(sorted(unknown))}")
            address = _parse_address(request.get("address", "*"))
            values = {
                name: _validate_field(name, request[name])
                for name in PROFILE_FIELDS
                if name in request
            }
            self.profiles.update(address, values)
            return {"ok": True}
        if cmd == "clear":
            self.profiles.clear(_parse_address(request.get("address", "*")))
            return {"ok": True}
        if cmd == "profile":
            address = _parse_address(request.get("address", "*"))
            return {"ok": True, "profile": self.profiles.effective(address).as_dict()}
        if cmd == "stats":
            return {
                "ok": True,
                "received": dict(self.received),
                "replied": dict(self.replied),
                "late_max": self.late_max,
            }
        if cmd == "reset_stats":
            self.received.clear()
            self.replied.clear()
            self.late_max = 0.0
            return {"ok": True}
        if cmd == "seed":
            seed = request.get("seed")
            if isinstance(seed, bool) or not isinstance(seed, int):
                raise ValueError("'seed' must be an integer")
            self.rng.seed(seed)
            return {"ok": True}
        if cmd == "ping":
            return {"ok": True}
        raise ValueError(f"unknown command: {cmd!r}")

    # ------------------------------------------------------------------ loop

    def _connection_for(self, sock: socket.socket) -> _Connection | None:
        """The live control connection of ``sock`` (it may have been closed meanwhile)."""
        fileno = sock.fileno()
        conn = self.connections.get(fileno) if fileno >= 0 else None
        return conn if conn is not None and conn.sock is sock else None

    def _check_parent(self) -> None:
        assert self.watch_fd is not None
        try:
            data = os.read(self.watch_fd, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            print("responder: parent pipe closed, exiting", file=sys.stderr)
            self.watch_fd = None
            self.stopping = True

    def request_stop(self) -> None:
        self.stopping = True
        with contextlib.suppress(OSError):
            self.wake_w.send(b"\x00")

    def run(self) -> None:
        print("ready", flush=True)
        while not self.stopping:
            timeout: float | None = None
            if self.pending:
                timeout = max(0.0, self.pending[0][0] - time.perf_counter() - SPIN_WINDOW)
            readers: list[socket.socket | int] = [self.raw, self.listener, self.wake_r]
            if self.watch_fd is not None:
                readers.append(self.watch_fd)
            writers: list[socket.socket] = []
            for conn in self.connections.values():
                readers.append(conn.sock)
                if conn.outbuf:
                    writers.append(conn.sock)
            try:
                readable, writable, _ = select.select(readers, writers, [], timeout)
            except InterruptedError:  # pragma: no cover - PEP 475 retries select
                continue
            if self.raw in readable:
                self._drain_raw()
            self._send_due()
            if self.watch_fd is not None and self.watch_fd in readable:
                self._check_parent()
            if self.wake_r in readable:
                with contextlib.suppress(OSError):
                    self.wake_r.recv(4096)
            if self.listener in readable:
                self._accept()
            for sock in readable:
                if not isinstance(sock, socket.socket):
                    continue
                owner = self._connection_for(sock)
                if owner is not None:
                    self._read_control(owner)
            for sock in writable:
                owner = self._connection_for(sock)
                if owner is not None:
                    self._flush(owner)
            self._send_due()

    def close(self) -> None:
        for conn in list(self.connections.values()):
            self._close(conn)
        for sock in (self.raw, self.listener, self.wake_r, self.wake_w):
            sock.close()
        with contextlib.suppress(OSError):
            os.unlink(self.control_path)


def _encode(reply: dict[str, Any]) -> bytes:
    return (json.dumps(reply, separators=(",", ":")) + "\n").encode()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--control", required=True, help="path of the UNIX control socket")
    parser.add_argument("--seed", type=int, default=0, help="seed of the loss/jitter generator")
    parser.add_argument(
        "--exit-on-stdin-eof",
        action="store_true",
        help="exit when stdin reaches EOF (give it a pipe so the responder dies with its parent)",
    )
    args = parser.parse_args(argv)

    watch_fd = sys.stdin.fileno() if args.exit_on_stdin_eof else None
    responder = Responder(args.control, args.seed, watch_fd)

    def on_signal(signum: int, frame: object) -> None:
        responder.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        responder.run()
    finally:
        responder.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
