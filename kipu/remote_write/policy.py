"""What an answer to a remote-write request means, and how long to wait before the next.

Pure, no event loop. Remote write 1.0 says: retry 5xx and 429 with backoff, never
retry other 4xx. kipu follows it with two deliberate refinements:

- **401, 403, 404 and 407 are BLOCKED, not REJECTED.** They say "you may not write
  here" (a token not yet issued, revoked or mistyped, a wrong URL path, a proxy asking
  for credentials), not "this data is bad". Dropping the data on them would turn one
  operator's typo into weeks of lost measurements, so the sender keeps its data,
  pauses with a long capped backoff and resumes when its token file changes or the
  receiver accepts again.
- **A 5xx whose body is one of Prometheus' storage errors is REJECTED.** Prometheus
  before 2.50 answers samples older than its window with 500 "too old sample":
  sending them again can never succeed.

REJECTED on a batch of several records means "something in here is refused": the
sender splits the batch (see `kipu.lanes`) until only what the receiver refuses on its
own is dropped.
"""

from __future__ import annotations

import datetime
import email.utils
import enum
import math
import random
from dataclasses import dataclass, field

PERMANENT_SERVER_ERRORS = (
    "too old sample",
    "out of bounds",
    "out of order sample",
    "duplicate sample for timestamp",
)
"""Prometheus' storage errors (storage/interface.go). Before 2.50 its receiver answered
"too old sample" (outside the out-of-order window), and any of these when wrapped, with
500: sending the same samples again can never succeed, so they are not retried."""

BLOCKING_STATUSES = frozenset({401, 403, 404, 407})
"""Answers that mean "you may not write here": the data is kept (see the docstring)."""

RETRY_AFTER_CAP = 600.0
"""A receiver's Retry-After is honoured in full up to ten minutes."""


class Outcome(enum.StrEnum):
    """What a request came to."""

    OK = "ok"
    RETRY = "retry"
    """Keep the data and send it again after a backoff (5xx, 429, network errors)."""
    BLOCKED = "blocked"
    """Keep the data; the sender may not write here until something changes."""
    REJECTED = "rejected"
    """The receiver will not take this request as it is: split it, or drop it alone."""

    @property
    def result(self) -> str:
        """The `result` label of kipu_push_requests_total: ok, retry or rejected."""
        return "retry" if self is Outcome.BLOCKED else self.value


def classify(status: int, body: str) -> Outcome:
    """The outcome of an HTTP answer (see the module docstring).

    2xx is OK; 429 and 5xx are RETRY, except Prometheus' permanent storage errors,
    which are REJECTED; 401, 403, 404 and 407 are BLOCKED; every other 4xx is REJECTED.
    Anything else (a redirect, which is not followed) says nothing about the data, so
    it is kept: RETRY.
    """
    if 200 <= status < 300:
        return Outcome.OK
    if status == 429:
        return Outcome.RETRY
    if status in BLOCKING_STATUSES:
        return Outcome.BLOCKED
    if 400 <= status < 500:
        return Outcome.REJECTED
    if 500 <= status < 600:
        text = body.lower()
        if any(error in text for error in PERMANENT_SERVER_ERRORS):
            return Outcome.REJECTED
    return Outcome.RETRY


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delay-seconds or an HTTP date).

    `now` is the current Unix time. None when absent or unreadable; never negative.
    """
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    return seconds_until(text, now)


def parse_http_date(value: str | None) -> float | None:
    """The Unix time of an HTTP date (``Date``, ``Retry-After``); None when unreadable."""
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": HTTP dates are always GMT
        when = when.replace(tzinfo=datetime.UTC)
    return when.timestamp()


def seconds_until(http_date: str, now: float) -> float | None:
    when = parse_http_date(http_date)
    return None if when is None else max(0.0, when - now)


@dataclass
class Backoff:
    """Exponential backoff with equal jitter, for sending again after RETRY or BLOCKED.

    The n-th delay in a row (from 0) is uniform in [c/2, c] with c = min(cap, base *
    2**n): the floor grows with every failure, so the request rate to a failing
    receiver falls predictably (full jitter's waits can stay near zero), and the upper
    half stays random, so sites that failed together do not retry together. `reset`
    after a success starts again from `base`. A receiver's Retry-After is honoured in
    full as a minimum, up to `RETRY_AFTER_CAP`.
    """

    base: float = 1.0
    cap: float = 300.0
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if not 0 < self.base <= self.cap:
            raise ValueError(f"backoff needs 0 < base <= cap, got {self.base} and {self.cap}")

    def next_delay(self, retry_after: float | None = None) -> float:
        """Seconds to wait before the next try."""
        ceiling = min(self.cap, self.base * 2.0 ** min(self.attempt, 1000))
        if ceiling < self.cap:
            self.attempt += 1
        delay = self.rng.uniform(ceiling / 2, ceiling)
        if retry_after is not None:
            delay = max(delay, min(retry_after, RETRY_AFTER_CAP))
        return delay

    def reset(self) -> None:
        """Back to the shortest delays (after a success)."""
        self.attempt = 0

    @property
    def failing(self) -> bool:
        """Whether the last try failed (no reset since)."""
        return self.attempt > 0
