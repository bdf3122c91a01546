"""pytest fixtures for network-namespace test beds and SNMP counterparts.

Register them from a conftest, e.g. ``from tests.support.fixtures import testbed``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .netns import Testbed, netns_unavailable_reason
from .snmp import (
    DEFAULT_V3_USER,
    Snmpd,
    SnmpSim,
    copy_recordings,
    snmpd_unavailable_reason,
    snmpsim_unavailable_reason,
)

__all__ = [
    "requires_netns",
    "requires_snmpd",
    "requires_snmpsim",
    "skip_without_netns",
    "snmp_data",
    "snmpd",
    "snmpsim",
    "testbed",
]

#: Skips a test (with the reason) where namespaces cannot be built: not root, no iproute2...
requires_netns = pytest.mark.skipif(
    netns_unavailable_reason() is not None,
    reason=f"real-ICMP test bed unavailable: {netns_unavailable_reason()}",
)

#: Skips a test where snmpsim (and pysmi) are not installed.
requires_snmpsim = pytest.mark.skipif(
    snmpsim_unavailable_reason() is not None,
    reason=f"snmpsim unavailable: {snmpsim_unavailable_reason()}",
)

#: Skips a test where Debian's snmpd is not installed.
requires_snmpd = pytest.mark.skipif(
    snmpd_unavailable_reason() is not None,
    reason=f"snmpd unavailable: {snmpd_unavailable_reason()}",
)


def skip_without_netns() -> None:
    """Skip the running test when namespaces cannot be built here."""
    reason = netns_unavailable_reason()
    if reason is not None:
        pytest.skip(f"real-ICMP test bed unavailable: {reason}")


@pytest.fixture
def testbed() -> Iterator[Testbed]:
    """A started :class:`Testbed` with one target address; torn down after the test."""
    skip_without_netns()
    with Testbed() as bed:
        yield bed


@pytest.fixture
def snmp_data(tmp_path: Path) -> Path:
    """A private copy of tests/snmp_data that a test may change freely."""
    return copy_recordings(tmp_path / "snmp_data")


@pytest.fixture
def snmpsim(snmp_data: Path) -> Iterator[SnmpSim]:
    """snmpsim on 127.0.0.1 (free port) serving every recording, e.g. community "mikrotik"."""
    reason = snmpsim_unavailable_reason()
    if reason is not None:
        pytest.skip(f"snmpsim unavailable: {reason}")
    with SnmpSim(snmp_data) as sim:
        yield sim


@pytest.fixture
def snmpd(tmp_path: Path) -> Iterator[Snmpd]:
    """Debian's snmpd on 127.0.0.1 (free port): community "public" and DEFAULT_V3_USER."""
    reason = snmpd_unavailable_reason()
    if reason is not None:
        pytest.skip(f"snmpd unavailable: {reason}")
    with Snmpd(tmp_path / "snmpd", "public", DEFAULT_V3_USER) as daemon:
        yield daemon
