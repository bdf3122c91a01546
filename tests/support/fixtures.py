"""pytest fixtures for network-namespace test beds.

Register them from a conftest, e.g. ``from tests.support.fixtures import testbed``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .netns import Testbed, netns_unavailable_reason

__all__ = ["requires_netns", "skip_without_netns", "testbed"]

#: Skips a test (with the reason) where namespaces cannot be built: not root, no iproute2...
requires_netns = pytest.mark.skipif(
    netns_unavailable_reason() is not None,
    reason=f"real-ICMP test bed unavailable: {netns_unavailable_reason()}",
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
