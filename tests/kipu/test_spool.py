"""The push spool: the frame format (pure), queue semantics, damage, full disk, crashes."""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from kipu.spool import Spool
from kipu.spool.frames import (
    HEADER_SIZE,
    KIND_ACKS,
    KIND_META,
    KIND_RECORD,
    CorruptFrameError,
    FrameError,
    Meta,
    Record,
    TruncatedFrameError,
    decode_acks,
    decode_frame,
    decode_meta,
    decode_record,
    encode_acks,
    encode_frame,
    encode_meta,
    encode_record,
    id_ranges,
    scan_segment,
)
from tests.support.fixtures import fail_missing

ROOT = Path(__file__).resolve().parents[2]


def payload_for(n: int, size: int = 300) -> bytes:
    return random.Random(n).randbytes(size)


def record(rid: int, size: int = 300) -> Record:
    return Record(
        rid, payload_for(rid, size), samples=100, first_ms=rid * 1000, last_ms=rid * 1000 + 15
    )


def opened(directory: Path, max_bytes: int = 1 << 20, segment_bytes: int = 8192) -> Spool:
    spool = Spool(directory, max_bytes, segment_bytes)
    spool.open()
    return spool


def fill(spool: Spool, count: int, size: int = 300, samples: int = 100) -> list[Record]:
    """Append `count` records whose payload and first_ms derive from a running number."""
    out = []
    for _ in range(count):
        n = random.getrandbits(40)
        out.append(spool.append(payload_for(n, size), samples, n, n + 15))
    return out


def ids(records: list[Record]) -> list[int]:
    return [r.id for r in records]


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.seg"))


def check_totals(spool: Spool) -> list[Record]:
    """bytes, samples and len agree with the records the spool hands out; returns them."""
    everything = spool.oldest(1 << 30)
    assert ids(spool.newest(1 << 30)) == ids(everything)[::-1]
    assert ids(everything) == sorted(set(ids(everything)))
    assert len(spool) == len(everything)
    assert spool.samples == sum(r.samples for r in everything)
    assert spool.bytes == sum(len(encode_record(r)) for r in everything)
    return everything


# --- the frame format, pure -----------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 4096, 70_000])
def test_record_round_trip(size: int) -> None:
    original = Record(2**64 - 1, payload_for(size, size), 2**32 - 1, -(2**63), 2**63 - 1)
    frame = encode_record(original)
    assert len(frame) == HEADER_SIZE + 28 + size
    decoded = decode_frame(frame)
    assert (decoded.kind, decoded.offset, decoded.end) == (KIND_RECORD, 0, len(frame))
    assert decode_record(decoded) == original


def test_frames_decode_in_sequence_at_offsets() -> None:
    frames = [encode_record(record(1)), encode_acks([5, 3, 4, 9]), encode_meta(Meta(77, 12))]
    data = b"".join(frames)
    first = decode_frame(data)
    second = decode_frame(data, first.end)
    third = decode_frame(data, second.end)
    assert decode_record(first) == record(1)
    assert decode_acks(second) == [(3, 3), (9, 1)]
    assert (second.kind, third.kind) == (KIND_ACKS, KIND_META)
    assert decode_meta(third) == Meta(77, 12)
    assert third.end == len(data)


@pytest.mark.parametrize(
    "bad",
    [
        Record(-1, b"", 0, 0, 0),
        Record(2**64, b"", 0, 0, 0),
        Record(1, b"", -1, 0, 0),
        Record(1, b"", 2**32, 0, 0),
        Record(1, b"", 0, 2**63, 0),
        Record(1, b"", 0, 0, -(2**63) - 1),
    ],
)
def test_fields_out_of_range_are_refused(bad: Record) -> None:
    with pytest.raises(ValueError, match="out of range"):
        encode_record(bad)


