"""The clock rule: when the wall clock may stamp samples and date a power cut.

Many site boxes have no real-time clock: they boot with the clock at 1970 or at the
last shutdown until NTP sets it. A sample stamped with such a clock lands in the wrong
place (or is refused), and a power cut measured with it vanishes. The rule: the wall
clock is **trusted** when it reads after `CLOCK_FLOOR` (no sample of this release can
be older) and one of these vouches for it:

- the kernel's NTP discipline says it is synchronised (adjtimex);
- the receiver of our pushes agrees with it within `RECEIVER_AGREEMENT` seconds (its
  HTTP ``Date`` header, which every answer carries, even a 401 or a 503);
- the host has been up for `settle` seconds without the kernel saying either way (a
  box with no NTP discipline at all).

Until then, work that needs the wall clock waits, keeping the monotonic time it was
taken at, and is dated `now - (monotonic now - monotonic then)` once the clock is
trusted.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

CLOCK_FLOOR = 1_767_225_600.0  # 2026-01-01T00:00:00Z
RECEIVER_AGREEMENT = 2.0
"""Seconds within which the receiver's Date must agree with our clock to vouch for it."""

_STA_UNSYNC = 0x0040
_TIME_ERROR = 5


@functools.cache
def _adjtimex() -> tuple[Callable[..., int], type[Any]] | None:
    """libc's adjtimex and the `struct timex` it fills; None where unavailable.

    ctypes costs the agent half a megabyte: it is loaded only when the clock's trust is
    in question (a fresh boot), and looked up once. The interpreter is linked against
    the C library, so its own symbols hold adjtimex, with no search (find_library
    would run ldconfig in a subprocess).
    """
    import ctypes  # noqa: PLC0415

    class Timex(ctypes.Structure):
        _fields_ = [
            ("modes", ctypes.c_uint),
            ("offset", ctypes.c_long),
            ("freq", ctypes.c_long),
            ("maxerror", ctypes.c_long),
            ("esterror", ctypes.c_long),
            ("status", ctypes.c_int),
            ("constant", ctypes.c_long),
            ("precision", ctypes.c_long),
            ("tolerance", ctypes.c_long),
            ("time_sec", ctypes.c_long),
            ("time_usec", ctypes.c_long),
            ("tick", ctypes.c_long),
            ("ppsfreq", ctypes.c_long),
            ("jitter", ctypes.c_long),
            ("shift", ctypes.c_int),
            ("stabil", ctypes.c_long),
            ("jitcnt", ctypes.c_long),
            ("calcnt", ctypes.c_long),
            ("errcnt", ctypes.c_long),
            ("stbcnt", ctypes.c_long),
            ("tai", ctypes.c_int),
            ("padding", ctypes.c_int * 11),
        ]

    try:
        adjtimex: Callable[..., int] = ctypes.CDLL(None, use_errno=True).adjtimex
    except (OSError, AttributeError):
        return None
    return adjtimex, Timex


def kernel_clock_synced() -> bool | None:
    """Whether the kernel's NTP discipline says the clock is synchronised; None if unknown."""
    found = _adjtimex()
    if found is None:
        return None
    adjtimex, timex_type = found
    timex = timex_type()  # modes 0: read only
    import ctypes  # noqa: PLC0415 - loaded by _adjtimex already

    state = adjtimex(ctypes.byref(timex))
    if state < 0:
        return None
    return state != _TIME_ERROR and not timex.status & _STA_UNSYNC


def host_uptime() -> float:
    """Seconds since the host booted (/proc/uptime); 0 when unknown."""
    try:
        with open("/proc/uptime", encoding="ascii") as f:
            return float(f.readline().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0


def receiver_offset(local_time: float, date: float) -> float:
    """Our clock minus the receiver's, from an answer's Date header.

    Date is the server's time truncated to the second when it answered, so it lies
    between 0 and 1 s (plus the answer's travel) before our reading: half a second is
    the middle of that interval.
    """
    return local_time - (date + 0.5)


@dataclass
class ClockJudge:
    """Decides whether the wall clock can be trusted (see the module docstring)."""

    settle: float = 600.0
    synced: Callable[[], bool | None] = kernel_clock_synced
    uptime: Callable[[], float] = host_uptime
    offset: float | None = field(default=None, init=False)
    """Our clock minus the receiver's, from its latest answer; None before any."""

    def observe_receiver(self, offset: float) -> None:
        """Record our clock minus the receiver's (`receiver_offset`)."""
        self.offset = offset

    def receiver_agrees(self) -> bool:
        return self.offset is not None and abs(self.offset) <= RECEIVER_AGREEMENT

    def trusted(self, wall: float) -> bool:
        if wall < CLOCK_FLOOR:
            return False
        # The cheap witnesses first: asking the kernel loads ctypes.
        return self.uptime() >= self.settle or self.receiver_agrees() or self.synced() is True


@dataclass(frozen=True)
class Clocks:
    """The wall and monotonic clocks, injectable so tests can play a box without RTC."""

    wall: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
