"""Device counters made monotonic across wraps and reboots. Pure.

Devices report raw octet counters. A 32-bit counter wraps every 4 GiB; any counter
restarts from zero when the device reboots (sysUpTime goes back). Exporting raw values
would make Prometheus see a reset and, for a wrap, lose the traffic since the last poll.
We export our own counter instead: it starts at zero at the first reading after the
agent starts (never the device's raw value, which would count a device's whole life as
traffic since the agent's start) and adds each poll's delta, computed as the wrap or
reboot demands, so it never goes back while the agent runs. Prometheus sees the agent's
restart as a counter reset, which `rate()` and `increase()` handle.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field

UPTIME_WRAP = 2**32 / 100  # sysUpTime is TimeTicks (1/100 s) in 32 bits: ~497 days


def rebooted(previous_uptime: float | None, uptime: float | None) -> bool:
    """Whether sysUpTime going from `previous_uptime` to `uptime` means a reboot.

    A drop is a reboot unless it is the 497-day wrap of the 32-bit TimeTicks (the old
    value was near the top, the new one near zero, and the step matches a wrap).
    """
    if previous_uptime is None or uptime is None or uptime >= previous_uptime:
        return False
    elapsed_if_wrapped = UPTIME_WRAP - previous_uptime + uptime
    return not (previous_uptime > UPTIME_WRAP - 86400 and elapsed_if_wrapped < 86400)


def counter_delta(previous: int, current: int, bits: int, device_rebooted: bool) -> int:
    """How much a raw counter grew between two polls."""
    if current >= previous:
        return current - previous
    if device_rebooted:
        return current  # restarted from zero at the reboot
    if bits == 32:
        return current + 2**32 - previous  # wrapped
    # A 64-bit counter going back without a reboot (an interface reset, a replaced
    # line card): count from zero, as Prometheus's reset handling would.
    return current


@dataclass
class CounterTracker:
    """Monotonic exported values for a device's counters, keyed by any hashable."""

    _raw: dict[Hashable, int] = field(default_factory=dict)
    _exported: dict[Hashable, int] = field(default_factory=dict)

    def update(self, key: Hashable, raw: int, bits: int, device_rebooted: bool) -> int:
        """Take one poll's raw value; returns the value to export."""
        if key not in self._raw:
            self._raw[key] = raw
            self._exported[key] = 0
            return 0
        self._exported[key] += counter_delta(self._raw[key], raw, bits, device_rebooted)
        self._raw[key] = raw
        return self._exported[key]

    def keep_only(self, keys: Iterable[Hashable]) -> None:
        """Forget counters that are gone (an interface removed from the device)."""
        wanted = set(keys)
        for key in [k for k in self._raw if k not in wanted]:
            del self._raw[key]
            del self._exported[key]
