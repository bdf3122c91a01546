"""The state folder: atomic, durable, locked, and forgiving of a damaged file."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from agent.link import LinkCounters
from agent.state import (
    STATE_FILE,
    SavedState,
    StateError,
    StateStore,
    decode,
    encode,
    offline_gap,
    read_boot_time,
)


def sample() -> SavedState:
    counters = LinkCounters(
        up_seconds=100.5,
        down_seconds=20.25,
        outages=3,
        last_change=1.7e9,
        last_state=True,
        offline_seconds=3600.0,
    )
    return SavedState(counters, heartbeat=1.7e9 + 50, boot_time=1.6e9)


def test_round_trip() -> None:
    assert decode(encode(sample())) == sample()


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"{",
        b"[]",
        b'{"format": 99}',
        b'{"format": 1}',
        b'{"format": 1, "counters": {"up_seconds": -1}}',
        b'{"format": 1, "counters": {"outages": "many"}}',
        b'{"format": 1, "counters": {"last_state": 3}}',
        b"\xff\xfe",
    ],
)
def test_damaged_files_are_rejected(data: bytes) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message varies by damage
        decode(data)


def test_store_saves_and_loads(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state")
    store.open()
    assert store.load() is None
    store.save(sample())
    assert store.load() == sample()
    assert not list((tmp_path / "state").glob(".*.tmp"))
    store.close()


def test_damaged_file_is_set_aside(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = StateStore(tmp_path)
    store.open()
    (tmp_path / STATE_FILE).write_bytes(b"\x00\x00garbage")
    assert store.load() is None
    assert list(tmp_path.glob(f"{STATE_FILE}.corrupt-*"))
    assert "unreadable" in caplog.text
    store.close()


def test_one_agent_per_folder(tmp_path: Path) -> None:
    first, second = StateStore(tmp_path), StateStore(tmp_path)
    first.open()
    with pytest.raises(StateError, match="in use"):
        second.open()
    first.close()
    second.open()
    second.close()


def test_unusable_folder_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StateError, match="cannot use state_dir"):
        StateStore(blocker / "state").open()


def test_offline_gap() -> None:
    assert offline_gap(None, 100.0) == 0.0
    assert offline_gap(90.0, 100.0) == 10.0
    assert offline_gap(110.0, 100.0) == 0.0  # the clock went back: count nothing


def test_boot_time(tmp_path: Path) -> None:
    fake = tmp_path / "stat"
    fake.write_text("cpu 1 2 3\nbtime 1700000000\nprocesses 5\n")
    assert read_boot_time(str(fake)) == 1700000000.0
    assert read_boot_time(str(tmp_path / "none")) is None
    real = read_boot_time()
    assert real is not None
    assert real > 1e9


def test_an_older_save_never_replaces_a_newer_one(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.open()
    newer = dataclasses.replace(sample(), seq=7)
    # Taken earlier (a lower sequence number), saved later, with a clock that went
    # forward in between: still older.
    older = SavedState(LinkCounters(up_seconds=1.0), heartbeat=2e9, boot_time=None, seq=6)
    store.save(newer)
    store.save(older)
    assert store.load() == dataclasses.replace(newer, seq=0)  # the number is not stored
    store.close()


def test_saves_are_ordered_by_sequence_not_by_the_clock(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.open()
    first = dataclasses.replace(sample(), seq=1)
    assert first.heartbeat is not None
    # NTP stepped the clock back an hour: the next save must still be written.
    stepped_back = dataclasses.replace(sample(), heartbeat=first.heartbeat - 3600, seq=2)
    store.save(first)
    store.save(stepped_back)
    assert store.load() == dataclasses.replace(stepped_back, seq=0)
    store.close()
