"""The spool's on-disk format: checksummed frames in segment files. Pure.

`directory` holds segment files named ``<id, 20 digits>.seg``: append-only logs of
frames, never rewritten (opening only cuts off a torn tail). Writing moves to a new
segment once the current one reaches the segment size (``segment_bytes``, ~1 MiB, but
at most an eighth of ``max_bytes`` so dropping a whole segment never empties the
spool). A segment is deleted once none of its records is waiting. Every frame is::

    offset size
    0      4    magic b"KSP1"
    4      1    kind: 1 record, 2 acks, 3 meta
    5      3    zero
    8      4    body length          (u32; every field little-endian)
    12     4    CRC32 of the body    (zlib.crc32)
    16     4    CRC32 of bytes 0-15
    20          body

- record: id u64, samples u32, first_ms i64, last_ms i64, then the payload.
- acks: ranges (first id u64, count u32) of ids acknowledged, or dropped to respect
  ``max_bytes``: they are never to be sent again.
- meta: id floor u64 (every id below it may have been handed out), dropped samples
  u64 (``kipu_spool_dropped_samples_total``, persisted). Every segment begins with one,
  and another is written when either value moves.

Checking the header apart from the body means a damaged body is skipped exactly (its
length is known good), while a damaged header sends the reader looking for the next
magic whose header checks out. Both count in `Spool.corrupt_records`; everything else
is kept. Data that ends inside a frame, or damage after which nothing valid follows,
is a torn tail (a power cut while writing) and is cut off on open.

"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

MAGIC = b"KSP1"
KIND_RECORD = 1
KIND_ACKS = 2
KIND_META = 3
HEADER_SIZE = 20
MAX_BODY = 64 << 20  # a longer length field is damage, not data
SEGMENT_NAME = re.compile(r"^(\d{20})\.seg$")

_HEAD = struct.Struct("<4sB3xII")  # magic, kind, body length, body CRC
_HEAD_CRC = struct.Struct("<I")
_RECORD = struct.Struct("<QIqq")  # id, samples, first_ms, last_ms
_RANGE = struct.Struct("<QI")  # first id, count
_META = struct.Struct("<QQ")  # id floor, dropped samples
_U32 = 1 << 32
_I64 = 1 << 63


@dataclass(frozen=True)
class Record:
    """One queued remote-write body."""

    id: int  # strictly increasing across the spool's life (survives restarts)
    payload: bytes
    samples: int  # how many samples the payload holds
    first_ms: int  # oldest sample timestamp in the record (ms)
    last_ms: int


@dataclass(frozen=True)
class Meta:
    """The spool's own state, carried in its log."""

    id_floor: int  # every id below this may have been handed out
    dropped_samples: int


@dataclass(frozen=True)
class Frame:
    """One decoded frame; `body` is a view into the data it was decoded from."""

    kind: int
    body: memoryview
    offset: int
    end: int  # offset of the next frame


class FrameError(ValueError):
    """A frame that cannot be read."""


class TruncatedFrameError(FrameError):
    """The data ends inside the frame."""


class CorruptFrameError(FrameError):
    """A checksum or a field does not check out.

    `end` is where the next frame starts when the header was intact (only the body is
    damaged), None when the header itself is damaged and the length cannot be trusted.
    """

    def __init__(self, message: str, end: int | None = None) -> None:
        super().__init__(message)
        self.end = end


def encode_frame(kind: int, body: bytes) -> bytes:
    if len(body) > MAX_BODY:
        raise ValueError(f"frame body of {len(body)} bytes exceeds {MAX_BODY}")
    head = _HEAD.pack(MAGIC, kind, len(body), zlib.crc32(body))
    return head + _HEAD_CRC.pack(zlib.crc32(head)) + body


def decode_frame(data: bytes | memoryview, offset: int = 0) -> Frame:
    """The frame at `offset`; TruncatedFrameError or CorruptFrameError when there is none."""
    view = memoryview(data)
    if len(view) - offset < HEADER_SIZE:
        raise TruncatedFrameError(f"{len(view) - offset} bytes left, a header needs {HEADER_SIZE}")
    magic, kind, length, body_crc = _HEAD.unpack_from(view, offset)
    (head_crc,) = _HEAD_CRC.unpack_from(view, offset + _HEAD.size)
    if magic != MAGIC:
        raise CorruptFrameError(f"bad magic {bytes(magic)!r}")
    if zlib.crc32(view[offset : offset + _HEAD.size]) != head_crc or length > MAX_BODY:
        raise CorruptFrameError("header checksum mismatch")
    end = offset + HEADER_SIZE + length
    if end > len(view):
        raise TruncatedFrameError(f"body of {length} bytes ends past the data")
    body = view[offset + HEADER_SIZE : end]
    if zlib.crc32(body) != body_crc:
        raise CorruptFrameError("body checksum mismatch", end)
    return Frame(kind, body, offset, end)


