"""Counter wraps and device reboots: exported traffic never goes back or jumps."""

from __future__ import annotations

from agent.traffic_counters import UPTIME_WRAP, CounterTracker, counter_delta, rebooted


def test_reboot_is_an_uptime_drop() -> None:
    assert rebooted(1000.0, 50.0)
    assert not rebooted(1000.0, 1030.0)
    assert not rebooted(None, 50.0)
    assert not rebooted(1000.0, None)


def test_uptime_wrap_after_497_days_is_not_a_reboot() -> None:
    assert not rebooted(UPTIME_WRAP - 10, 20.0)
    assert rebooted(UPTIME_WRAP - 10, 90000.0)  # too far for a wrap: a reboot


def test_deltas() -> None:
    assert counter_delta(100, 250, 64, False) == 150
    assert counter_delta(2**32 - 100, 50, 32, False) == 150  # wrapped
    assert counter_delta(5_000_000, 1_000, 32, True) == 1_000  # rebooted: from zero
    assert counter_delta(5_000_000, 1_000, 64, False) == 1_000  # 64-bit reset


def test_tracker_exports_a_monotonic_counter_from_zero() -> None:
    tracker = CounterTracker()
    # The device's raw value is its whole life's traffic, not ours: start at zero.
    assert tracker.update("eth0", 2**32 - 1000, 32, False) == 0
    assert tracker.update("eth0", 500, 32, False) == 1500  # wrap: +1500
    assert tracker.update("eth0", 200, 32, True) == 1700  # reboot: +200
    assert tracker.update("eth0", 300, 32, False) == 1800
    tracker.keep_only(["eth1"])
    assert tracker.update("eth0", 10, 32, False) == 0  # forgotten: starts again
