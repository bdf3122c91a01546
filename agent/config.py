"""The agent's configuration: the contract of DESIGN.md §3 as frozen, validated models."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from kipu.config import ConfigError, Duration, Size, Validated, load_file, setting
from kipu.config.checks import (
    NAME_PATTERN,
    SITE_ID_PATTERN,
    address_problem,
    listen_problem,
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

    def problems(self) -> Iterator[tuple[str, str]]:
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
    config = load_file(AgentConfig, path)
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
