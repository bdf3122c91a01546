"""Real-ICMP test beds built from Linux network namespaces (stdlib only, needs root).

A :class:`Testbed` creates two fresh namespaces joined by one veth pair::

    site namespace (agent runs here)          far namespace (responder runs here)
    kv<n>s  10.X.Y.1/24  <--- veth --->  kv<n>f  10.X.Y.2 ... 10.X.Y.(1+targets) /24

Nothing is added to the root namespace: the veth ends are created directly inside the
namespaces, and neither namespace has a default route, so test traffic can only reach the
addresses the test bed owns. The far namespace ignores echo requests in the kernel
(``net.ipv4.icmp_echo_ignore_all=1``) and runs ``responder.py`` instead, which answers
with a configurable delay, jitter, loss and outage per target address.

Code that must live in a namespace (sockets, servers) is created with :func:`call_in_netns`;
programs are started with :meth:`Testbed.exec_site` / :meth:`Testbed.exec_far` (``ip netns
exec``). UDP loss towards a port of the far namespace (an SNMP device that drops requests, or
answers none) is made with nftables inside that namespace: :meth:`Testbed.udp_loss`,
:meth:`Testbed.udp_drop_all`, :meth:`Testbed.udp_loss_clear`.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import functools
import itertools
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

__all__ = [
    "RESPONDER_SCRIPT",
    "HttpResponse",
    "ResponderError",
    "ResponderStats",
    "Testbed",
    "TestbedError",
    "call_in_netns",
    "cleanup_stale",
    "http_get",
    "http_post",
    "netns_unavailable_reason",
]

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = Path("/run/netns")
RESPONDER_SCRIPT = Path(__file__).resolve().with_name("responder.py")
NAME_PREFIX = "kipu-"
_NAME_RE = re.compile(r"^kipu-(\d+)-")
TMPDIR_PREFIX = "kipu-testbed-"
_TMPDIR_RE = re.compile(r"^kipu-testbed-(\d+)-")
_NFT_TABLE = "kipu_udp_loss"

HttpResponse = tuple[int, dict[str, str], bytes]


class TestbedError(RuntimeError):
    """Setting up or driving a test bed failed."""

    __test__ = False  # not a pytest test class


class ResponderError(TestbedError):
    """The ICMP responder rejected a control command."""


# ----------------------------------------------------------------------------- setns


@functools.cache
def _libc() -> ctypes.CDLL:
    name = ctypes.util.find_library("c") or "libc.so.6"
    return ctypes.CDLL(name, use_errno=True)


def _enter_netns(name: str) -> None:
    """Move the calling thread into network namespace ``name``."""
    fd = os.open(NETNS_RUN_DIR / name, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc().setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({name}): {os.strerror(err)}")
    finally:
        os.close(fd)


def call_in_netns(name: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` in network namespace ``name`` and return its result (or raise its error).

    ``fn`` runs in a new short-lived thread that enters the namespace first, so the calling
    thread and the rest of the process are unaffected. Sockets created by ``fn`` belong to the
    namespace for their whole life and can be used from any thread afterwards.
    """
    result: list[T] = []
    error: list[BaseException] = []

    def runner() -> None:
        try:
            _enter_netns(name)
            result.append(fn())
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=runner, name=f"netns-{name}", daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


# ------------------------------------------------------------------------------ HTTP


def _http_request(
    ns: str,
    method: str,
    address: tuple[str, int],
    path: str,
    *,
    body: bytes | None,
    timeout: float,
    headers: Mapping[str, str] | None,
) -> HttpResponse:
    host, port = address
    deadline = time.monotonic() + timeout
    sock = call_in_netns(ns, lambda: socket.create_connection((host, port), timeout=timeout))
    with sock:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}"]
        extra = dict(headers or {})
        lowered = {key.lower() for key in extra}
        if "connection" not in lowered:
            extra["Connection"] = "close"
        if body is not None and "content-length" not in lowered:
            extra["Content-Length"] = str(len(body))
        lines += [f"{key}: {value}" for key, value in extra.items()]
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        sock.sendall(request)
        chunks: list[bytes] = []
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{method} http://{host}:{port}{path} in {ns}: timed out")
            sock.settimeout(remaining)
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    return _parse_response(b"".join(chunks), method)


