"""What a check run yields: a result from a small fixed set, phase durations, TLS expiry.

Pure: no networking here. Each kind (`http`, `dns`, `tcp`) returns a `CheckResult`
and never raises for a failing counterpart; `PhaseTimer` times the phases the way
blackbox_exporter does (the time spent in each, summed over redirects).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

Result = Literal["ok", "dns", "connect", "tls", "timeout", "status", "body"]
RESULTS: tuple[Result, ...] = ("ok", "dns", "connect", "tls", "timeout", "status", "body")
"""Every result a run can have: `ok` or the reason it failed."""

Phase = Literal["resolve", "connect", "tls", "processing", "transfer"]
PHASES: dict[str, tuple[Phase, ...]] = {
    "http": ("resolve", "connect", "tls", "processing", "transfer"),
    "dns": ("resolve",),
    "tcp": ("resolve", "connect"),
}
"""The phases each kind exports (0 for a phase the last run did not reach)."""


@dataclass(frozen=True)
class CheckResult:
    """One run of a check."""

    result: Result
    phases: tuple[tuple[Phase, float], ...] = ()
    detail: str = ""
    """Why it failed, for the log (never exported as a label)."""
    tls_expiry: float | None = None
    """The verified certificate's notAfter (Unix time), when there was a handshake."""

    @property
    def success(self) -> bool:
        return self.result == "ok"


def all_phases(
    kind: str, measured: tuple[tuple[Phase, float], ...]
) -> tuple[tuple[str, float], ...]:
    """Every phase of `kind`, in order, with the measured seconds (0 when not measured)."""
    seconds = dict(measured)
    return tuple((phase, seconds.get(phase, 0.0)) for phase in PHASES[kind])


@dataclass
class PhaseTimer:
    """Adds up the time spent in each phase, as blackbox_exporter's HTTP probe does.

    Phases nest: aiohttp's "connection" spans name resolution and the TLS handshake, so
    while a phase is open inside another, time goes to the inner one only. A phase may
    be entered several times (once per redirect); its times add up.
    """

    clock: Callable[[], float] = time.perf_counter
    spent: dict[Phase, float] = field(default_factory=dict)
    _stack: list[Phase] = field(default_factory=list)
    _since: float = 0.0

    def start(self, phase: Phase) -> None:
        self._accrue()
        self._stack.append(phase)

    def end(self, phase: Phase) -> None:
        if phase in self._stack:
            self._accrue()
            self._stack.remove(phase)

    def close(self) -> tuple[tuple[Phase, float], ...]:
        """The phases spent so far; those still open (a timeout, a failure) count until now."""
        self._accrue()
        self._stack.clear()
        return tuple(self.spent.items())

    def _accrue(self) -> None:
        now = self.clock()
        if self._stack:
            top = self._stack[-1]
            self.spent[top] = self.spent.get(top, 0.0) + max(0.0, now - self._since)
        self._since = now
