"""The agent's configuration: the contract of DESIGN.md §3 as frozen, validated models."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from kipu.config import (
    ConfigError,
    Duration,
    Problem,
    Size,
    Validated,
    format_duration,
    load_file,
    setting,
)
from kipu.config.checks import (
    NAME_PATTERN,
    SITE_ID_PATTERN,
    address_problem,
    is_ip_address,
    listen_problem,
    split_host_port,
    url_problem,
)

Role = Literal["gateway", "backhaul", "pop", "internet", "other"]
ROLES: tuple[Role, ...] = ("gateway", "backhaul", "pop", "internet", "other")


@dataclass(frozen=True)
class Target:
    """One address the agent pings continuously."""

    name: str = setting(doc="Unique name, the `target` label.", pattern=NAME_PATTERN)
    address: str = setting(
        doc="IPv4 or IPv6 address, or a host name (re-resolved).", check=address_problem
    )
    role: Role = setting("other", doc="What this target tells about the link.")


@dataclass(frozen=True)
class Probes:
    """ICMP probing of the link's targets."""

    interval: Duration = setting(1.0, doc="One probe per target this often.", minimum=0.01)
    timeout: Duration = setting(2.0, doc="A reply later than this is a loss.", minimum=0.001)
    resolve_interval: Duration = setting(
        300.0, doc="Host names are resolved again this often.", minimum=1.0
    )
    targets: tuple[Target, ...] = setting(
        default_factory=tuple, doc="Addresses to ping.", unique="name"
    )


@dataclass(frozen=True)
class Link(Validated):
    """When the site's link counts as up."""

    up_when: Literal["any", "all"] | tuple[Role, ...] = setting(
        "any",
        doc="any: some target answered; all: every target answered; a list of roles: "
        "every listed role has a target that answered, in the last round.",
    )

    def problems(self) -> Iterator[tuple[str, str]]:
        if isinstance(self.up_when, tuple) and not self.up_when:
            yield "up_when", "an empty list of roles can never hold; use any, all or roles"


@dataclass(frozen=True)
class SnmpV3(Validated):
    """SNMPv3 user-based security."""

    user: str = setting(doc="USM user name.")
    auth_protocol: Literal["MD5", "SHA", "SHA224", "SHA256", "SHA384", "SHA512"] | None = setting(
        None, doc="Authentication protocol."
    )
    auth_key: str | None = setting(None, doc="Authentication passphrase (8+ characters).")
    priv_protocol: Literal["DES", "AES", "AES192", "AES256"] | None = setting(
        None, doc="Privacy protocol."
    )
    priv_key: str | None = setting(None, doc="Privacy passphrase (8+ characters).")

    def problems(self) -> Iterator[tuple[str, str]]:
        for protocol, key, name in (
            (self.auth_protocol, self.auth_key, "auth"),
            (self.priv_protocol, self.priv_key, "priv"),
        ):
            if protocol and not key:
                yield f"{name}_key", f"{name}_protocol is set, so {name}_key is required"
            if key is not None and len(key) < 8:
                yield f"{name}_key", "must be at least 8 characters (RFC 3414)"
            if key and not protocol:
                yield f"{name}_protocol", f"{name}_key is set, so {name}_protocol is required"
        if self.priv_protocol and not self.auth_protocol:
            yield "priv_protocol", "privacy needs authentication: set auth_protocol too"


@dataclass(frozen=True)
class SnmpDevice(Validated):
    """A router or access point read over SNMP."""

    name: str = setting(doc="Unique name, the `device` label.", pattern=NAME_PATTERN)
    address: str = setting(doc="Address or host name of the device.", check=address_problem)
    port: int = setting(161, doc="UDP port.", minimum=1, maximum=65535)
    profile: str = setting(
        "if_mib",
        doc="if_mib, mikrotik, ubiquiti_airmax, ubiquiti_unifi, cambium_epmp, "
        "or the path of a custom profile (.yaml).",
    )
    community: str | None = setting(None, doc="SNMPv2c community.")
    v3: SnmpV3 | None = setting(None, doc="SNMPv3 credentials instead of a community.")
    interval: Duration = setting(30.0, doc="Poll this often.", minimum=1.0)
    timeout: Duration = setting(5.0, doc="Per request.", minimum=0.01)
    retries: int = setting(1, doc="Retries per request.", minimum=0, maximum=10)

    def problems(self) -> Iterator[tuple[str, str]]:
        if self.community is None and self.v3 is None:
            yield "community", "set community (SNMPv2c) or v3 (SNMPv3)"
        if self.community is not None and self.v3 is not None:
            yield "v3", "set either community or v3, not both"
        builtin = ("if_mib", "mikrotik", "ubiquiti_airmax", "ubiquiti_unifi", "cambium_epmp")
        if self.profile not in builtin and not self.profile.endswith((".yaml", ".yml")):
            yield (
                "profile",
                (f"unknown profile {self.profile!r}: use {', '.join(builtin)} or a .yaml file"),
            )