def test_every_single_bit_flip_is_detected() -> None:
    frame = encode_record(record(7, size=64))
    for bit in range(len(frame) * 8):
        damaged = bytearray(frame)
        damaged[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(FrameError):
            decode_frame(bytes(damaged))


def test_a_damaged_body_keeps_its_frame_boundary() -> None:
    frame = bytearray(encode_record(record(7, size=64)))
    frame[-1] ^= 0x10
    with pytest.raises(CorruptFrameError) as caught:
        decode_frame(bytes(frame))
    assert caught.value.end == len(frame)
    frame[9] ^= 0x01  # the length: now the header is damaged too
    with pytest.raises(CorruptFrameError) as caught:
        decode_frame(bytes(frame))
    assert caught.value.end is None


def test_every_prefix_is_truncated() -> None:
    frame = encode_record(record(7, size=64))
    for cut in range(len(frame)):
        with pytest.raises(TruncatedFrameError):
            decode_frame(frame[:cut])


def test_wrong_kind_is_refused() -> None:
    meta = decode_frame(encode_meta(Meta(1, 2)))
    with pytest.raises(CorruptFrameError):
        decode_record(meta)
    with pytest.raises(CorruptFrameError):
        decode_acks(meta)
    with pytest.raises(CorruptFrameError):
        decode_acks(decode_frame(encode_frame(KIND_ACKS, b"\x00" * 13)))


def test_id_ranges() -> None:
    assert id_ranges([]) == []
    assert id_ranges([4, 1, 2, 3, 3, 10, 8, 9, 20]) == [(1, 4), (8, 3), (20, 1)]


def test_scan_reads_records_acks_and_meta() -> None:
    data = b"".join(
        [
            encode_meta(Meta(10, 5)),
            encode_record(record(1)),
            encode_record(record(2)),
            encode_acks([1]),
            encode_meta(Meta(2000, 7)),
            encode_frame(99, b"from a later version"),
            encode_record(record(3)),
        ]
    )
    scan = scan_segment(data)
    assert [info.id for info in scan.records] == [1, 2, 3]
    assert all(info.samples == 100 for info in scan.records)
    for info in scan.records:
        assert decode_record(decode_frame(data[info.offset : info.offset + info.size])) == record(
            info.id
        )
    assert scan.acks == [(1, 1)]
    assert scan.meta == Meta(2000, 7)
    assert (scan.corrupt, scan.valid_end) == (0, len(data))


def test_scan_cuts_a_torn_tail_without_counting_it() -> None:
    whole = encode_record(record(1)) + encode_record(record(2))
    boundary = len(encode_record(record(1)))
    for cut in range(boundary, len(whole)):
        scan = scan_segment(whole[:cut])
        assert [info.id for info in scan.records] == [1]
        assert (scan.corrupt, scan.valid_end) == (0, boundary)
    zeros = scan_segment(whole + b"\x00" * 5000)  # a size extended without its data
    assert ([i.id for i in zeros.records], zeros.valid_end) == ([1, 2], len(whole))


def test_scan_skips_garbage_between_frames() -> None:
    one, two = encode_record(record(1)), encode_record(record(2))
    scan = scan_segment(one + b"KSP1 garbage that is no frame" + two)
    assert [info.id for info in scan.records] == [1, 2]
    assert scan.corrupt == 1
    assert scan.valid_end == len(one) + 29 + len(two)


def test_scan_never_raises_on_damage() -> None:
    rng = random.Random(1)
    frames = [encode_record(record(i, size=rng.randint(0, 200))) for i in range(1, 8)]
    data = b"".join(frames)
    for _ in range(2000):
        damaged = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        if rng.random() < 0.3:
            del damaged[rng.randrange(len(damaged)) :]
        scan = scan_segment(bytes(damaged))
        got = [info.id for info in scan.records]
        assert got == sorted(got)
        assert set(got) <= set(range(1, 8))
        assert scan.valid_end <= len(damaged)
    for _ in range(200):
        scan_segment(rng.randbytes(rng.randint(0, 3000)))


# --- the spool -----------------------------------------------------------------------------


def test_append_is_buffered_until_sync(tmp_path: Path) -> None:
    spool = opened(tmp_path)
    first = fill(spool, 3)
    assert ids(spool.newest(10)) == ids(first)[::-1]
    assert not segments(tmp_path)
    spool.sync()
    second = fill(spool, 2)
    assert ids(check_totals(spool)) == ids(first + second)
    # A power cut now: a second spool over the same files sees what was synced.
    again = opened(tmp_path)
    assert again.oldest(10) == first
    assert again.newest(1)[0].id < second[0].id


def test_ids_increase_and_records_keep_their_fields(tmp_path: Path) -> None:
    spool = opened(tmp_path)
    made = [spool.append(payload_for(i), i, i * 10, i * 10 + 5) for i in range(50)]
    assert ids(made) == list(range(1, 51))
    spool.sync()
    assert spool.oldest(50) == made
    assert spool.newest(3) == made[:-4:-1]
    spool.close()
    reopened = opened(tmp_path)
    assert reopened.oldest(100) == made
    assert reopened.append(b"x", 1, 0, 0).id > 50


def test_newest_and_oldest_mix_disk_and_memory(tmp_path: Path) -> None:
    spool = opened(tmp_path)
    on_disk = fill(spool, 40)
    spool.sync()
    in_memory = fill(spool, 5)
    everything = on_disk + in_memory
    assert ids(spool.newest(7)) == ids(everything[-7:])[::-1]
    assert ids(spool.oldest(7)) == ids(everything[:7])
    assert ids(spool.oldest(1000)) == ids(everything)
    skip = {everything[0].id, everything[2].id, everything[-1].id}
    assert ids(spool.oldest(2, exclude=skip)) == [everything[1].id, everything[3].id]
    assert ids(spool.newest(2, exclude=skip)) == [everything[-2].id, everything[-3].id]
    assert spool.newest(0) == []


def test_oldest_stops_at_max_bytes_in_order(tmp_path: Path) -> None:
    spool = opened(tmp_path, segment_bytes=4096)
    big = fill(spool, 3, size=2000)  # on disk, across segments
    for _ in range(3):
        spool.sync()
    small = fill(spool, 20, size=100)
    spool.sync()
    tail = fill(spool, 3, size=100)  # still in memory
    everything = big + small + tail
    # Each frame is its payload and a few bytes of framing: 2,500 bytes hold one big
    # record; the next big one does not fit, and no later small one jumps ahead of it.
    assert ids(spool.oldest(100, max_bytes=2500)) == [big[0].id]
    # Whatever its size, the first record comes.
    assert ids(spool.oldest(100, max_bytes=10)) == [big[0].id]
    # Enough for the big three and a few small ones, across segments, in order.
    taken = spool.oldest(100, max_bytes=3 * 2100 + 5 * 150)
    assert ids(taken) == ids(everything[: len(taken)])
    assert 3 + 3 <= len(taken) < len(everything)
    # Past the disk, the records in memory count too.
    skip = set(ids(big + small))
    assert ids(spool.oldest(100, exclude=skip, max_bytes=250)) == [tail[0].id, tail[1].id]
    assert ids(spool.oldest(100)) == ids(everything)


def test_out_of_order_acks_delete_whole_segments(tmp_path: Path) -> None:
    spool = opened(tmp_path, segment_bytes=4096)
    made = fill(spool, 60)
    for _ in range(6):  # several syncs, so segments fill up and roll over
        spool.sync()
    spool.ack([])
    spool.sync()
    files = segments(tmp_path)
    assert len(files) > 3
    rng = random.Random(3)
    order = ids(made)
    rng.shuffle(order)
    first_file = files[0]
    in_first = [r.id for r in made if r.id < int(files[1].stem)]
    spool.ack(order[: len(order) // 2])
    spool.ack(in_first)
    assert not first_file.exists()
    spool.ack(order)
    assert len(spool) == 0
    assert spool.bytes == spool.samples == 0
    spool.sync()
    assert len(segments(tmp_path)) == 1, "the segment being written stays"
    spool.close()
    reopened = opened(tmp_path)
    assert len(reopened) == 0
    assert reopened.append(b"x", 1, 0, 0).id > made[-1].id


def test_acks_survive_a_restart_and_unsynced_acks_come_back(tmp_path: Path) -> None:
    spool = opened(tmp_path)
    made = fill(spool, 20)
    spool.sync()
    spool.ack(ids(made[5:10]))
    spool.sync()
    spool.ack(ids(made[10:12]))  # not synced: a power cut forgets these acks
    again = opened(tmp_path)
    assert ids(again.oldest(100)) == ids(made[:5] + made[10:])


def test_acks_held_by_a_deleted_segment_are_written_again(tmp_path: Path) -> None:
    spool = opened(tmp_path, segment_bytes=4096)
    old = fill(spool, 12)
    spool.sync()
    spool.sync()
    (oldest_file,) = segments(tmp_path)
    # Acks for the oldest records land in the next segment, with newer records...
    spool.ack(ids(old[:3]))
    newer = fill(spool, 12)
    spool.sync()
    spool.sync()
    oldest_file, holder = segments(tmp_path)
    # ...which is then fully acknowledged and, once writing moves on, deleted first.
    spool.ack(ids(newer))
    tail = fill(spool, 1)
    spool.sync()
    assert oldest_file.exists()
    assert not holder.exists()
    spool.close()
    reopened = opened(tmp_path)
    assert ids(reopened.oldest(100)) == ids(old[3:] + tail)


def test_ids_are_not_reused_when_nothing_reached_the_disk(tmp_path: Path) -> None:
    spool = opened(tmp_path)
    made = fill(spool, 5)
    spool.ack(ids(made))  # acknowledged before any sync: never written
    spool.sync()
    (path,) = segments(tmp_path)
    assert path.stat().st_size < 100, "only the meta frame was written"
    later = fill(spool, 3)
    spool.ack(ids(later))
    # Power cut: records 6-8 never reached the disk, yet their ids stay taken.
    again = opened(tmp_path)
    assert len(again) == 0
    assert again.append(b"x", 1, 0, 0).id > later[-1].id
    # And over many restarts the ids still only grow.
    last = later[-1].id
    for _ in range(5):
        spool = opened(tmp_path)
        rid = spool.append(b"y", 1, 0, 0).id
        assert rid > last
        last = rid
        spool.ack([rid])
        spool.close()


def test_max_bytes_drops_the_oldest_and_counts_them(tmp_path: Path) -> None:
    max_bytes = 40_000
    spool = opened(tmp_path, max_bytes=max_bytes)
    assert spool.segment_bytes == 5000
    made: list[Record] = []
    for round_ in range(30):
        made += fill(spool, 5, size=700, samples=10)
        assert spool.bytes <= max_bytes
        if round_ % 3:
            spool.sync()
    left = check_totals(spool)
    assert ids(left) == ids(made[-len(left) :]), "the newest survive, contiguous"
    assert spool.bytes > max_bytes - 2 * spool.segment_bytes
    assert spool.dropped_samples == 10 * (len(made) - len(left))
    assert len(segments(tmp_path)) <= max_bytes // spool.segment_bytes + 2
    spool.close()
    reopened = opened(tmp_path, max_bytes=max_bytes)
    assert ids(reopened.oldest(1000)) == ids(left)
    assert reopened.dropped_samples == spool.dropped_samples


def test_a_smaller_max_bytes_applies_on_open(tmp_path: Path) -> None:
    spool = opened(tmp_path, max_bytes=1 << 20, segment_bytes=4096)
    made = fill(spool, 100, samples=7)
    spool.sync()
    spool.close()
    smaller = opened(tmp_path, max_bytes=10_000)
    left = check_totals(smaller)
    assert smaller.bytes <= 10_000
    assert ids(left) == ids(made[-len(left) :])
    assert smaller.dropped_samples == 7 * (len(made) - len(left))


def test_a_record_larger_than_max_bytes_is_dropped_alone(tmp_path: Path) -> None:
    spool = opened(tmp_path, max_bytes=10_000)
    kept = fill(spool, 3)
    spool.append(b"z" * 20_000, 42, 0, 0)
    assert ids(spool.oldest(10)) == ids(kept)
    assert spool.dropped_samples == 42


def test_dropping_reaches_buffered_records_when_one_segment_is_left(tmp_path: Path) -> None:
    spool = opened(tmp_path, max_bytes=5000, segment_bytes=1 << 20)
    assert spool.segment_bytes == 4096
    made = fill(spool, 8, size=500, samples=1)
    spool.sync()
    made += fill(spool, 8, size=500, samples=1)
    left = check_totals(spool)
    assert ids(left) == ids(made[-len(left) :])
    assert spool.dropped_samples == len(made) - len(left)
    spool.close()
    reopened = opened(tmp_path, max_bytes=5000)
    assert ids(reopened.oldest(100)) == ids(left), "drops are logged like acks"


def sync_three(directory: Path) -> tuple[list[Record], Path, int]:
    spool = opened(directory)
    made = fill(spool, 3)
    spool.sync()
    spool.close()
    (path,) = segments(directory)
    last_start = path.stat().st_size - len(encode_record(made[-1]))
    return made, path, last_start


def test_a_torn_tail_at_every_byte_is_cut_and_the_rest_kept(tmp_path: Path) -> None:
    made, path, last_start = sync_three(tmp_path / "orig")
    original = path.read_bytes()
    work = tmp_path / "work"
    work.mkdir()
    for cut in range(last_start, len(original)):
        torn = work / path.name
        torn.write_bytes(original[:cut])
        spool = opened(work)
        assert spool.oldest(10) == made[:2], cut
        assert spool.corrupt_records == 0
        assert torn.stat().st_size == last_start, "the torn tail is cut off"
        newer = spool.append(b"after", 1, 0, 0)
        spool.close()
        again = opened(work)
        assert ids(again.oldest(10)) == [*ids(made[:2]), newer.id]
        again.close()
        for leftover in segments(work):
            leftover.unlink()


def test_a_flipped_bit_in_the_middle_record_is_skipped_and_counted(tmp_path: Path) -> None:
    made, path, last_start = sync_three(tmp_path / "orig")
    original = path.read_bytes()
    middle_start = last_start - len(encode_record(made[1]))
    rng = random.Random(5)
    work = tmp_path / "work"
    work.mkdir()
    for at in range(middle_start, last_start):
        damaged = bytearray(original)
        damaged[at] ^= 1 << rng.randrange(8)
        (work / path.name).write_bytes(damaged)
        spool = opened(work)
        assert spool.oldest(10) == [made[0], made[2]], at
        assert spool.corrupt_records == 1
        spool.close()
        for leftover in segments(work):
            leftover.unlink()


def test_damage_after_opening_is_skipped_when_read(tmp_path: Path) -> None:
    spool = opened(tmp_path)
    made = fill(spool, 3)
    spool.sync()
    (path,) = segments(tmp_path)
    damaged = bytearray(path.read_bytes())
    damaged[-len(encode_record(made[2])) - 10] ^= 0x04  # inside the middle payload
    path.write_bytes(damaged)
    assert spool.oldest(10) == [made[0], made[2]]
    assert spool.corrupt_records == 1
    assert ids(check_totals(spool)) == [made[0].id, made[2].id]
    spool.close()
    reopened = opened(tmp_path)
    assert reopened.oldest(10) == [made[0], made[2]]
    assert reopened.corrupt_records == 1, "the damage is still in the file"


def test_a_failing_write_keeps_records_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = opened(tmp_path)
    before = fill(spool, 3)
    spool.sync()

    def broken(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", broken)
    during = fill(spool, 4)
    spool.sync()  # does not raise
    assert spool.last_error is not None
    assert spool.last_error.errno == errno.EIO
    assert ids(spool.oldest(100)) == ids(before + during)
    assert segments(tmp_path)[0].stat().st_size < sum(map(len, map(encode_record, before))) + 500
    monkeypatch.undo()
    spool.sync()
    assert spool.last_error is None
    again = opened(tmp_path)
    assert again.oldest(100) == before + during


def test_sync_in_a_thread_while_appending_and_acking(tmp_path: Path) -> None:
    spool = opened(tmp_path, segment_bytes=4096)
    stop = threading.Event()

    def syncing() -> None:
        while not stop.is_set():
            spool.sync()

    worker = threading.Thread(target=syncing)
    worker.start()
    rng = random.Random(9)
    expected: set[int] = set()
    try:
        for _ in range(3000):
            expected.update(ids(fill(spool, 1, size=rng.randint(50, 400))))
            if rng.random() < 0.4 and expected:
                gone = set(ids(spool.oldest(3) + spool.newest(2)))
                spool.ack(gone)
                expected -= gone
    finally:
        stop.set()
        worker.join()
    assert set(ids(check_totals(spool))) == expected
    spool.close()
    assert set(ids(opened(tmp_path).oldest(10**6))) == expected


# --- a real full disk ------------------------------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 KiB tmpfs, unmounted afterwards."""
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode:
        fail_missing("tmpfs", mounted.stderr.strip(), "mounting one needs root, as in CI")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill_disk(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            try:
                os.write(fd, b"\xff" * 4096)
            except OSError as err:
                if err.errno != errno.ENOSPC:
                    raise
                return
    finally:
        os.close(fd)


def test_a_full_disk_drops_the_oldest_segments_to_make_room(tiny_disk: Path) -> None:
    spool = opened(tiny_disk / "spool", max_bytes=1 << 20, segment_bytes=16384)
    made: list[Record] = []
    for _ in range(120):  # 480 KB of records on a 256 KiB disk
        made += fill(spool, 1, size=4000)
        spool.sync()
        assert spool.last_error is None, "room is made by dropping the oldest segments"
    assert spool.dropped_samples > 0
    left = check_totals(spool)
    assert ids(left) == ids(made[-len(left) :])
    assert spool.dropped_samples == 100 * (len(made) - len(left))
    spool.close()
    reopened = opened(tiny_disk / "spool", max_bytes=1 << 20)
    assert reopened.oldest(1000) == left
    assert reopened.dropped_samples == spool.dropped_samples
    reopened.close()


def test_a_full_disk_with_one_segment_starts_a_new_one(tiny_disk: Path) -> None:
    spool = opened(tiny_disk / "spool", max_bytes=8 << 20, segment_bytes=1 << 20)
    made: list[Record] = []
    for _ in range(100):  # one 1 MiB segment would never fit on the disk
        made += fill(spool, 1, size=4000)
        spool.sync()
        assert spool.last_error is None
    assert spool.dropped_samples > 0
    left = check_totals(spool)
    assert ids(left) == ids(made[-len(left) :])
    assert spool.dropped_samples == 100 * (len(made) - len(left))
    assert len(segments(tiny_disk / "spool")) == 1
    spool.close()
    assert opened(tiny_disk / "spool", max_bytes=8 << 20).oldest(1000) == left


def test_a_disk_full_of_other_data_keeps_records_in_memory_until_space_returns(
    tiny_disk: Path,
) -> None:
    spool = opened(tiny_disk / "spool", max_bytes=64 * 1024)
    filler = tiny_disk / "filler"
    fill_disk(filler)
    made: list[Record] = []
    for _ in range(30):  # 120 KB: more than max_bytes
        made += fill(spool, 1, size=4000)
        spool.sync()
        assert spool.last_error is not None
        assert spool.last_error.errno == errno.ENOSPC
    in_memory = check_totals(spool)
    assert spool.bytes <= 64 * 1024
    assert ids(in_memory) == ids(made[-len(in_memory) :])
    assert spool.dropped_samples == 100 * (len(made) - len(in_memory))
    filler.unlink()
    spool.sync()
    assert spool.last_error is None
    assert opened(tiny_disk / "spool", max_bytes=64 * 1024).oldest(1000) == in_memory, (
        "a power cut right after the recovering sync loses nothing"
    )
    fill(spool, 1, size=4000)
    expected = check_totals(spool)
    spool.close()
    reopened = opened(tiny_disk / "spool", max_bytes=64 * 1024)
    assert reopened.oldest(1000) == expected
    assert reopened.dropped_samples == spool.dropped_samples
    reopened.close()


# --- a process killed at random moments ------------------------------------------------------

CHILD = textwrap.dedent(
    """\
    import random, sys
    from pathlib import Path
    from kipu.spool import Spool

    rng = random.Random(int(sys.argv[2]))
    spool = Spool(Path(sys.argv[1]), max_bytes=1 << 30, segment_bytes=16384)
    spool.open()
    print("open", flush=True)
    while True:
        batch = []
        for _ in range(rng.randint(1, 4)):
            n = rng.getrandbits(48)
            size = random.Random(n).randint(50, 3000)
            batch.append(spool.append(random.Random(n).randbytes(size), 100, n, n + 15))
        if rng.random() < 0.3:
            oldest = [r.id for r in spool.oldest(rng.randint(1, 6))]
            print("acked", *oldest, flush=True)
            spool.ack(oldest)
        spool.sync()
        print("synced", *(f"{r.id}:{r.first_ms}" for r in batch), flush=True)
    """
)


def test_records_reported_synced_survive_sigkill_at_random_moments(tmp_path: Path) -> None:
    directory = tmp_path / "spool"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rng = random.Random(20240611)
    required: dict[int, int] = {}  # id -> first_ms
    maybe_gone: set[int] = set()
    highest = 0
    for kill in range(30):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(directory), str(kill)],
            stdout=subprocess.PIPE,
            env=env,
            text=True,
        )
        try:
            assert child.stdout is not None
            assert child.stdout.readline() == "open\n"
            threading.Event().wait(rng.uniform(0.0, 0.15))
        finally:
            os.kill(child.pid, signal.SIGKILL)
            output, _ = child.communicate()
        assert child.returncode == -signal.SIGKILL
        lines = output.splitlines()
        if lines and not output.endswith("\n"):
            lines.pop()  # cut mid-line by the kill
        first_this_run: int | None = None
        for line in lines:
            word, *items = line.split()
            if word == "acked":
                maybe_gone.update(map(int, items))
            elif word == "synced":
                for item in items:
                    rid, first_ms = map(int, item.split(":"))
                    required[rid] = first_ms
                    first_this_run = first_this_run or rid
        if first_this_run is not None:
            assert first_this_run > highest, "ids are never reused across restarts"
        spool = opened(directory, max_bytes=1 << 30, segment_bytes=16384)
        present = {r.id: r for r in spool.oldest(1 << 30)}
        assert spool.corrupt_records == 0
        for rid, first_ms in required.items():
            if rid in maybe_gone:
                continue
            assert rid in present, f"kill {kill}: record {rid} reported synced is missing"
            assert present[rid].first_ms == first_ms
        for r in present.values():
            size = random.Random(r.first_ms).randint(50, 3000)
            assert r.payload == random.Random(r.first_ms).randbytes(size), "intact"
        highest = max([highest, *present, *required])
        spool.close()
    assert len(required) > 100, "the child got to sync often enough to mean something"
