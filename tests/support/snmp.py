"""Real SNMP counterparts for tests: snmpsim serving our recordings, and Debian's snmpd.

Standard library only. pysnmp is deliberately not imported here: with pysmi installed it
warns at import, and test helpers should not decide when that happens. Readiness checks
use a real SNMPv2c GET encoded by hand (:class:`SnmpUdpClient`), which tests can also use
when they need raw control over requests (counting answers under packet loss).

:class:`SnmpSim` runs ``snmpsim`` (the snmpsim-command-responder program) on a folder of
``.snmprec`` files; the file ``NAME.snmprec`` answers SNMPv1/v2c community ``NAME`` (and
SNMPv3 context name ``NAME``). Changing what a device answers:

- :meth:`SnmpSim.set_values` / :meth:`SnmpSim.write_recording` replace a recording; the
  responder notices the new modification time and re-reads the file at the next request.
  That covers static values: a 32-bit counter that wraps, a ``sysUpTime`` that goes back.
- snmpsim keeps the settings of a ``TAG:numeric`` line (a value that grows with time) for
  its whole life, and only reads the list of files at start. When a write changes a
  numeric line or adds a community, the helper restarts the responder on the same port
  (numeric values then start again from ``initial``).

:class:`Snmpd` runs Debian's net-snmp agent with its own configuration and state folder,
answering SNMPv2c and SNMPv3 (authPriv) with the real MIB-II of its network namespace.

Both listen on 127.0.0.1 by default, or on any address inside a network namespace that
the test created (``netns=`` and ``host=``); both are stopped by PID.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import os
import re
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar

from demo.netns import terminate

__all__ = [
    "DEFAULT_V3_USER",
    "RECORDINGS",
    "SNMP_DATA_DIR",
    "SnmpDaemonError",
    "SnmpResponse",
    "SnmpSim",
    "SnmpUdpClient",
    "Snmpd",
    "Varbind",
    "copy_recordings",
    "decode_message",
    "encode_request",
    "format_snmprec",
    "parse_snmprec",
    "snmp_get",
    "snmpd_unavailable_reason",
    "snmpsim_unavailable_reason",
]

T = TypeVar("T")

SNMP_DATA_DIR = Path(__file__).resolve().parents[1] / "snmp_data"
#: Community names of the recordings in tests/snmp_data (one NAME.snmprec each).
RECORDINGS = ("mikrotik", "switch24", "router48", "unifi", "airmax", "epmp", "legacy32")

SYS_UPTIME = "1.3.6.1.2.1.1.3.0"

#: An SNMPv3 user in the shape of the agent's configuration (``snmp[].community`` v3 form).
DEFAULT_V3_USER: Mapping[str, str] = {
    "user": "kipu-monitor",
    "auth_protocol": "SHA",
    "auth_key": "kipu-auth-passphrase",
    "priv_protocol": "AES",
    "priv_key": "kipu-priv-passphrase",
}

_SNMPD_AUTH = {"MD5", "SHA", "SHA-224", "SHA-256", "SHA-384", "SHA-512"}
_SNMPD_PRIV = {"DES", "AES", "AES-192", "AES-256"}
_SNMPSIM_AUTH = {"MD5": "MD5", "SHA": "SHA", "SHA-224": "SHA224", "SHA-256": "SHA256",
                 "SHA-384": "SHA384", "SHA-512": "SHA512"}  # fmt: skip
_SNMPSIM_PRIV = {"DES": "DES", "AES": "AES", "AES-192": "AES192", "AES-256": "AES256"}


class SnmpDaemonError(RuntimeError):
    """An SNMP responder could not be started, reached or driven."""


def snmpsim_unavailable_reason() -> str | None:
    """Why snmpsim cannot run here, or ``None`` when it can."""
    if importlib.util.find_spec("snmpsim") is None:
        return "snmpsim is not installed (pip install snmpsim pysmi)"
    if importlib.util.find_spec("pysmi") is None:
        return "pysmi is not installed (snmpsim needs it)"
    return None


def snmpd_unavailable_reason() -> str | None:
    """Why Debian's snmpd cannot run here, or ``None`` when it can."""
    if _snmpd_binary() is None:
        return "snmpd is not installed (apt-get install snmpd)"
    return None


