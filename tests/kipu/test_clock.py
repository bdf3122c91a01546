"""The clock rule: who may vouch for the wall clock."""

from __future__ import annotations

import email.utils

import pytest

from kipu.clock import CLOCK_FLOOR, ClockJudge, host_uptime, kernel_clock_synced, receiver_offset
from kipu.remote_write.policy import parse_http_date


def test_before_the_floor_nothing_vouches() -> None:
    synced = ClockJudge(settle=600, synced=lambda: True, uptime=lambda: 10**6)
    synced.observe_receiver(0.0)
    assert not synced.trusted(86400 * 365)  # booted in 1971


@pytest.mark.parametrize(
    ("synced", "uptime", "offset", "trusted"),
    [
        (True, 5.0, None, True),  # NTP says so
        (None, 5.0, None, False),  # nobody knows yet
        (False, 700.0, None, True),  # no NTP discipline, but up longer than settle
        (False, 5.0, 1.9, True),  # the receiver agrees within 2 s
        (False, 5.0, -1.9, True),
        (False, 5.0, 2.1, False),  # too far apart
        (False, 5.0, -3600.0, False),
    ],
)
def test_who_vouches(
    synced: bool | None, uptime: float, offset: float | None, trusted: bool
) -> None:
    judge = ClockJudge(settle=600, synced=lambda: synced, uptime=lambda: uptime)
    if offset is not None:
        judge.observe_receiver(offset)
    assert judge.trusted(CLOCK_FLOOR + 1) is trusted


def test_the_latest_answer_counts() -> None:
    judge = ClockJudge(settle=600, synced=lambda: False, uptime=lambda: 0)
    judge.observe_receiver(0.3)
    assert judge.trusted(CLOCK_FLOOR + 1)
    judge.observe_receiver(40.0)  # our clock jumped, or we now talk to another receiver
    assert not judge.trusted(CLOCK_FLOOR + 1)


def test_receiver_offset_from_a_date_header() -> None:
    # The Date header has whole seconds: an answer stamped 12:00:00 left the server
    # between 12:00:00 and 12:00:01.
    date = parse_http_date(email.utils.formatdate(CLOCK_FLOOR, usegmt=True))
    assert date == CLOCK_FLOOR
    assert receiver_offset(CLOCK_FLOOR + 0.5, date) == pytest.approx(0.0)
    assert receiver_offset(CLOCK_FLOOR + 3600.5, date) == pytest.approx(3600.0)


def test_this_machines_clock() -> None:
    assert kernel_clock_synced() in (True, False, None)
    assert host_uptime() > 0
