"""A regional network for the demo: one namespace per site, all joined to a "wan" namespace.

::

    site namespace i (agent)        wan namespace (responder)            root namespace (NOC)
    s<i> 10.253.i.2/24  <-- veth --> w<i> 10.253.i.1 (pop), .3 (internet), .4 (AP)
                                     up0 10.254.0.2/30  <-- veth --> kipudemo 10.254.0.1/30

Each site reaches two targets of its own on the wan side, answered by the ICMP responder
with the delay, jitter and loss of its access technology, and the NOC in the root
namespace at 10.254.0.1 (the collector listens there besides 127.0.0.1). Cutting a site's
veth silences it entirely: no pings, no pushes. The root namespace gets one veth end and
one route (10.253.0.0/16 via the wan); deleting the wan namespace removes both.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from demo.netns import (
    NAME_PREFIX,
    TestbedError,
    cleanup_stale,
    list_netns,
    responder_command,
    run,
    start_responder,
    sysctl,
    terminate,
)

NOC_ADDRESS = "10.254.0.1"
WAN_UPLINK = "10.254.0.2"
SITE_NETWORK = "10.253.0.0/16"
ROOT_INTERFACE = "kipudemo"
MAX_SITES = 250


class Network:
    """The wan namespace, ``sites`` site namespaces and the responder; a context manager."""

    def __init__(self, sites: int) -> None:
        if not 1 <= sites <= MAX_SITES:
            raise ValueError(f"sites must be between 1 and {MAX_SITES}")
        self.sites = sites
        pid = os.getpid()
        self.wan = f"{NAME_PREFIX}{pid}-demo-wan"
        self._site_ns = [f"{NAME_PREFIX}{pid}-demo-s{i}" for i in range(sites)]
        self._created: list[str] = []
        self._tmpdir: Path | None = None
        self._responder: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Network:
        try:
            self._setup()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- addresses

    def namespace(self, i: int) -> str:
        return self._site_ns[i]

    @staticmethod
    def pop_address(i: int) -> str:
        return f"10.253.{i}.1"

    @staticmethod
    def internet_address(i: int) -> str:
        return f"10.253.{i}.3"

    @staticmethod
    def device_address(i: int) -> str:
        """The site's access point (answered by snmpsim in the wan namespace)."""
        return f"10.253.{i}.4"

    @staticmethod
    def site_address(i: int) -> str:
        return f"10.253.{i}.2"

    # -- building

    def _setup(self) -> None:
        cleanup_stale()
        if ROOT_INTERFACE in run(["ip", "-o", "link", "show"]):
            raise TestbedError(
                f"{ROOT_INTERFACE} exists: another demo runs (or left it behind: "
                f"`ip link delete {ROOT_INTERFACE}`)"
            )
        self._tmpdir = Path(tempfile.mkdtemp(prefix=f"kipu-testbed-{os.getpid()}-"))
        for name in (self.wan, *self._site_ns):
            run(["ip", "netns", "add", name])
            self._created.append(name)
        run(
            ["ip", "link", "add", ROOT_INTERFACE, "type", "veth", "peer", "name", "up0",
             "netns", self.wan]
        )  # fmt: skip
        run(["ip", "addr", "add", f"{NOC_ADDRESS}/30", "dev", ROOT_INTERFACE])
        run(["ip", "link", "set", ROOT_INTERFACE, "up"])
        run(["ip", "route", "add", SITE_NETWORK, "via", WAN_UPLINK, "dev", ROOT_INTERFACE])
        wan_cmds = ["link set lo up", f"addr add {WAN_UPLINK}/30 dev up0", "link set up0 up"]
        for i, ns in enumerate(self._site_ns):
            run(
                ["ip", "link", "add", f"s{i}", "netns", ns, "type", "veth",
                 "peer", "name", f"w{i}", "netns", self.wan]
            )  # fmt: skip
            site_cmds = [
                "link set lo up",
                f"addr add {self.site_address(i)}/24 dev s{i}",
                f"link set s{i} up",
                f"route add default via {self.pop_address(i)}",
            ]
            run(["ip", "-n", ns, "-batch", "-"], stdin="\n".join(site_cmds) + "\n")
            wan_cmds += [
                f"addr add {self.pop_address(i)}/24 dev w{i}",
                f"addr add {self.internet_address(i)}/24 dev w{i}",
                f"addr add {self.device_address(i)}/24 dev w{i}",
                f"link set w{i} up",
            ]
        run(["ip", "-n", self.wan, "-batch", "-"], stdin="\n".join(wan_cmds) + "\n")
        sysctl(self.wan, "net.ipv4.ip_forward", "1")
        sysctl(self.wan, "net.ipv4.icmp_echo_ignore_all", "1")
        self._responder = start_responder(
            self.wan, self._tmpdir / "ctl.sock", self._tmpdir / "responder.stderr"
        )

    def close(self) -> None:
        """Stop the responder, delete the namespaces (and with them the root's veth)."""
        if self._responder is not None:
            terminate(self._responder, grace=3.0)
            self._responder = None
        existing = set(list_netns())
        for name in reversed(self._created):
            if name in existing:
                with contextlib.suppress(TestbedError):
                    run(["ip", "netns", "delete", name])
        self._created.clear()
        with contextlib.suppress(TestbedError, OSError):
            if ROOT_INTERFACE in run(["ip", "-o", "link", "show"]):
                run(["ip", "link", "delete", ROOT_INTERFACE])
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    # -- impairments

    def set_link(self, i: int, **profile: Any) -> None:
        """The responder's profile (delay, jitter, loss, down) of both targets of site i;
        ``internet_extra`` seconds more delay for the internet target."""
        extra = float(profile.pop("internet_extra", 0.0))
        assert self._tmpdir is not None
        control = self._tmpdir / "ctl.sock"
        for address, more in ((self.pop_address(i), 0.0), (self.internet_address(i), extra)):
            request = {"cmd": "set", "address": address, **profile}
            if "delay" in profile:
                request["delay"] = float(profile["delay"]) + more
            responder_command(control, request)

    def cut(self, i: int, down: bool = True) -> None:
        """Cut site i's link (its veth end down: nothing gets through), or restore it."""
        run(["ip", "-n", self._site_ns[i], "link", "set", f"s{i}", "down" if down else "up"])
        if not down:
            run(["ip", "-n", self._site_ns[i], "route", "replace", "default", "via",
                 self.pop_address(i)])  # fmt: skip

    def exec_wan(self, argv: list[str], **popen: Any) -> subprocess.Popen[bytes]:
        """Start ``argv`` inside the wan namespace; the caller stops it by its PID."""
        return subprocess.Popen(["ip", "netns", "exec", self.wan, *argv], **popen)

    def exec_site(self, i: int, argv: list[str], **popen: Any) -> subprocess.Popen[bytes]:
        """Start ``argv`` inside site i's namespace; the caller stops it by its PID."""
        return subprocess.Popen(["ip", "netns", "exec", self._site_ns[i], *argv], **popen)
