"""Shared fixtures: the real-ICMP test bed and the SNMP responders of tests/support."""

from tests.support.fixtures import snmp_data, snmpd, snmpsim, testbed

__all__ = ["snmp_data", "snmpd", "snmpsim", "testbed"]