@dataclass(frozen=True)
class WifiSource(Validated):
    """A local source of WiFi usage, when the agent runs on the access point."""

    source: Literal["iw", "dnsmasq_leases"] = setting(doc="Where to read clients from.")
    interface: str | None = setting(None, doc="Wireless interface (source iw).")
    ssid: str | None = setting(None, doc="SSID label for the interface (source iw).")
    path: Path | None = setting(None, doc="Leases file (source dnsmasq_leases).")
    interval: Duration = setting(30.0, doc="Read this often.", minimum=0.01)

    def problems(self) -> Iterator[tuple[str, str]]:
        if self.source == "iw" and not self.interface:
            yield "interface", "source iw needs an interface"
        if self.source == "dnsmasq_leases" and self.path is None:
            yield "path", "source dnsmasq_leases needs the path of the leases file"


@dataclass(frozen=True)
class Push:
    """Remote write to the collector, spooled on disk while the uplink is down."""

    url: str = setting(doc="Remote write endpoint (http or https).", check=url_problem)
    token_file: Path | None = setting(None, doc="File holding the bearer token.")
    ca_file: Path | None = setting(None, doc="CA bundle for a private CA.")
    interval: Duration = setting(15.0, doc="Snapshot every series this often.", minimum=0.01)
    max_spool: Size = setting(256 * 1024**2, doc="Spool bound; oldest dropped.", minimum=64 * 1024)
    timeout: Duration = setting(30.0, doc="Per request.", minimum=0.01)
    spread: Duration = setting(
        30.0, doc="Random delay, up to this, before pushing after boot or reconnection."
    )
    clock_settle: Duration = setting(
        600.0,
        doc="Without a kernel-synchronised clock, trust it once the host is up this long.",
    )


CheckKind = Literal["http", "dns", "tcp"]
CHECK_KINDS: tuple[CheckKind, ...] = ("http", "dns", "tcp")
DnsType = Literal["A", "AAAA", "CNAME", "MX", "TXT"]
DEFAULT_CHECK_TIMEOUT = 10.0
ONE_KIND = "set exactly one of http, dns or tcp"


def _host_port_problem(text: str) -> str | None:
    """Why `text` is not ``HOST:PORT`` with a host (``[V6]:PORT`` for IPv6), or None."""
    try:
        host, _ = split_host_port(text)
    except ValueError as err:
        return str(err)
    if not host:
        return f"{text!r} has no host: write HOST:PORT"
    return address_problem(host)


def _dns_server_problem(text: str) -> str | None:
    """Why `text` is not ``IP``, ``IP:PORT`` or ``[IPV6]:PORT``, or None."""
    if is_ip_address(text):
        return None
    try:
        host, _ = split_host_port(text)
    except ValueError as err:
        return str(err)
    if not is_ip_address(host):
        return f"{text!r}: the server must be an IP address (with :PORT, [IPV6]:PORT for IPv6)"
    return None


def dns_server(text: str) -> tuple[str, int]:
    """The address and port of a `DnsCheck.server` (port 53 when not given)."""
    if is_ip_address(text):
        return text, 53
    return split_host_port(text)


@dataclass(frozen=True)
class HttpCheck(Validated):
    """An HTTP or HTTPS request, redirects followed, TLS always verified."""

    url: str = setting(doc="http:// or https:// URL to GET.", check=url_problem)
    status: tuple[int, ...] | None = setting(
        None, doc="Statuses that count as success (after redirects); any 2xx when not set."
    )
    body: str | None = setting(
        None, doc="Text the body must contain (the first 1 MiB is searched)."
    )
    ca_file: Path | None = setting(
        None, doc="CA bundle for a private CA, instead of the system's (https only)."
    )
    max_redirects: int = setting(
        5, doc="Redirects followed; one more is result `status`.", minimum=0, maximum=30
    )

    def problems(self) -> Iterator[tuple[str, str]]:
        for code in self.status or ():
            if not 100 <= code <= 599:
                yield "status", f"{code} is not an HTTP status (100-599)"
        if self.status is not None and not self.status:
            yield "status", "an empty list never matches: leave status out for any 2xx"
        if self.body == "":
            yield "body", "an empty text always matches: leave body out"
        if self.ca_file is not None and not self.url.startswith("https://"):
            yield "ca_file", "ca_file is for https:// URLs only"


