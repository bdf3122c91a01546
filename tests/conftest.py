"""Shared fixtures: the real-ICMP test bed and the SNMP responders of tests/support."""

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