def encode_record(record: Record) -> bytes:
    """The frame of a record; ValueError when a field does not fit the format."""
    if not 0 <= record.id < 1 << 64:
        raise ValueError(f"record id {record.id} out of range")
    if not 0 <= record.samples < _U32:
        raise ValueError(f"samples {record.samples} out of range")
    for stamp in (record.first_ms, record.last_ms):
        if not -_I64 <= stamp < _I64:
            raise ValueError(f"timestamp {stamp} out of range")
    head = _RECORD.pack(record.id, record.samples, record.first_ms, record.last_ms)
    return encode_frame(KIND_RECORD, head + record.payload)


def decode_record(frame: Frame) -> Record:
    rid, samples, first_ms, last_ms = _record_fields(frame)
    return Record(rid, bytes(frame.body[_RECORD.size :]), samples, first_ms, last_ms)


def _record_fields(frame: Frame) -> tuple[int, int, int, int]:
    if frame.kind != KIND_RECORD or len(frame.body) < _RECORD.size:
        raise CorruptFrameError("not a record frame", frame.end)
    rid, samples, first_ms, last_ms = _RECORD.unpack_from(frame.body)
    return rid, samples, first_ms, last_ms


def id_ranges(ids: Iterable[int]) -> list[tuple[int, int]]:
    """Distinct ids as sorted (first, count) runs."""
    ranges: list[tuple[int, int]] = []
    for rid in sorted(set(ids)):
        if ranges and ranges[-1][0] + ranges[-1][1] == rid and ranges[-1][1] < _U32 - 1:
            ranges[-1] = (ranges[-1][0], ranges[-1][1] + 1)
        else:
            ranges.append((rid, 1))
    return ranges


def encode_acks(ids: Iterable[int]) -> bytes:
    body = b"".join(_RANGE.pack(first, count) for first, count in id_ranges(ids))
    return encode_frame(KIND_ACKS, body)


def decode_acks(frame: Frame) -> list[tuple[int, int]]:
    if frame.kind != KIND_ACKS or len(frame.body) % _RANGE.size:
        raise CorruptFrameError("not an acks frame", frame.end)
    return [(first, count) for first, count in _RANGE.iter_unpack(frame.body)]


def encode_meta(meta: Meta) -> bytes:
    return encode_frame(KIND_META, _META.pack(meta.id_floor, meta.dropped_samples))


def decode_meta(frame: Frame) -> Meta:
    # Longer bodies are accepted: a later version may add fields at the end.
    if frame.kind != KIND_META or len(frame.body) < _META.size:
        raise CorruptFrameError("not a meta frame", frame.end)
    id_floor, dropped = _META.unpack_from(frame.body)
    return Meta(id_floor, dropped)


class RecordInfo(NamedTuple):
    """Where a record sits in a segment, without its payload."""

    id: int
    offset: int
    size: int
    samples: int


@dataclass(frozen=True)
class SegmentScan:
    """What one segment file holds."""

    records: list[RecordInfo]
    acks: list[tuple[int, int]]
    meta: Meta | None  # the highest values of its meta frames
    corrupt: int  # damaged frames (or runs of damage) skipped
    valid_end: int  # everything from here on is a torn tail

    @property
    def first_ack(self) -> int | None:
        return min((first for first, _ in self.acks), default=None)


def scan_segment(data: bytes) -> SegmentScan:
    """Every intact frame of a segment; damage is skipped and counted, never raised."""
    view = memoryview(data)
    records: list[RecordInfo] = []
    acks: list[tuple[int, int]] = []
    id_floor = dropped = 0
    seen_meta = False
    corrupt = pos = valid_end = 0
    while pos < len(view):
        try:
            frame = decode_frame(view, pos)
        except TruncatedFrameError:
            break
        except CorruptFrameError as err:
            if err.end is None:
                resumed = _resync(data, pos + 1)
                if resumed is None:
                    break
                corrupt, pos = corrupt + 1, resumed
            else:
                corrupt, pos = corrupt + 1, err.end
            continue
        try:
            if frame.kind == KIND_RECORD:
                rid, samples, _, _ = _record_fields(frame)
                records.append(RecordInfo(rid, frame.offset, frame.end - frame.offset, samples))
            elif frame.kind == KIND_ACKS:
                acks.extend(decode_acks(frame))
            elif frame.kind == KIND_META:
                meta = decode_meta(frame)
                id_floor = max(id_floor, meta.id_floor)
                dropped = max(dropped, meta.dropped_samples)
                seen_meta = True
            # Other kinds are from a later version: skipped, they are intact.
        except CorruptFrameError:
            corrupt += 1
        pos = valid_end = frame.end
    meta_seen = Meta(id_floor, dropped) if seen_meta else None
    return SegmentScan(records, acks, meta_seen, corrupt, valid_end)


def _resync(data: bytes, start: int) -> int | None:
    """The next offset holding a frame header that checks out."""
    at = start
    while (at := data.find(MAGIC, at)) >= 0:
        try:
            decode_frame(data, at)
        except TruncatedFrameError:
            if len(data) - at >= HEADER_SIZE:
                return at
        except CorruptFrameError as err:
            if err.end is not None:
                return at
        else:
            return at
        at += 1
    return None
