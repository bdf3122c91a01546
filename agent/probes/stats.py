"""Per-target probe statistics: the RTT histogram, packet counters and RFC 3550 jitter."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

# 0.5 ms (fibre, a microwave hop) to 8 s (GEO satellite under load), doubling each step.
RTT_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064,
    0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class StatsSnapshot:
    """A consistent copy of a target's statistics, for one scrape."""

    bucket_counts: tuple[int, ...]  # per bucket, not cumulative; last one is +Inf
    rtt_sum: float
    sent: int
    received: int
    jitter: float
    success: bool | None

    @property
    def rtt_count(self) -> int:
        return sum(self.bucket_counts)


@dataclass
class TargetStats:
    """Accumulates probe outcomes of one target. Pure: no clocks, no I/O."""

    bucket_counts: list[int] = field(default_factory=lambda: [0] * (len(RTT_BUCKETS) + 1))
    rtt_sum: float = 0.0
    sent: int = 0
    received: int = 0
    jitter: float = 0.0
    success: bool | None = None
    _last_rtt: float | None = None

    def record(self, rtt: float | None, latest: bool = True) -> None:
        """Count one probe: `rtt` in seconds, or None when it was lost.

        `latest` is False for a result that completed after a newer probe's: it counts,
        but does not set the last probe's success.
        """
        self.sent += 1
        if latest:
            self.success = rtt is not None
        if rtt is None:
            return
        self.received += 1
        self.bucket_counts[bisect.bisect_left(RTT_BUCKETS, rtt)] += 1
        self.rtt_sum += rtt
        if self._last_rtt is not None:
            # RFC 3550 §6.4.1: J += (|D| - J) / 16, D the change in transit time.
            self.jitter += (abs(rtt - self._last_rtt) - self.jitter) / 16
        self._last_rtt = rtt

    def snapshot(self) -> StatsSnapshot:
        return StatsSnapshot(
            tuple(self.bucket_counts),
            self.rtt_sum,
            self.sent,
            self.received,
            self.jitter,
            self.success,
        )
