"""Per-target statistics: histogram buckets, counters, RFC 3550 jitter."""

from __future__ import annotations

import itertools

import pytest

from agent.probes.stats import RTT_BUCKETS, TargetStats


def test_buckets_span_fibre_to_geo_satellite() -> None:
    assert RTT_BUCKETS[0] == 0.0005
    assert RTT_BUCKETS[-1] == 8.0
    assert list(RTT_BUCKETS) == sorted(RTT_BUCKETS)
    ratios = [b / a for a, b in itertools.pairwise(RTT_BUCKETS)]
    assert all(1.9 < r < 2.1 for r in ratios)  # log-spaced


def test_histogram_uses_le_semantics() -> None:
    stats = TargetStats()
    for rtt in (0.0005, 0.0006, 0.6, 100.0):
        stats.record(rtt)
    snap = stats.snapshot()
    assert snap.bucket_counts[0] == 1  # 0.5 ms lands in le=0.0005
    assert snap.bucket_counts[1] == 1
    assert snap.bucket_counts[RTT_BUCKETS.index(1.0)] == 1
    assert snap.bucket_counts[-1] == 1  # +Inf
    assert snap.rtt_count == 4
    assert snap.rtt_sum == pytest.approx(100.6011)


def test_loss_counts_and_last_success() -> None:
    stats = TargetStats()
    stats.record(0.01)
    stats.record(None)
    snap = stats.snapshot()
    assert (snap.sent, snap.received, snap.success) == (2, 1, False)
    stats.record(0.02)
    assert stats.snapshot().success is True


def test_jitter_follows_rfc3550() -> None:
    stats = TargetStats()
    stats.record(0.100)
    assert stats.jitter == 0.0
    stats.record(0.116)  # |D| = 16 ms -> J = 1 ms
    assert stats.jitter == pytest.approx(0.001)
    stats.record(None)  # a loss does not reset the reference
    stats.record(0.116)  # |D| = 0 -> J = 1 ms * 15/16
    assert stats.jitter == pytest.approx(0.001 * 15 / 16)


def test_constant_rtt_has_no_jitter() -> None:
    stats = TargetStats()
    for _ in range(100):
        stats.record(0.08)
    assert stats.jitter == 0.0


def test_a_late_result_does_not_set_last_success() -> None:
    stats = TargetStats()
    stats.record(0.01)
    stats.record(None, latest=False)  # an older probe timing out after a newer reply
    snap = stats.snapshot()
    assert snap.success is True
    assert (snap.sent, snap.received) == (2, 1)