def _parse_response(raw: bytes, method: str) -> HttpResponse:
    head, sep, rest = raw.partition(b"\r\n\r\n")
    if not sep:
        raise TestbedError(f"incomplete HTTP response: {raw[:200]!r}")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise TestbedError(f"bad HTTP status line: {status_line!r}")
    status = int(parts[1])
    headers: dict[str, str] = {}
    for line in header_lines:
        key, _, value = line.partition(":")
        key = key.strip().lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return status, headers, b""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return status, headers, _dechunk(rest)
    if "content-length" in headers:
        length = int(headers["content-length"])
        if len(rest) < length:
            raise TestbedError(f"truncated HTTP body: {len(rest)} of {length} bytes")
        return status, headers, rest[:length]
    return status, headers, rest


def _dechunk(data: bytes) -> bytes:
    body = bytearray()
    pos = 0
    while True:
        end = data.find(b"\r\n", pos)
        if end < 0:
            raise TestbedError("truncated chunked HTTP body")
        size = int(data[pos:end].split(b";", 1)[0].strip(), 16)
        pos = end + 2
        if size == 0:
            return bytes(body)
        if pos + size > len(data):
            raise TestbedError("truncated chunked HTTP body")
        body += data[pos : pos + size]
        pos += size + 2


def http_get(
    ns: str,
    host: str,
    port: int,
    path: str,
    *,
    timeout: float = 5,
    headers: Mapping[str, str] | None = None,
) -> HttpResponse:
    """HTTP/1.1 GET (``Connection: close``) from inside namespace ``ns``.

    Returns ``(status, headers, body)``; header names are lower-cased, repeated headers are
    joined with ``", "``. Chunked and ``Content-Length`` bodies are decoded.
    """
    return _http_request(ns, "GET", (host, port), path, body=None, timeout=timeout, headers=headers)


def http_post(
    ns: str,
    host: str,
    port: int,
    path: str,
    body: bytes | str = b"",
    *,
    timeout: float = 5,
    headers: Mapping[str, str] | None = None,
    content_type: str = "application/json",
) -> HttpResponse:
    """HTTP/1.1 POST from inside namespace ``ns``; like :func:`http_get` otherwise."""
    payload = body.encode() if isinstance(body, str) else body
    extra = dict(headers or {})
    if not any(key.lower() == "content-type" for key in extra):
        extra["Content-Type"] = content_type
    return _http_request(
        ns, "POST", (host, port), path, body=payload, timeout=timeout, headers=extra
    )


# ----------------------------------------------------------------------- namespaces


def run(argv: Sequence[str], *, check: bool = True, stdin: str | None = None) -> str:
    proc = subprocess.run(
        list(argv), input=stdin, capture_output=True, text=True, check=False, timeout=30
    )
    if check and proc.returncode != 0:
        raise TestbedError(
            f"command failed ({proc.returncode}): {' '.join(argv)}: {proc.stderr.strip()}"
        )
    return proc.stdout


def sysctl(ns: str, key: str, value: str) -> None:
    """Set ``key`` inside namespace ``ns`` (sysctls under net. are per namespace)."""
    path = Path("/proc/sys") / key.replace(".", "/")

    call_in_netns(ns, lambda: path.write_text(value + "\n"))
    current = call_in_netns(ns, path.read_text).split()
    if current != value.split():
        raise TestbedError(f"{ns}: {key} is {current}, wanted {value!r}")


def list_netns() -> list[str]:
    """Names of the namespaces in /run/netns."""
    try:
        return sorted(entry.name for entry in NETNS_RUN_DIR.iterdir())
    except FileNotFoundError:
        return []


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _delete_netns(name: str) -> None:
    if name in list_netns():
        run(["ip", "netns", "delete", name])


