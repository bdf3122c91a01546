"""Shared fixtures: no blocking on the event loop, the real-ICMP test bed and the SNMP
responders of tests/support."""

from collections.abc import Iterator

import pytest
from blockbuster import BlockBuster

from tests.blocking import busting
from tests.support.fixtures import (
    netns_required,
    prometheus_required,
    snmp_data,
    snmpd,
    snmpd_required,
    snmpsim,
    snmpsim_required,
    testbed,
)


@pytest.fixture(autouse=True)
def blockbuster() -> Iterator[BlockBuster]:
    """Fail any test in which kipu's code blocks the event loop (tests/blocking.py)."""
    yield from busting()


__all__ = [
    "netns_required",
    "prometheus_required",
    "snmp_data",
    "snmpd",
    "snmpd_required",
    "snmpsim",
    "snmpsim_required",
    "testbed",
]
