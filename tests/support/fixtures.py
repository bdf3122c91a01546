"""pytest fixtures for network-namespace test beds and SNMP counterparts.

Register them from a conftest, e.g. ``from tests.support.fixtures import testbed``.

A counterpart that is missing fails the test that needs it, never skips it:
./scripts/test installs every one of them, so a missing one is a broken setup.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import NoReturn

import pytest

from demo.netns import Testbed, netns_unavailable_reason

from .prometheus import prometheus_missing
from .snmp import (
    DEFAULT_V3_USER,
    Snmpd,
    SnmpSim,
    copy_recordings,
    snmpd_unavailable_reason,
    snmpsim_unavailable_reason,
)

__all__ = [
    "fail_missing",
    "need",
    "need_module",
    "need_netns",
    "netns_required",
    "prometheus_required",
    "requires_netns",
    "requires_prometheus",
    "requires_snmpd",
    "requires_snmpsim",
    "snmp_data",
    "snmpd",
    "snmpd_required",
    "snmpsim",
    "snmpsim_required",
    "testbed",
]

INSTALL_HINT = "run ./scripts/test, which installs it"


def fail_missing(what: str, reason: str, hint: str = INSTALL_HINT) -> NoReturn:
    """Fail the running test: `what`, which it needs, cannot be used here (`reason`)."""
    pytest.fail(f"{what} unavailable: {reason} ({hint})", pytrace=False)


def need(what: str, reason: str | None, hint: str = INSTALL_HINT) -> None:
    """Fail the running test if `reason` says why `what` cannot be used here."""
    if reason is not None:
        fail_missing(what, reason, hint)


def need_module(name: str) -> ModuleType:
    """Import a Python package the tests need (from pyproject's dev extra), or fail."""
    try:
        return importlib.import_module(name)
    except ImportError as err:
        problem = str(err)
    fail_missing(f"Python package {name}", problem)  # outside `except`: no chained traceback


def need_netns() -> None:
    """Fail the running test when network namespaces cannot be built here."""
    need(
        "real-ICMP test bed",
        netns_unavailable_reason(),
        "run ./scripts/test as root, as CI does: it installs iproute2 and nftables",
    )


@pytest.fixture(scope="session")
def netns_required() -> None:
    """Fails (does not skip) where namespaces cannot be built: not root, no iproute2..."""
    need_netns()


@pytest.fixture(scope="session")
def snmpsim_required() -> None:
    """Fails where snmpsim (and pysmi) are not installed."""
    need("snmpsim", snmpsim_unavailable_reason())


@pytest.fixture(scope="session")
def snmpd_required() -> None:
    """Fails where Debian's snmpd is not installed."""
    need("snmpd", snmpd_unavailable_reason())


@pytest.fixture(scope="session")
def prometheus_required() -> None:
    """Fails where Debian's prometheus and promtool are not installed."""
    need("Prometheus", prometheus_missing())


#: Marks a test (or, as `pytestmark`, a module) that needs these counterparts.
requires_netns = pytest.mark.usefixtures("netns_required")
requires_snmpsim = pytest.mark.usefixtures("snmpsim_required")
requires_snmpd = pytest.mark.usefixtures("snmpd_required")
requires_prometheus = pytest.mark.usefixtures("prometheus_required")


@pytest.fixture
def testbed() -> Iterator[Testbed]:
    """A started :class:`Testbed` with one target address; torn down after the test."""
    need_netns()
    with Testbed() as bed:
        yield bed


@pytest.fixture
def snmp_data(tmp_path: Path) -> Path:
    """A private copy of tests/snmp_data that a test may change freely."""
    return copy_recordings(tmp_path / "snmp_data")


@pytest.fixture
def snmpsim(snmp_data: Path) -> Iterator[SnmpSim]:
    """snmpsim on 127.0.0.1 (free port) serving every recording, e.g. community "mikrotik"."""
    need("snmpsim", snmpsim_unavailable_reason())
    with SnmpSim(snmp_data) as sim:
        yield sim


@pytest.fixture
def snmpd(tmp_path: Path) -> Iterator[Snmpd]:
    """Debian's snmpd on 127.0.0.1 (free port): community "public" and DEFAULT_V3_USER."""
    need("snmpd", snmpd_unavailable_reason())
    with Snmpd(tmp_path / "snmpd", "public", DEFAULT_V3_USER) as daemon:
        yield daemon