def cleanup_stale() -> list[str]:
    """Delete namespaces ``kipu-<pid>-*`` left behind by processes that no longer exist.

    Their temp dirs (``$TMPDIR/kipu-testbed-<pid>-*``) go too. Returns the deleted namespaces.
    """
    removed = []
    for name in list_netns():
        match = _NAME_RE.match(name)
        if match is None or _pid_alive(int(match.group(1))):
            continue
        with contextlib.suppress(TestbedError):
            _delete_netns(name)
            removed.append(name)
    with contextlib.suppress(OSError):
        for entry in Path(tempfile.gettempdir()).iterdir():
            match = _TMPDIR_RE.match(entry.name)
            if match is not None and entry.is_dir() and not _pid_alive(int(match.group(1))):
                shutil.rmtree(entry, ignore_errors=True)
    return removed


@functools.cache
def netns_unavailable_reason() -> str | None:
    """Why test beds cannot be built here, or ``None`` when they can (probed once)."""
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "network namespace tests need root"
    if shutil.which("ip") is None:
        return "`ip` (iproute2) is not installed"
    probe = f"{NAME_PREFIX}{os.getpid()}-probe"
    try:
        run(["ip", "netns", "add", probe])
    except (TestbedError, OSError, subprocess.SubprocessError) as exc:
        return f"`ip netns add` does not work here: {exc}"
    try:
        call_in_netns(probe, lambda: None)
    except OSError as exc:
        return f"setns() does not work here: {exc}"
    finally:
        with contextlib.suppress(TestbedError, OSError, subprocess.SubprocessError):
            run(["ip", "netns", "delete", probe])
    return None


# -------------------------------------------------------------------------- testbed


@dataclass(frozen=True)
class ResponderStats:
    """Counters of the responder, keyed by the pinged address."""

    received: dict[str, int]
    replied: dict[str, int]
    #: Largest lateness (seconds) of a reply's sendto() after its due time since reset.
    late_max: float = 0.0


_counter = itertools.count()
_counter_lock = threading.Lock()
_open_testbeds: weakref.WeakSet[Testbed] = weakref.WeakSet()


def _next_index() -> int:
    with _counter_lock:
        existing = set(list_netns())
        while True:
            n = next(_counter)
            if f"{NAME_PREFIX}{os.getpid()}-{n}-site" not in existing and (
                f"{NAME_PREFIX}{os.getpid()}-{n}-far" not in existing
            ):
                return n


def terminate(proc: subprocess.Popen[Any], grace: float) -> None:
    """Stop one process we started, by PID: SIGTERM, then SIGKILL after ``grace`` seconds."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(grace)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def start_responder(
    ns: str, control: Path, stderr_path: Path, *, seed: int = 0, timeout: float = 10.0
) -> subprocess.Popen[bytes]:
    """Start the ICMP echo responder in ``ns``, controlled at ``control``; wait for ready.

    Its stdin stays open (a pipe) while it should run: if this process dies, the responder
    sees EOF and exits by itself.
    """
    with open(stderr_path, "wb") as stderr:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, str(RESPONDER_SCRIPT),
             "--control", str(control), "--seed", str(seed), "--exit-on-stdin-eof"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )  # fmt: skip
    try:
        _wait_ready(proc, stderr_path, timeout)
    except BaseException:
        terminate(proc, grace=3.0)
        raise
    return proc


def _wait_ready(proc: subprocess.Popen[bytes], stderr_path: Path, timeout: float) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    line = b""
    while not line.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TestbedError(f"responder not ready after {timeout}s")
        ready, _, _ = select.select([proc.stdout], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(proc.stdout.fileno(), 1)
        if not chunk:
            proc.wait(1)
            raise TestbedError(
                f"responder exited with {proc.returncode}: "
                f"{stderr_path.read_text(errors='replace').strip()}"
            )
        line += chunk
    if line.strip() != b"ready":
        raise TestbedError(f"unexpected responder output: {line!r}")


def responder_command(
    control: Path, request: Mapping[str, Any], timeout: float = 5.0
) -> dict[str, Any]:
    """Send one control command to a responder and return its (successful) answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(control))
        sock.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                raise ResponderError(f"responder closed the connection: {data!r}")
            data += chunk
    answer = json.loads(data)
    if not isinstance(answer, dict):
        raise ResponderError(f"malformed answer: {answer!r}")
    if not answer.get("ok"):
        raise ResponderError(str(answer.get("error", answer)))
    return answer