@dataclass(frozen=True)
class DnsCheck(Validated):
    """A DNS query, to a given server or through the system's resolver."""

    query: str = setting(doc="The name to look up.", check=address_problem)
    type: DnsType = setting("A", doc="Record type: A, AAAA, CNAME, MX or TXT.")
    server: str | None = setting(
        None,
        doc="Resolver as IP or IP:PORT ([IPV6]:PORT), 53 by default; the system's when "
        "not set (A and AAAA only).",
        check=_dns_server_problem,
    )
    expect: str | tuple[str, ...] | None = setting(
        None,
        doc="An answer that must be present (address, name or text), or a list: "
        "any one of them must be present.",
    )

    def expected(self) -> tuple[str, ...]:
        """The expected answers, as a tuple (empty: any answer will do)."""
        if self.expect is None:
            return ()
        return (self.expect,) if isinstance(self.expect, str) else self.expect

    def problems(self) -> Iterator[tuple[str, str]]:
        if self.server is None and self.type not in ("A", "AAAA"):
            yield "server", f"type {self.type} needs a server (the system's resolver: A, AAAA)"
        if isinstance(self.expect, tuple) and not self.expect:
            yield "expect", "an empty list never matches: leave expect out for any answer"
        if self.type in ("A", "AAAA"):
            for value in self.expected():
                if not is_ip_address(value):
                    yield "expect", f"{value!r} is not an IP address (type {self.type})"


@dataclass(frozen=True)
class TcpCheck:
    """A TCP connection, opened and closed at once."""

    address: str = setting(doc="HOST:PORT ([IPV6]:PORT for IPv6).", check=_host_port_problem)


@dataclass(frozen=True)
class Check(Validated):
    """An application check: exactly one of http, dns or tcp."""

    name: str = setting(doc="Unique name, the `check` label.", pattern=NAME_PATTERN)
    http: HttpCheck | None = setting(None, doc="An HTTP(S) request.")
    dns: DnsCheck | None = setting(None, doc="A DNS query.")
    tcp: TcpCheck | None = setting(None, doc="A TCP connection.")
    interval: Duration = setting(
        60.0, doc="Run this often (the first run within one).", minimum=1.0
    )
    timeout: Duration | None = setting(
        None,
        doc="The whole check's deadline: 10s, or the interval when that is shorter; "
        "at most the interval.",
        minimum=1.0,
    )

    @property
    def deadline(self) -> float:
        """The timeout in seconds: as set, else 10 s or the interval when shorter."""
        return (
            self.timeout if self.timeout is not None else min(DEFAULT_CHECK_TIMEOUT, self.interval)
        )

    @property
    def kind(self) -> CheckKind:
        """Which of http, dns or tcp this check is."""
        return "http" if self.http is not None else "dns" if self.dns is not None else "tcp"

    def problems(self) -> Iterator[tuple[str, str]]:
        present = [kind for kind in CHECK_KINDS if getattr(self, kind) is not None]
        if not present:
            yield "http", ONE_KIND
        for kind in present[1:]:
            yield kind, f"set exactly one of http, dns or tcp: this check has {present[0]} too"
        if self.timeout is not None and self.timeout > self.interval:
            yield (
                "timeout",
                (
                    f"{format_duration(self.timeout)} is longer than the interval "
                    f"{format_duration(self.interval)}: a check never overlaps itself"
                ),
            )


WINDOW_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]-([01][0-9]|2[0-4]):[0-5][0-9]$"


def window_minutes(text: str) -> tuple[int, int]:
    """The start and end of a ``HH:MM-HH:MM`` window, in minutes after midnight."""
    start, end = text.split("-")
    return int(start[:2]) * 60 + int(start[3:]), int(end[:2]) * 60 + int(end[3:])