def _snmpd_binary() -> str | None:
    found = shutil.which("snmpd")
    if found is None and os.access("/usr/sbin/snmpd", os.X_OK):
        found = "/usr/sbin/snmpd"
    return found


# ------------------------------------------------------------------ namespaces


def _in_netns(netns: str | None, fn: Callable[[], T]) -> T:
    if netns is None:
        return fn()
    from demo.netns import call_in_netns  # noqa: PLC0415 (the namespace helpers need root)

    return call_in_netns(netns, fn)


def _free_udp_port(host: str, netns: str | None) -> int:
    def probe() -> int:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((host, 0))
            port: int = sock.getsockname()[1]
            return port

    return _in_netns(netns, probe)


# ------------------------------------------------------------- BER, SNMPv2c only

_INTEGER, _OCTETS, _NULL, _OID, _SEQUENCE = 0x02, 0x04, 0x05, 0x06, 0x30
_IPADDRESS, _COUNTER32, _GAUGE32, _TIMETICKS, _OPAQUE, _COUNTER64 = (
    0x40, 0x41, 0x42, 0x43, 0x44, 0x46,
)  # fmt: skip
_NO_SUCH_OBJECT, _NO_SUCH_INSTANCE, _END_OF_MIB_VIEW = 0x80, 0x81, 0x82
GET_REQUEST, GET_NEXT_REQUEST, RESPONSE = 0xA0, 0xA1, 0xA2
_VERSION_2C = 1

SnmpValue = int | bytes | str | None


@dataclass(frozen=True)
class Varbind:
    """One decoded variable binding. ``tag`` is the BER tag (0x41 Counter32, 0x80…0x82
    the noSuchObject/noSuchInstance/endOfMibView exceptions, whose value is ``None``)."""

    oid: str
    tag: int
    value: SnmpValue


@dataclass(frozen=True)
class SnmpResponse:
    request_id: int
    error_status: int
    error_index: int
    varbinds: tuple[Varbind, ...]

    def value(self, oid: str) -> SnmpValue:
        """The value bound to ``oid`` (KeyError if the response does not carry it)."""
        for vb in self.varbinds:
            if vb.oid == oid:
                return vb.value
        raise KeyError(oid)


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _tlv(tag: int, payload: bytes) -> bytes:
    return bytes([tag]) + _length(len(payload)) + payload


