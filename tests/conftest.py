"""Shared fixtures: the real-ICMP test bed of tests/support."""

from tests.support.fixtures import testbed

__all__ = ["testbed"]