@dataclass(frozen=True)
class Throughput(Validated):
    """Throughput tests against the collector's speed test, within a data budget."""

    windows: tuple[str, ...] = setting(
        ("02:00-05:00", "13:00-14:00"),
        doc="HH:MM-HH:MM windows, in the agent's local time, where the runs fall at random.",
    )
    runs_per_day: int = setting(2, doc="Scheduled runs a day (0: on request only).", minimum=0)
    max_bytes_per_test: Size = setting(
        50 * 1024**2, doc="Cap of one direction's test (it grows up to this).", minimum=64 * 1024
    )
    max_bytes_per_day: Size = setting(
        200 * 1024**2, doc="Data budget of a calendar day (local time).", minimum=0
    )
    max_bytes_per_month: Size = setting(
        2 * 1024**3, doc="Data budget of a calendar month (local time).", minimum=0
    )
    streams: int = setting(4, doc="Parallel TCP streams.", minimum=1, maximum=8)
    first_bytes: Size = setting(
        256 * 1024,
        doc="Size of the first step, all streams together (then doubled).",
        minimum=4096,
    )
    timeout: Duration = setting(120.0, doc="Deadline of one direction's test.", minimum=1.0)
    url: str | None = setting(
        None,
        doc="The speed test's base URL; by default the push URL's scheme, host and port.",
        check=url_problem,
    )

    def problems(self) -> Iterator[tuple[str, str]]:
        for window in self.windows:
            if not re.match(WINDOW_PATTERN, window):
                yield "windows", f"{window!r} is not HH:MM-HH:MM"
                continue
            start, end = window_minutes(window)
            if end <= start:
                yield (
                    "windows",
                    f"{window!r} ends before it starts: split a window across midnight in two",
                )
        if self.runs_per_day and not self.windows:
            yield "windows", "scheduled runs need at least one window"
        if self.first_bytes > self.max_bytes_per_test:
            yield "first_bytes", "is larger than max_bytes_per_test"


@dataclass(frozen=True)
class AgentConfig(Validated):
    """kipu-agent configuration."""

    site_id: str = setting(doc="This site's identifier.", pattern=SITE_ID_PATTERN)
    listen: str = setting(
        "127.0.0.1:9108", doc="HOST:PORT for /metrics, /healthz, /-/reload.", check=listen_problem
    )
    state_dir: Path = setting(Path("/var/lib/kipu"), doc="Counters, heartbeat and spool.")
    heartbeat_interval: Duration = setting(
        60.0,
        doc="Counters and heartbeat go to state_dir this often (1,440 writes a day at 1m; "
        "a power cut loses at most this much up/down time, counted as offline instead).",
        minimum=0.01,
    )
    probes: Probes = setting(default_factory=Probes, doc="ICMP probing.")
    link: Link = setting(default_factory=Link, doc="Link state.")
    snmp: tuple[SnmpDevice, ...] = setting(
        default_factory=tuple, doc="Devices read over SNMP.", unique="name"
    )
    wifi: tuple[WifiSource, ...] = setting(default_factory=tuple, doc="Local WiFi sources.")
    push: Push | None = setting(None, doc="Push to the collector.")
    checks: tuple[Check, ...] = setting(
        default_factory=tuple, doc="Application checks (HTTP, DNS, TCP).", unique="name"
    )
    throughput: Throughput | None = setting(
        None, doc="Throughput tests against the collector (needs push for the token)."
    )

    def problems(self) -> Iterator[tuple[str, str]]:
        if self.throughput is not None and self.push is None:
            yield "throughput", "throughput tests need push: they use its token and collector"
        if not self.probes.targets:
            yield "probes", "list at least one target in probes.targets: the link is judged by them"
        if isinstance(self.link.up_when, tuple):
            present = {t.role for t in self.probes.targets}
            for role in self.link.up_when:
                if role not in present:
                    yield "link", f"up_when names role {role!r} but no target has that role"


def load_config(path: str | Path) -> AgentConfig:
    """Read and validate an agent configuration file; ConfigError lists every problem.

    Custom SNMP profiles named by the file are loaded too (relative to its folder), so
    their problems are reported with their own file, line and key.
    """
    try:
        config = load_file(AgentConfig, path)
    except ConfigError as err:
        raise ConfigError(_without_consequences(err.problems)) from None
    from agent.profiles import builtin_or_file  # noqa: PLC0415 - pysnmp-free, but not needed before

    problems = []
    for device in config.snmp:
        try:
            builtin_or_file(device.profile, Path(path).parent)
        except ConfigError as err:
            problems.extend(err.problems)
    if problems:
        raise ConfigError(problems)
    return config


def _without_consequences(problems: list[Problem]) -> list[Problem]:
    """Drop "set exactly one of http, dns or tcp" where that check's one section is
    itself invalid: the loader passes an invalid optional section on as absent, and
    the user should read the real problem only."""
    broken = set()
    for problem in problems:
        parts = problem.key.split(".")
        kind_problem = len(parts) >= 3 and parts[0] == "checks" and parts[2] in CHECK_KINDS
        if kind_problem and problem.message != ONE_KIND:
            broken.add(".".join(parts[:2]))
    return [
        p for p in problems if not (p.message == ONE_KIND and p.key.rsplit(".", 1)[0] in broken)
    ]