def _encode_integer(value: int) -> bytes:
    return _tlv(_INTEGER, value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big", signed=True))


def _encode_oid(oid: str) -> bytes:
    arcs = [int(x) for x in oid.strip(".").split(".")]
    if len(arcs) < 2:
        raise ValueError(f"OID needs two arcs at least: {oid!r}")
    out = bytearray()
    for arc in [40 * arcs[0] + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        rest = arc >> 7
        while rest:
            chunk.append(0x80 | (rest & 0x7F))
            rest >>= 7
        out += bytes(reversed(chunk))
    return _tlv(_OID, bytes(out))


def encode_request(
    community: str, request_id: int, oids: Sequence[str], *, pdu: int = GET_REQUEST
) -> bytes:
    """An SNMPv2c GetRequest (or GetNextRequest with ``pdu=GET_NEXT_REQUEST``) message."""
    varbinds = b"".join(_tlv(_SEQUENCE, _encode_oid(oid) + _tlv(_NULL, b"")) for oid in oids)
    body = (
        _encode_integer(request_id)
        + _encode_integer(0)
        + _encode_integer(0)
        + _tlv(_SEQUENCE, varbinds)
    )
    return _tlv(
        _SEQUENCE,
        _encode_integer(_VERSION_2C) + _tlv(_OCTETS, community.encode()) + _tlv(pdu, body),
    )


def _read_tlv(data: bytes, pos: int) -> tuple[int, bytes, int]:
    tag = data[pos]
    length = data[pos + 1]
    pos += 2
    if length & 0x80:
        size = length & 0x7F
        length = int.from_bytes(data[pos : pos + size], "big")
        pos += size
    end = pos + length
    if end > len(data):
        raise ValueError("truncated BER value")
    return tag, data[pos:end], end


def _decode_oid(raw: bytes) -> str:
    arcs: list[int] = []
    value = 0
    for byte in raw:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(str(a) for a in [first, arcs[0] - 40 * first, *arcs[1:]])


def _decode_value(tag: int, raw: bytes) -> SnmpValue:
    if tag == _INTEGER:
        return int.from_bytes(raw, "big", signed=True)
    if tag in (_COUNTER32, _GAUGE32, _TIMETICKS, _COUNTER64):
        return int.from_bytes(raw, "big", signed=False)
    if tag == _OID:
        return _decode_oid(raw)
    if tag == _IPADDRESS:
        return ".".join(str(b) for b in raw)
    if tag in (_NULL, _NO_SUCH_OBJECT, _NO_SUCH_INSTANCE, _END_OF_MIB_VIEW):
        return None
    return raw  # OCTET STRING, Opaque


def _children(raw: bytes) -> list[tuple[int, bytes]]:
    items = []
    pos = 0
    while pos < len(raw):
        tag, value, pos = _read_tlv(raw, pos)
        items.append((tag, value))
    return items


def decode_message(data: bytes) -> tuple[str, int, SnmpResponse]:
    """Decode an SNMPv1/v2c message into (community, PDU tag, PDU)."""
    tag, message, _ = _read_tlv(data, 0)
    if tag != _SEQUENCE:
        raise ValueError("not an SNMP message")
    (_, _version), (_, community), (pdu_tag, pdu) = _children(message)[:3]
    (_, rid), (_, status), (_, index), (_, raw_varbinds) = _children(pdu)[:4]
    varbinds = []
    for _, raw_varbind in _children(raw_varbinds):
        (_, raw_oid), (value_tag, raw_value) = _children(raw_varbind)[:2]
        varbinds.append(
            Varbind(_decode_oid(raw_oid), value_tag, _decode_value(value_tag, raw_value))
        )
    response = SnmpResponse(
        request_id=int.from_bytes(rid, "big", signed=True),
        error_status=int.from_bytes(status, "big"),
        error_index=int.from_bytes(index, "big"),
        varbinds=tuple(varbinds),
    )
    return community.decode("latin-1"), pdu_tag, response


_request_ids = itertools.count(0x4B50_0000)


class SnmpUdpClient:
    """A bare SNMPv2c client on one UDP socket, optionally inside a network namespace."""

    def __init__(self, host: str, port: int, *, netns: str | None = None) -> None:
        self.address = (host, port)

        def make() -> socket.socket:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            sock.setblocking(False)
            return sock

        self._sock = _in_netns(netns, make)

    def __enter__(self) -> SnmpUdpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._sock.close()

    def send(
        self,
        community: str,
        oids: Sequence[str],
        *,
        request_id: int | None = None,
        pdu: int = GET_REQUEST,
    ) -> int:
        """Send one request; returns its request id."""
        rid = next(_request_ids) if request_id is None else request_id
        self._sock.sendto(encode_request(community, rid, oids, pdu=pdu), self.address)
        return rid

    def receive(self, timeout: float) -> SnmpResponse | None:
        """The next Response PDU within ``timeout`` seconds, or ``None``."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([self._sock], [], [], remaining)
            if not ready:
                return None
            try:
                data = self._sock.recv(65535)
            except (BlockingIOError, ConnectionRefusedError):
                continue  # ICMP port unreachable surfaces as a refused recv on Linux
            with contextlib.suppress(ValueError, IndexError):
                _, pdu_tag, response = decode_message(data)
                if pdu_tag == RESPONSE:
                    return response

    def get(
        self, community: str, oids: Sequence[str], *, timeout: float = 1.0, pdu: int = GET_REQUEST
    ) -> SnmpResponse | None:
        """One request and its response (``None`` after ``timeout`` seconds)."""
        rid = self.send(community, oids, pdu=pdu)
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            response = self.receive(remaining)
            if response is not None and response.request_id == rid:
                return response
        return None


def snmp_get(
    host: str,
    port: int,
    community: str,
    oids: Sequence[str],
    *,
    timeout: float = 1.0,
    netns: str | None = None,
    pdu: int = GET_REQUEST,
) -> SnmpResponse | None:
    """One SNMPv2c GET (or GETNEXT) with a fresh socket; ``None`` if nothing answers."""
    with SnmpUdpClient(host, port, netns=netns) as client:
        return client.get(community, oids, timeout=timeout, pdu=pdu)


# ----------------------------------------------------------------- .snmprec files

Records = dict[str, tuple[str, str]]


def _oid_key(oid: str) -> tuple[int, ...]:
    return tuple(int(part) for part in oid.strip(".").split("."))


def parse_snmprec(text: str) -> Records:
    """``OID -> (tag, value)`` of a recording, in file order."""
    records: Records = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("|", 2)
        if len(parts) != 3:
            raise ValueError(f"line {number}: not OID|TAG|VALUE: {line!r}")
        oid, tag, value = parts
        records[oid.strip(".")] = (tag, value)
    return records


def format_snmprec(records: Mapping[str, tuple[str, object]]) -> str:
    """Recording text with the lines sorted in OID order, as snmpsim requires."""
    for oid, (tag, value) in records.items():
        if "\n" in str(value) or "|" in tag:
            raise ValueError(f"unrepresentable record {oid}|{tag}|{value!r}")
    ordered = sorted(records.items(), key=lambda kv: _oid_key(kv[0]))
    return "".join(f"{oid}|{tag}|{value}\n" for oid, (tag, value) in ordered)


def _numeric_specs(records: Records) -> dict[str, str]:
    return {oid: f"{tag}|{value}" for oid, (tag, value) in records.items() if ":" in tag}


def copy_recordings(dest: Path, names: Iterable[str] | None = None) -> Path:
    """Copy recordings from tests/snmp_data (all, or ``names``) into ``dest``; returns it."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in RECORDINGS if names is None else names:
        shutil.copyfile(SNMP_DATA_DIR / f"{name}.snmprec", dest / f"{name}.snmprec")
    return dest


# ----------------------------------------------------------------- processes


class _Responder:
    """Shared lifecycle: start a program, wait for a real SNMP answer, stop it by PID."""

    _kind = "SNMP responder"

    def __init__(
        self, *, port: int | None, netns: str | None, host: str, startup_timeout: float
    ) -> None:
        self._requested_port = port
        self._port = port
        self._netns = netns
        self._host = host
        self._startup_timeout = startup_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._closed = False

    # -- to provide
    def _argv(self) -> list[str]:
        raise NotImplementedError

    def _env(self) -> dict[str, str]:
        raise NotImplementedError

    def _probe_community(self) -> str:
        raise NotImplementedError

    @property
    def log_path(self) -> Path:
        raise NotImplementedError

    # -- properties
    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        if self._port is None:
            raise SnmpDaemonError(f"{self._kind} is not started")
        return self._port

    @property
    def address(self) -> tuple[str, int]:
        """Where clients send requests: ``(host, port)``."""
        return (self._probe_host(), self.port)

    @property
    def netns(self) -> str | None:
        return self._netns

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _probe_host(self) -> str:
        return "127.0.0.1" if self._host == "0.0.0.0" else self._host

    # -- lifecycle
    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        """Start the program and return once it answers an SNMP GET."""
        if self._closed:
            raise SnmpDaemonError(f"{self._kind} already closed")
        if self.running:
            raise SnmpDaemonError(f"{self._kind} already running (pid {self.pid})")
        attempts = 1 if self._requested_port is not None else 3
        for attempt in range(attempts):
            if self._requested_port is None:
                self._port = _free_udp_port(self._host, self._netns)
            try:
                self._launch()
                return
            except SnmpDaemonError as exc:
                # Another process may have taken an automatically chosen port meanwhile.
                if attempt + 1 == attempts or "in use" not in str(exc).lower():
                    raise

    def _launch(self) -> None:
        argv = self._argv()
        if self._netns is not None:
            argv = ["ip", "netns", "exec", self._netns, *argv]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,  # kept open: EOF tells snmpsim's launcher we are gone
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env(),
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self._startup_timeout
        community = self._probe_community()
        with SnmpUdpClient(self._probe_host(), self.port, netns=self._netns) as client:
            while True:
                if self._proc.poll() is not None:
                    raise SnmpDaemonError(
                        f"{self._kind} exited with {self._proc.returncode} before answering: "
                        f"{self.log_tail()}"
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise SnmpDaemonError(
                        f"{self._kind} did not answer on {self._probe_host()}:{self.port} "
                        f"within {self._startup_timeout}s: {self.log_tail()}"
                    )
                if client.get(community, [SYS_UPTIME], timeout=min(0.2, remaining)):
                    return

    def log_tail(self, lines: int = 15) -> str:
        """The last lines the program wrote (stdout and stderr)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no output)"
        return " | ".join(text.strip().splitlines()[-lines:]) or "(no output)"

    def stop(self) -> None:
        """Stop the program (by PID); it can be started again."""
        if self._proc is not None:
            terminate(self._proc, grace=5.0)
            self._proc = None

    def restart(self) -> None:
        """Stop and start again on the same port."""
        self.stop()
        port = self._port
        saved = self._requested_port
        self._requested_port = port
        try:
            self.start()
        finally:
            self._requested_port = saved

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.stop()


_TMPDIR_PREFIX = "kipu-snmpsim-"
_TMPDIR_RE = re.compile(r"^kipu-snmpsim-(\d+)-")


def _remove_stale_tmpdirs() -> None:
    """Remove folders of SnmpSim instances whose test process no longer exists."""
    with contextlib.suppress(OSError):
        for entry in Path(tempfile.gettempdir()).iterdir():
            match = _TMPDIR_RE.match(entry.name)
            if match is None or not entry.is_dir():
                continue
            try:
                os.kill(int(match.group(1)), 0)
            except ProcessLookupError:
                shutil.rmtree(entry, ignore_errors=True)
            except PermissionError:
                pass


# Runs snmpsim in this interpreter; exits when our end of its stdin closes, so a test
# process that dies without cleaning up does not leave a responder behind.
_SNMPSIM_LAUNCHER = """\
import os, sys, threading
def _watch_stdin():
    try:
        while sys.stdin.buffer.read(4096):
            pass
    finally:
        os._exit(0)
threading.Thread(target=_watch_stdin, daemon=True).start()
sys.argv[0] = "snmpsim-command-responder"
from snmpsim.commands.responder import main
sys.exit(main())
"""


class SnmpSim(_Responder):
    """snmpsim serving ``data_dir/*.snmprec`` on ``host:port`` (UDP); a context manager.

    ``port=None`` picks a free port. ``netns`` runs it inside that network namespace
    (``ip netns exec``); then ``host`` is usually one of the namespace's addresses, e.g.
    ``Testbed.target_addresses[0]``. ``v3_user`` (same keys as :data:`DEFAULT_V3_USER`)
    adds an SNMPv3 user; a v3 request selects the recording with its context name.
    """

    _kind = "snmpsim"

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        netns: str | None = None,
        *,
        host: str = "127.0.0.1",
        v3_user: Mapping[str, str] | None = None,
        log_level: str = "error",
        startup_timeout: float = 30.0,
    ) -> None:
        super().__init__(port=port, netns=netns, host=host, startup_timeout=startup_timeout)
        self._data_dir = Path(data_dir).resolve()
        if not self._data_dir.is_dir():
            raise SnmpDaemonError(f"no such recordings folder: {self._data_dir}")
        self._v3_user = dict(v3_user) if v3_user is not None else None
        self._log_level = log_level
        self._tmpdir: Path | None = None  # cache and log, made at the first start
        self._mtimes: dict[str, int] = {}
        #: Numeric-variation lines snmpsim may have cached since its start, per community.
        self._served_numeric: dict[str, dict[str, str]] = {}

    @property
    def data_dir(self) -> Path:
        return self._data_dir

    @property
    def workdir(self) -> Path:
        """Private folder of this responder: index cache and log (removed by close())."""
        if self._tmpdir is None:
            _remove_stale_tmpdirs()
            self._tmpdir = Path(tempfile.mkdtemp(prefix=f"{_TMPDIR_PREFIX}{os.getpid()}-"))
        return self._tmpdir

    @property
    def log_path(self) -> Path:
        return self.workdir / "snmpsim.log"

    def communities(self) -> list[str]:
        """The community names served (from the file names in ``data_dir``)."""
        return sorted(p.name.removesuffix(".snmprec") for p in self._data_dir.glob("*.snmprec"))

    def _probe_community(self) -> str:
        names = self.communities()
        if not names:
            raise SnmpDaemonError(f"no .snmprec files in {self._data_dir}")
        return names[0]

    def _argv(self) -> list[str]:
        argv = [
            sys.executable,
            "-c",
            _SNMPSIM_LAUNCHER,
            f"--data-dir={self._data_dir}",
            f"--agent-udpv4-endpoint={self._host}:{self.port}",
            f"--cache-dir={self.workdir / 'cache'}",
            "--force-index-rebuild",
            f"--log-level={self._log_level}",
        ]
        if self._v3_user is not None:
            user = self._v3_user
            argv += [
                f"--v3-user={user['user']}",
                f"--v3-auth-key={user['auth_key']}",
                f"--v3-auth-proto={_SNMPSIM_AUTH[user['auth_protocol'].upper()]}",
            ]
            if user.get("priv_protocol"):
                argv += [
                    f"--v3-priv-key={user['priv_key']}",
                    f"--v3-priv-proto={_SNMPSIM_PRIV[user['priv_protocol'].upper()]}",
                ]
        return argv

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["SNMPSIM_ALLOW_ROOT"] = "true"  # snmpsim refuses to run as root otherwise
        env["PYTHONWARNINGS"] = "ignore"  # pysnmp/pysmi deprecation noise, never errors
        return env

    def _launch(self) -> None:
        self._served_numeric = {
            name: _numeric_specs(self.read_recording(name)) for name in self.communities()
        }
        super()._launch()

    # -- changing what devices answer

    def recording_path(self, community: str) -> Path:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", community):
            raise ValueError(f"unusable community/file name: {community!r}")
        return self._data_dir / f"{community}.snmprec"

    def read_recording(self, community: str) -> Records:
        """``OID -> (tag, value)`` of ``community``'s recording."""
        return parse_snmprec(self.recording_path(community).read_text(encoding="iso-8859-1"))

    def write_recording(
        self, community: str, recording: str | Mapping[str, tuple[str, object]]
    ) -> None:
        """Replace (or create) ``community``'s recording; served from the next request on.

        Restarts the responder (same port) when it cannot pick the change up by itself:
        a new community, or a changed ``TAG:numeric`` line.
        """
        text = recording if isinstance(recording, str) else format_snmprec(recording)
        records = parse_snmprec(text)
        path = self.recording_path(community)
        is_new = not path.exists()
        served = self._served_numeric.setdefault(community, {})
        new_numeric = _numeric_specs(records)
        restart = is_new or any(served.get(oid, spec) != spec for oid, spec in new_numeric.items())

        partial = path.with_name(f".{path.name}.partial")
        partial.write_text(text, encoding="iso-8859-1")
        # snmpsim compares whole-second mtimes: make every version's mtime distinct and no
        # older than its index, so the change is seen and the index rebuilt.
        previous = self._mtimes.get(community, 0 if is_new else int(path.stat().st_mtime))
        mtime = max(int(time.time()) + 1, previous + 1)
        os.utime(partial, (mtime, mtime))
        os.replace(partial, path)
        self._mtimes[community] = mtime

        if restart and self.running:
            self.restart()
        else:
            served.update(new_numeric)

    def set_values(self, community: str, values: Mapping[str, tuple[str, object] | None]) -> None:
        """Set (``oid: (tag, value)``) or remove (``oid: None``) lines of a recording.

        E.g. ``{"1.3.6.1.2.1.1.3.0": ("67", 1500)}`` makes the device look rebooted.
        """
        records: dict[str, tuple[str, object]] = dict(self.read_recording(community))
        for oid, record in values.items():
            key = oid.strip(".")
            if record is None:
                records.pop(key, None)
            else:
                records[key] = record
        self.write_recording(community, records)

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self._tmpdir is not None:
                shutil.rmtree(self._tmpdir, ignore_errors=True)


class Snmpd(_Responder):
    """Debian's snmpd with its own configuration and state under ``workdir``.

    Answers SNMPv2c with ``community`` and, when ``v3_user`` is given (keys as in
    :data:`DEFAULT_V3_USER`), SNMPv3 for that user at the security level its keys allow
    (authPriv with both keys). ``extra_config`` is appended to snmpd.conf. Run as
    ``snmpd -f -Lo -C -c CONF -p PIDFILE udp:HOST:PORT`` with ``MIBS=""``.
    """

    _kind = "snmpd"

    def __init__(
        self,
        workdir: Path,
        community: str = "public",
        v3_user: Mapping[str, str] | None = None,
        extra_config: str = "",
        *,
        port: int | None = None,
        netns: str | None = None,
        host: str = "127.0.0.1",
        startup_timeout: float = 10.0,
    ) -> None:
        super().__init__(port=port, netns=netns, host=host, startup_timeout=startup_timeout)
        self._workdir = Path(workdir).resolve()
        self._community = community
        self._v3_user = dict(v3_user) if v3_user is not None else None
        self._extra_config = extra_config
        if self._v3_user is not None:
            _check_v3_user(self._v3_user)

    @property
    def community(self) -> str:
        return self._community

    @property
    def v3_user(self) -> Mapping[str, str] | None:
        return self._v3_user

    @property
    def workdir(self) -> Path:
        return self._workdir

    @property
    def config_path(self) -> Path:
        return self._workdir / "snmpd.conf"

    @property
    def log_path(self) -> Path:
        return self._workdir / "snmpd.log"

    def _probe_community(self) -> str:
        return self._community

    def config_text(self) -> str:
        lines = [
            "# snmpd.conf written by tests/support/snmp.py",
            f"rocommunity {_quote(self._community)}",
            "sysLocation kipu test bed",
            "sysContact noc@example.pe",
        ]
        user = self._v3_user
        if user is not None:
            create = f"createUser {user['user']} {user['auth_protocol'].upper()}"
            create += f" {_quote(user['auth_key'])}"
            level = "auth"
            if user.get("priv_protocol"):
                create += f" {user['priv_protocol'].upper()} {_quote(user['priv_key'])}"
                level = "priv"
            lines += [create, f"rouser {user['user']} {level}"]
        if self._extra_config:
            lines.append(self._extra_config)
        return "\n".join(lines) + "\n"

    def _argv(self) -> list[str]:
        binary = _snmpd_binary()
        if binary is None:
            raise SnmpDaemonError("snmpd is not installed (apt-get install snmpd)")
        self._workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.config_text())
        return [
            binary, "-f", "-Lo", "-C", "-c", str(self.config_path),
            "-p", str(self._workdir / "snmpd.pid"),
            f"udp:{self._host}:{self.port}",
        ]  # fmt: skip

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["MIBS"] = ""  # Debian ships no MIB files: numeric OIDs only, no load errors
        env["SNMP_PERSISTENT_DIR"] = str(self._workdir / "persist")
        env["SNMPCONFPATH"] = str(self._workdir)
        return env


def _quote(text: str) -> str:
    if not text or any(c in text for c in " \t\"'#\\\n"):
        if '"' in text or "\n" in text or "\\" in text:
            raise ValueError(f"cannot be written into snmpd.conf: {text!r}")
        return f'"{text}"'
    return text


def _check_v3_user(user: Mapping[str, str]) -> None:
    missing = {"user", "auth_protocol", "auth_key"} - set(user)
    if missing:
        raise ValueError(f"v3_user lacks {sorted(missing)}")
    if user["auth_protocol"].upper() not in _SNMPD_AUTH:
        raise ValueError(f"auth_protocol must be one of {sorted(_SNMPD_AUTH)}")
    if len(user["auth_key"]) < 8:
        raise ValueError("auth_key needs 8 characters at least")
    if user.get("priv_protocol"):
        if user["priv_protocol"].upper() not in _SNMPD_PRIV:
            raise ValueError(f"priv_protocol must be one of {sorted(_SNMPD_PRIV)}")
        if len(user.get("priv_key", "")) < 8:
            raise ValueError("priv_key needs 8 characters at least")
