"""A wall clock and a monotonic clock that a test moves: boxes without a real-time clock."""

from __future__ import annotations

from kipu.clock import Clocks


class FakeClock:
    """Both clocks advance together; NTP may step the wall clock alone (`now_wall`)."""

    def __init__(self, wall: float, monotonic: float = 500.0) -> None:
        self.now_wall = wall
        self.now_mono = monotonic

    def wall(self) -> float:
        return self.now_wall

    def monotonic(self) -> float:
        return self.now_mono

    def advance(self, seconds: float) -> None:
        self.now_wall += seconds
        self.now_mono += seconds

    def clocks(self) -> Clocks:
        return Clocks(self.wall, self.monotonic)
