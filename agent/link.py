"""The link state machine and its availability counters. Pure: the caller passes clocks.

The link is judged on the last probe round: the latest result of every target. It
is unknown until every target has answered or failed once; unknown time counts
neither as up nor as down. Up and down seconds advance on the monotonic clock, so a
wall-clock step (NTP) does not create or destroy availability.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from agent.snapshots import LinkSnapshot

UpWhen = str | tuple[str, ...]


@dataclass
class LinkCounters:
    """What survives a restart (persisted in state_dir)."""

    up_seconds: float = 0.0
    down_seconds: float = 0.0
    outages: int = 0
    last_change: float | None = None  # wall-clock seconds of the last transition
    last_state: bool | None = None  # the state when the counters were last saved
    offline_seconds: float = 0.0


def link_holds(rule: UpWhen, results: Mapping[str, bool], roles: Mapping[str, str]) -> bool:
    """Whether the link is up given each target's last result.

    ``any``: at least one target answered. ``all``: every target answered. A tuple of
    roles: for every listed role, at least one target of that role answered.
    """
    if rule == "any":
        return any(results.values())
    if rule == "all":
        return all(results.values())
    return all(any(ok for name, ok in results.items() if roles.get(name) == role) for role in rule)


@dataclass
class LinkState:
    """Tracks the link from probe results and accumulates availability."""

    rule: UpWhen
    roles: dict[str, str]  # target name -> role
    counters: LinkCounters = field(default_factory=LinkCounters)
    up: bool | None = None
    results: dict[str, bool] = field(default_factory=dict)
    _since: float | None = None  # monotonic time the counters were last advanced

    def configure(self, rule: UpWhen, roles: Mapping[str, str], now: float, wall: float) -> None:
        """Apply a new rule and target set (a reload); results of removed targets go."""
        self.advance(now)
        self.rule = rule
        self.roles = dict(roles)
        self.results = {n: ok for n, ok in self.results.items() if n in self.roles}
        self._evaluate(now, wall)

    def observe(self, target: str, success: bool, now: float, wall: float) -> bool | None:
        """Record one probe result; returns the new state when it changed, else None."""
        if target not in self.roles:
            return None
        self.results[target] = success
        return self._evaluate(now, wall)

    def advance(self, now: float) -> None:
        """Add the time since the last call to up or down seconds."""
        if self._since is not None and self.up is not None:
            elapsed = max(0.0, now - self._since)
            if self.up:
                self.counters.up_seconds += elapsed
            else:
                self.counters.down_seconds += elapsed
        self._since = now

    def snapshot(self, now: float) -> LinkSnapshot:
        """The state and counters as of monotonic time `now`."""
        self.advance(now)
        c = self.counters
        return LinkSnapshot(
            self.up, c.up_seconds, c.down_seconds, c.outages, c.last_change, c.offline_seconds
        )

    def _evaluate(self, now: float, wall: float) -> bool | None:
        self.advance(now)
        if len(self.results) < len(self.roles) or not self.roles:
            if self.up is not None and not self.roles:
                self.up = None
            return None
        up = link_holds(self.rule, self.results, self.roles)
        if up == self.up:
            return None
        previous = self.up if self.up is not None else self.counters.last_state
        self.up = up
        if previous is not up:
            self.counters.last_change = wall
            if previous and not up:
                self.counters.outages += 1
        elif self.counters.last_change is None:
            self.counters.last_change = wall
        self.counters.last_state = up
        return up