class Testbed:
    """Two namespaces, one veth pair and an ICMP responder; use as a context manager.

    ``targets`` is the number of far addresses; ``ping_group_range`` is written to the site
    namespace's ``net.ipv4.ping_group_range`` (``None`` keeps the kernel default, under which
    unprivileged ICMP sockets are refused); ``seed`` seeds the responder's random generator.
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        targets: int = 1,
        ping_group_range: str | None = "0 2147483647",
        seed: int = 0,
        startup_timeout: float = 10.0,
    ) -> None:
        if not 1 <= targets <= 250:
            raise ValueError("targets must be between 1 and 250")
        self._targets = targets
        self._ping_group_range = ping_group_range
        self._seed = seed
        self._startup_timeout = startup_timeout
        self._index = -1
        self._site_ns = ""
        self._far_ns = ""
        self._prefix = ""
        self._tmpdir: Path | None = None
        self._responder: subprocess.Popen[bytes] | None = None
        self._children: list[subprocess.Popen[Any]] = []
        self._created: list[str] = []
        self._started = False
        self._closed = False
        #: UDP destination port -> drop probability (1.0: everything) in the far namespace.
        self._udp_drops: dict[int, float] = {}

    # -- properties

    @property
    def site_ns(self) -> str:
        return self._site_ns

    @property
    def far_ns(self) -> str:
        return self._far_ns

    @property
    def site_address(self) -> str:
        return f"{self._prefix}.1"

    @property
    def target_addresses(self) -> list[str]:
        return [f"{self._prefix}.{2 + i}" for i in range(self._targets)]

    @property
    def prefix_length(self) -> int:
        return 24

    @property
    def site_interface(self) -> str:
        return f"kv{self._index}s"

    @property
    def far_interface(self) -> str:
        return f"kv{self._index}f"

    @property
    def control_path(self) -> Path:
        if self._tmpdir is None:
            raise TestbedError("test bed is not started")
        return self._tmpdir / "ctl.sock"

    @property
    def responder_pid(self) -> int | None:
        return None if self._responder is None else self._responder.pid

    # -- lifecycle

    def __enter__(self) -> Testbed:
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
        """Build the namespaces and start the responder; cleans up everything on failure."""
        if self._started:
            raise TestbedError("test bed already started")
        self._started = True
        _open_testbeds.add(self)
        try:
            cleanup_stale()
            self._setup()
        except BaseException:
            self.close()
            raise

    def _setup(self) -> None:
        pid = os.getpid()
        self._index = _next_index()
        n = self._index
        self._site_ns = f"{NAME_PREFIX}{pid}-{n}-site"
        self._far_ns = f"{NAME_PREFIX}{pid}-{n}-far"
        self._prefix = f"10.{200 + pid % 50}.{n % 250}"
        self._tmpdir = Path(tempfile.mkdtemp(prefix=f"{TMPDIR_PREFIX}{pid}-"))

        site, far = self._site_ns, self._far_ns
        for name in (site, far):
            run(["ip", "netns", "add", name])
            self._created.append(name)
        site_mac, far_mac = "02:6b:69:70:75:01", "02:6b:69:70:75:02"
        # Both veth ends are created directly inside the namespaces: nothing in the root ns.
        run(
            ["ip", "link", "add", self.site_interface, "netns", site, "address", site_mac,
             "type", "veth", "peer", "name", self.far_interface, "netns", far,
             "address", far_mac]
        )  # fmt: skip
        plen = self.prefix_length
        site_cmds = [
            "link set lo up",
            f"addr add {self.site_address}/{plen} dev {self.site_interface}",
            f"link set {self.site_interface} up",
            *(
                f"neigh replace {addr} lladdr {far_mac} dev {self.site_interface} nud permanent"
                for addr in self.target_addresses
            ),
        ]
        far_cmds = [
            "link set lo up",
            *(f"addr add {addr}/{plen} dev {self.far_interface}" for addr in self.target_addresses),
            f"link set {self.far_interface} up",
            f"neigh replace {self.site_address} lladdr {site_mac} dev {self.far_interface}"
            " nud permanent",
        ]
        run(["ip", "-n", site, "-batch", "-"], stdin="\n".join(site_cmds) + "\n")
        run(["ip", "-n", far, "-batch", "-"], stdin="\n".join(far_cmds) + "\n")

        sysctl(far, "net.ipv4.icmp_echo_ignore_all", "1")
        if self._ping_group_range is not None:
            sysctl(site, "net.ipv4.ping_group_range", self._ping_group_range)
        self._check_isolation()
        self._start_responder()

    def _check_isolation(self) -> None:
        """Neither namespace may route anywhere else; the root namespace must be untouched."""
        for ns in (self._site_ns, self._far_ns):
            routes = run(["ip", "-n", ns, "-4", "route", "show", "default"]).strip()
            if routes:
                raise TestbedError(f"{ns} unexpectedly has a default route: {routes}")
        root = run(["ip", "-o", "addr", "show"])
        for marker in (self.site_interface, self.far_interface, f" {self._prefix}."):
            if marker in root:
                raise TestbedError(f"test bed leaked {marker.strip()!r} into the root namespace")

    def _start_responder(self) -> None:
        assert self._tmpdir is not None
        self._responder = start_responder(
            self._far_ns,
            self.control_path,
            self._tmpdir / "responder.stderr",
            seed=self._seed,
            timeout=self._startup_timeout,
        )

    def close(self) -> None:
        """Stop every process started here and delete the namespaces and the temp dir."""
        if self._closed:
            return
        self._closed = True
        _open_testbeds.discard(self)
        errors: list[str] = []
        try:
            for child in [*self._children, *([self._responder] if self._responder else [])]:
                try:
                    terminate(child, grace=3.0)
                except Exception as exc:
                    errors.append(f"stopping pid {child.pid}: {exc}")
        finally:
            for name in self._created:
                try:
                    _delete_netns(name)
                except Exception as exc:
                    errors.append(f"deleting {name}: {exc}")
            if self._tmpdir is not None:
                shutil.rmtree(self._tmpdir, ignore_errors=True)
        if errors:
            raise TestbedError("test bed cleanup failed: " + "; ".join(errors))

    # -- responder control

    def command(self, request: Mapping[str, Any], timeout: float = 5.0) -> dict[str, Any]:
        """Send one control command to the responder and return its (successful) answer."""
        return responder_command(self.control_path, request, timeout)

    def set(
        self,
        address: str = "*",
        *,
        delay: float | None = None,
        jitter: float | None = None,
        loss: float | None = None,
        down: bool | None = None,
    ) -> None:
        """Update the profile of ``address`` (``"*"``: default for all); ``None`` keeps a field.

        ``delay``/``jitter`` are seconds (reply at delay + uniform(-jitter, jitter), >= 0),
        ``loss`` a drop probability, ``down=True`` drops everything. Per-address fields that
        were never set fall back to the ``"*"`` profile.
        """
        request: dict[str, Any] = {"cmd": "set", "address": address}
        for key, value in (("delay", delay), ("jitter", jitter), ("loss", loss), ("down", down)):
            if value is not None:
                request[key] = value
        self.command(request)

    def clear(self, address: str = "*") -> None:
        """Drop the overrides of ``address``; ``"*"`` resets every profile to no impairment."""
        self.command({"cmd": "clear", "address": address})

    def profile(self, address: str) -> dict[str, Any]:
        """The effective profile of ``address``."""
        profile = self.command({"cmd": "profile", "address": address})["profile"]
        assert isinstance(profile, dict)
        return profile

    def seed(self, seed: int) -> None:
        """Reseed the responder's loss/jitter generator."""
        self.command({"cmd": "seed", "seed": seed})

    def stats(self) -> ResponderStats:
        answer = self.command({"cmd": "stats"})
        return ResponderStats(
            received=dict(answer["received"]),
            replied=dict(answer["replied"]),
            late_max=float(answer.get("late_max", 0.0)),
        )

    def reset_stats(self) -> None:
        self.command({"cmd": "reset_stats"})

    def shape(self, down: str, up: str) -> None:
        """Bandwidth with tbf (the kernel has no netem): the far end's egress is the site's
        download, the site end's its upload; rates as tc writes them (``4mbit``)."""
        for ns, interface, rate in ((self._far_ns, self.far_interface, down),
                                    (self._site_ns, self.site_interface, up)):  # fmt: skip
            run(
                ["ip", "netns", "exec", ns, "tc", "qdisc", "replace", "dev", interface, "root",
                 "tbf", "rate", rate, "burst", "64kbit", "latency", "400ms"]
            )  # fmt: skip

    # -- running things in the site namespace

    def exec_site(self, argv: Sequence[str], **popen_kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` inside the site namespace (``ip netns exec``).

        The process is terminated (SIGTERM, then SIGKILL) when the test bed closes unless it
        has exited by then; its PID is the PID of ``argv`` itself.
        """
        proc: subprocess.Popen[Any] = subprocess.Popen(
            ["ip", "netns", "exec", self._site_ns, *argv], **popen_kwargs
        )
        self._children.append(proc)
        return proc

    def exec_far(self, argv: Sequence[str], **popen_kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` inside the far namespace; otherwise like :meth:`exec_site`."""
        proc: subprocess.Popen[Any] = subprocess.Popen(
            ["ip", "netns", "exec", self._far_ns, *argv], **popen_kwargs
        )
        self._children.append(proc)
        return proc

    def call_in_site(self, fn: Callable[[], T]) -> T:
        return call_in_netns(self._site_ns, fn)

    def call_in_far(self, fn: Callable[[], T]) -> T:
        return call_in_netns(self._far_ns, fn)

    # -- UDP loss in the far namespace (nftables)

    def udp_loss(self, port: int, probability: float) -> None:
        """Drop UDP datagrams sent to ``port`` in the far namespace with ``probability``.

        Each datagram is dropped independently (``numgen random``), in the far namespace's
        input hook, so requests are lost and the answers to the others are not. Replaces any
        earlier setting for ``port``; 0 removes it.
        """
        if not 1 <= port <= 65535:
            raise ValueError(f"bad UDP port {port}")
        if not 0.0 <= probability <= 1.0:
            raise ValueError("probability must be between 0 and 1")
        if probability == 0.0:
            self._udp_drops.pop(port, None)
        else:
            self._udp_drops[port] = probability
        self._apply_udp_drops()

    def udp_drop_all(self, port: int) -> None:
        """Drop every UDP datagram sent to ``port`` in the far namespace (a dead device)."""
        self.udp_loss(port, 1.0)

    def udp_loss_clear(self, port: int | None = None) -> None:
        """Stop dropping UDP to ``port``, or to every port when ``None``."""
        if port is None:
            self._udp_drops.clear()
        else:
            self._udp_drops.pop(port, None)
        self._apply_udp_drops()

    @property
    def udp_drops(self) -> dict[int, float]:
        """The drop probability per UDP port currently installed."""
        return dict(self._udp_drops)

    def _apply_udp_drops(self) -> None:
        if not self._far_ns:
            raise TestbedError("test bed is not started")
        if shutil.which("nft") is None:
            raise TestbedError("`nft` (nftables) is not installed")
        rules = []
        for port, probability in sorted(self._udp_drops.items()):
            per_10k = round(probability * 10_000)
            if per_10k >= 10_000:
                rules.append(f"    udp dport {port} counter drop")
            elif per_10k > 0:
                rules.append(
                    f"    udp dport {port} numgen random mod 10000 < {per_10k} counter drop"
                )
        # Declaring then deleting the table makes the replacement atomic and idempotent.
        ruleset = "\n".join(
            [
                f"table inet {_NFT_TABLE}",
                f"delete table inet {_NFT_TABLE}",
                f"table inet {_NFT_TABLE} {{",
                "  chain input {",
                "    type filter hook input priority filter; policy accept;",
                *rules,
                "  }",
                "}",
                "",
            ]
        )
        run(["ip", "netns", "exec", self._far_ns, "nft", "-f", "-"], stdin=ruleset)

    def nft_ruleset(self) -> str:
        """The far namespace's nftables ruleset (for diagnostics)."""
        return run(["ip", "netns", "exec", self._far_ns, "nft", "list", "ruleset"])


def _close_all(testbeds: Iterable[Testbed]) -> None:
    for testbed in list(testbeds):
        with contextlib.suppress(Exception):
            testbed.close()


atexit.register(_close_all, _open_testbeds)
