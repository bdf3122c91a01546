"""Distinct clients per day from keyed hashes that rotate at midnight."""

from __future__ import annotations

import itertools
import time

from agent.daily_uniques import DailyUniques

MAC_A = bytes.fromhex("a4c3f0112233")
MAC_B = bytes.fromhex("a4c3f0112234")


def test_counts_distinct_clients_per_source() -> None:
    uniques = DailyUniques()
    uniques.add("ap", [MAC_A, MAC_B, MAC_A])
    uniques.add("ap", [MAC_B])
    uniques.add("router", [MAC_A])
    assert uniques.count("ap") == 2
    assert uniques.count("router") == 1
    assert uniques.count("other") == 0


def test_new_day_new_key_and_empty_count() -> None:
    now = [time.mktime((2026, 11, 22, 23, 59, 0, 0, 0, -1))]
    keys = (bytes([i]) * 32 for i in itertools.count())
    uniques = DailyUniques(clock=lambda: now[0], new_key=lambda: next(keys))
    uniques.add("ap", [MAC_A, MAC_B])
    first_hashes = set(uniques._seen["ap"])
    assert uniques.count("ap") == 2
    now[0] += 120  # past local midnight
    assert uniques.count("ap") == 0
    uniques.add("ap", [MAC_A])
    assert uniques.count("ap") == 1
    assert not first_hashes & uniques._seen["ap"]  # a new key: yesterday's hashes don't link


def test_no_identifier_is_kept_in_the_clear() -> None:
    uniques = DailyUniques()
    uniques.add("ap", [MAC_A])
    stored = b"".join(uniques._seen["ap"])
    assert MAC_A not in stored
