"""The spool: a durable, bounded, crash-safe queue of remote-write bodies on disk.

The agent appends one record every push interval (a compressed remote-write body, one
snapshot of every series); the collector appends one per accepted push to its forward
queue. Both call `Spool.sync()` before they rely on it. The sender lanes
(`kipu.lanes`) send the newest records first and drain the backlog from the oldest
beside it, acknowledging records in any order. Standard library only.

The frames and segment files are described in `kipu.spool.frames`.

Acknowledgements ride in the same log: `sync()` writes one acks frame (the ids
acknowledged since the last sync, as ranges) into the current segment together with the
new records, so one sync is one ``write`` and one ``fdatasync``. A segment may thus hold
acks for older segments; when it is deleted before them, their acknowledged ids are
written again at the next sync. Opening reads every segment, verifies every CRC and
subtracts the acknowledged ids (~40 ms per 20 MB on a PC; expect seconds for a full
256 MiB spool on a router's flash).

Record ids keep increasing across restarts: a restart starts above the highest id on
disk, above every segment name and above the meta floor, which is leased `ID_LEASE`
ids ahead of the ids handed out, so an id acknowledged before it ever reached the disk
is not handed out again either. The only ids that can come back are those handed out
past the floor and lost with their records in a power cut before the sync that would
have moved it: nothing refers to them any more.

Durability and the fsync policy
-------------------------------
`append()` only buffers. `sync()` writes the buffered records, the acks and, when it
moved, the meta with one ``write`` and one ``fdatasync`` (one per segment when a long
backlog held in memory is flushed at once); the directory is fsynced too when the sync
created or deleted a segment (about once per segment). Nothing else writes, so the
flash sees one small append per push interval and no rewrites; an idle spool writes
only a 36-byte meta frame every `ID_LEASE` / 2 ids. Records acknowledged before a sync
never reach the disk at all: with the link up, appending, pushing and then syncing
keeps the flash almost untouched. On power loss at any instant:

- records appended since the last completed `sync()` are lost (at most one push
  interval; while the disk is full, everything held in memory since it filled);
- acks since the last sync are forgotten, so those records are sent again: identical
  samples at identical timestamps, which Prometheus accepts as duplicates;
- a segment deleted since the last sync may come back: its records are sent again.

A deleted segment whose file holds the only copy of acks for older segments, or of the
newest meta, is unlinked by the next sync once it has written them again: the file
system may commit an unlink before any fsync asks for it.

Bounds: ``max_bytes`` counts the frames of waiting records, on disk and in memory. The
files may exceed it by at most the segment being written (records dropped from it one
by one stay in the file until it is deleted) plus ack and meta frames. In memory the
spool keeps ~25 bytes of index per waiting record and the payloads of records not yet
written; `newest()` and `oldest()` read payloads from the segment files.

A full disk (ENOSPC, EDQUOT) never raises: the oldest segments are dropped (counted in
`Spool.dropped_samples`) to make room and the write is retried once; if it still fails
the records stay in memory, still bounded by ``max_bytes``, and the next sync tries
again, so the spool recovers by itself when space returns. Other write errors (EIO)
keep the records in memory the same way; `Spool.last_error` says why until a write
succeeds. `Spool` is thread-safe: `sync()` may run in a worker thread while the event
loop appends, reads and acknowledges; the disk write itself runs outside the lock.
"""

from __future__ import annotations

import bisect
import builtins
import errno
import itertools
import logging
import os
import sys
import threading
from array import array
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from kipu.fs import LOCAL, FileSystem
from kipu.spool.frames import (
    SEGMENT_NAME,
    CorruptFrameError,
    FrameError,
    Meta,
    Record,
    SegmentScan,
    decode_frame,
    decode_record,
    encode_acks,
    encode_meta,
    encode_record,
    scan_segment,
)

log = logging.getLogger(__name__)

MIN_SEGMENT_BYTES = 4096
ID_LEASE = 1024  # ids the meta floor runs ahead of the ids handed out
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class _Buffered(NamedTuple):
    record: Record
    frame: bytes


class _Segment:
    """One segment file and the index of its records (compact: ~25 bytes per record)."""

    __slots__ = (
        "gone",
        "ids",
        "live_bytes",
        "live_count",
        "live_samples",
        "name",
        "offsets",
        "path",
        "refs_older",
        "samples",
        "size",
        "sizes",
    )

    def __init__(self, name: int, path: Path) -> None:
        self.name = name
        self.path = path
        self.size = 0  # bytes of intact frames: where the next write goes
        self.ids: array[int] = array("Q")
        self.offsets: array[int] = array("Q")
        self.sizes: array[int] = array("I")
        self.samples: array[int] = array("I")
        self.gone = bytearray()  # 1: acknowledged, dropped or unreadable
        self.live_count = self.live_bytes = self.live_samples = 0
        self.refs_older = False  # holds acks for records of older segments

    @property
    def first_id(self) -> int:
        return self.ids[0] if self.ids else self.name

    def add(self, rid: int, offset: int, size: int, samples: int, gone: bool) -> None:
        self.ids.append(rid)
        self.offsets.append(offset)
        self.sizes.append(size)
        self.samples.append(samples)
        self.gone.append(gone)
        if not gone:
            self.live_count += 1
            self.live_bytes += size
            self.live_samples += samples

    def index(self, rid: int) -> int | None:
        at = bisect.bisect_left(self.ids, rid)
        return at if at < len(self.ids) and self.ids[at] == rid else None

    def mark_gone(self, at: int) -> tuple[int, int]:
        """Take record `at` out of the queue; its (bytes, samples), zero when it was out."""
        if self.gone[at]:
            return 0, 0
        self.gone[at] = 1
        self.live_count -= 1
        self.live_bytes -= self.sizes[at]
        self.live_samples -= self.samples[at]
        return self.sizes[at], self.samples[at]

    def live(self, reverse: bool) -> Iterator[int]:
        order = range(len(self.ids) - 1, -1, -1) if reverse else range(len(self.ids))
        return (at for at in order if not self.gone[at])

    def gone_ids(self) -> Iterator[int]:
        return (rid for rid, gone in zip(self.ids, self.gone, strict=True) if gone)


@dataclass
class _Plan:
    """One write into the current segment, prepared under the lock."""

    segment: _Segment
    fd: int
    start: int
    data: bytes
    records: list[_Buffered]  # their frames end `data`, in order
    acks: set[int]
    meta: Meta | None


class Spool:
    """A durable, bounded queue of records in `directory` (see the module docstring)."""

    def __init__(
        self,
        directory: Path,
        max_bytes: int,
        segment_bytes: int = 1 << 20,
        *,
        fs: FileSystem = LOCAL,
    ) -> None:
        if max_bytes <= 0 or segment_bytes <= 0:
            raise ValueError("max_bytes and segment_bytes must be positive")
        self.directory = directory
        self._fs = fs
        self.max_bytes = max_bytes
        self.segment_bytes = max(MIN_SEGMENT_BYTES, min(segment_bytes, max_bytes // 8))
        self.dropped_samples = 0  # because of max_bytes or a full disk; persisted
        self.corrupt_records = 0  # damaged frames skipped since open (or since this process)
        self.last_error: OSError | None = None  # the last failed write, None once one succeeds
        self._lock = threading.RLock()
        self._sync_lock = threading.Lock()  # one writer at a time
        self._opened = self._closed = False
        self._segments: list[_Segment] = []  # oldest first; the last is written to
        self._fd: int | None = None  # append descriptor of the last segment
        self._pending: dict[int, _Buffered] = {}  # appended, not yet written
        self._inflight: dict[int, _Buffered] = {}  # being written by sync()
        self._inflight_gone: set[int] = set()  # of those, acknowledged or dropped meanwhile
        self._unlogged_acks: set[int] = set()  # gone ids on disk whose ack is not yet written
        self._bytes = self._samples = 0
        self._next_id = 1
        self._floor_logged = 0
        self._dropped_logged = 0
        self._dir_dirty = False
        self._doomed: list[Path] = []  # deleted segments to unlink once nothing is unwritten

    # -- public API --

    @property
    def bytes(self) -> int:
        """Bytes (frames) of unacknowledged records, on disk and buffered."""
        return self._bytes

    @property
    def next_id(self) -> int:
        """The id the next appended record gets: every waiting record's id is below it."""
        return self._next_id

    @property
    def samples(self) -> int:
        """Samples in unacknowledged records."""
        return self._samples

    def __len__(self) -> int:
        """Unacknowledged records."""
        with self._lock:
            on_disk = sum(seg.live_count for seg in self._segments)
            in_flight = len(self._inflight) - len(self._inflight_gone)
            return on_disk + in_flight + len(self._pending)

    def open(self) -> None:
        """Create the folder, load every segment, cut torn tails, apply the acks.

        Damaged data never raises: it is skipped and counted in `corrupt_records`.
        OSError only when the folder itself cannot be created or listed.
        """
        with self._lock:
            if self._opened:
                raise RuntimeError("spool already opened")
            self._fs.makedirs(self.directory, 0o750)
            names = sorted(
                int(match.group(1))
                for entry in self._fs.listdir(self.directory)
                if (match := SEGMENT_NAME.match(entry))
            )
            acks: list[tuple[int, int]] = []
            id_floor = highest = 0
            for name in names:
                loaded = self._load_segment(name, highest)
                if loaded is None:
                    continue
                segment, scan = loaded
                self._segments.append(segment)
                acks.extend(scan.acks)
                if segment.ids:
                    highest = segment.ids[-1]
                if scan.meta is not None:
                    id_floor = max(id_floor, scan.meta.id_floor)
                    self.dropped_samples = max(self.dropped_samples, scan.meta.dropped_samples)
            keys = [segment.first_id for segment in self._segments]
            for first, count in acks:
                self._apply_ack_range(keys, first, count)
            for segment in self._segments:
                self._bytes += segment.live_bytes
                self._samples += segment.live_samples
            for segment in self._segments[:-1]:
                if not segment.live_count:
                    self._delete_segment(segment)
            self._next_id = max(id_floor, highest + 1, names[-1] + 1 if names else 1)
            self._floor_logged = id_floor
            self._dropped_logged = self.dropped_samples
            self._make_room(0)  # max_bytes may have shrunk since the last run
            self._opened = True
            log.info(
                "spool %s: %d records waiting (%d bytes, %d samples), next id %d",
                self.directory,
                len(self),
                self._bytes,
                self._samples,
                self._next_id,
            )

    def append(self, payload: builtins.bytes, samples: int, first_ms: int, last_ms: int) -> Record:
        """Queue a record (in memory until the next `sync()`), dropping the oldest if full.

        A record larger than ``max_bytes`` on its own is dropped (counted) at once.
        """
        with self._lock:
            self._check_open()
            record = Record(self._next_id, bytes(payload), samples, first_ms, last_ms)
            frame = encode_record(record)
            self._next_id += 1
            if len(frame) > self.max_bytes:
                log.warning("record of %d bytes exceeds max_spool, dropped", len(frame))
                self.dropped_samples += samples
                return record
            self._make_room(len(frame))
            self._pending[record.id] = _Buffered(record, frame)
            self._bytes += len(frame)
            self._samples += samples
            return record

    def sync(self) -> None:
        """Write buffered records and acks to disk and fdatasync them; never raises OSError.

        A failed write leaves the records in memory for the next call (see `last_error`).
        """
        with self._sync_lock:
            with self._lock:
                self._check_open()
            retried = False
            while True:
                plan: _Plan | None = None
                failure: OSError | None = None
                with self._lock:
                    try:
                        plan = self._plan()
                    except OSError as err:
                        failure = err
                if plan is not None:
                    # Outside the lock: fdatasync on flash can take a second, and the
                    # event loop keeps appending, reading and acknowledging meanwhile.
                    failure = _write_durably(self._fs, plan.fd, plan.start, plan.data)
                    with self._lock:
                        if failure is None:
                            self._commit(plan)
                        else:
                            self._undo()
                if failure is None:
                    if plan is None:
                        break
                    continue
                if failure.errno in _DISK_FULL and not retried:
                    retried = True
                    wanted = len(plan.data) if plan is not None else MIN_SEGMENT_BYTES
                    with self._lock:
                        freed = self._free_space(wanted)
                        self._unlink_doomed()  # space first: at worst acks are forgotten
                    if freed:
                        continue
                self._failed(failure)
                return
            self._sync_directory()
            if self.last_error is not None:
                log.info("spool %s: writing again", self.directory)
                self.last_error = None

    def newest(self, limit: int, exclude: Collection[int] = ()) -> list[Record]:
        """Up to `limit` unacknowledged records, newest first, skipping ids in `exclude`."""
        return self._select(limit, exclude, newest_first=True)

    def oldest(
        self, limit: int, exclude: Collection[int] = (), max_bytes: int | None = None
    ) -> list[Record]:
        """Up to `limit` unacknowledged records, oldest first, skipping ids in `exclude`.

        With `max_bytes`, records stop before their frames pass that many bytes (the
        first is always returned): a reader after a bounded batch does not read, under
        the spool's lock, records it would put back.
        """
        return self._select(limit, exclude, newest_first=False, max_bytes=max_bytes)

    def waiting(self, rid: int) -> bool:
        """Whether record `rid` is still waiting (in memory only: no I/O)."""
        with self._lock:
            if rid in self._pending:
                return True
            if rid in self._inflight:
                return rid not in self._inflight_gone
            found = self._locate(rid)
            return found is not None and not found[0].gone[found[1]]

    def ack(self, ids: Iterable[int]) -> None:
        """Take records out of the queue (any order; unknown ids are ignored).

        A segment left with no waiting record is deleted; the acks themselves reach the
        disk at the next `sync()`.
        """
        with self._lock:
            self._check_open()
            for rid in ids:
                self._take_out(rid)

    def close(self) -> None:
        """Sync and release the files. The spool cannot be used afterwards."""
        if not self._opened or self._closed:
            return
        self.sync()
        with self._sync_lock, self._lock:
            if self._fd is not None:
                self._fs.close(self._fd)
                self._fd = None
            self._closed = True

    # -- opening --

    def _load_segment(self, name: int, highest: int) -> tuple[_Segment, SegmentScan] | None:
        path = self.directory / f"{name:020d}.seg"
        try:
            data = self._fs.read_bytes(path)
        except OSError as err:
            log.error("spool segment %s unreadable, skipped: %s", path, err)
            self.corrupt_records += 1
            return None
        scan = scan_segment(data)
        segment = _Segment(name, path)
        for info in scan.records:
            if info.id <= highest:  # ids only grow: a stray copy, not ours to send twice
                self.corrupt_records += 1
                continue
            segment.add(info.id, info.offset, info.size, info.samples, gone=False)
            highest = info.id
        segment.size = scan.valid_end
        first_ack = scan.first_ack
        segment.refs_older = first_ack is not None and first_ack < segment.first_id
        if scan.corrupt:
            log.warning("spool segment %s: %d damaged frames skipped", path, scan.corrupt)
            self.corrupt_records += scan.corrupt
        if scan.valid_end < len(data):
            log.warning(
                "spool segment %s: torn tail of %d bytes cut off",
                path,
                len(data) - scan.valid_end,
            )
            try:
                self._fs.truncate(path, scan.valid_end)
            except OSError as err:
                log.error("cannot cut the torn tail of %s: %s", path, err)
        return segment, scan

    def _apply_ack_range(self, keys: list[int], first: int, count: int) -> None:
        at = max(bisect.bisect_right(keys, first) - 1, 0)
        for segment in self._segments[at:]:
            if segment.ids and segment.ids[0] >= first + count:
                break
            lo = bisect.bisect_left(segment.ids, first)
            hi = bisect.bisect_left(segment.ids, first + count)
            for index in range(lo, hi):
                segment.mark_gone(index)

    # -- queue bookkeeping (under the lock) --

    def _check_open(self) -> None:
        if not self._opened or self._closed:
            raise RuntimeError("spool is not open")

    def _locate(self, rid: int) -> tuple[_Segment, int] | None:
        at = bisect.bisect_right(self._segments, rid, key=lambda seg: seg.first_id) - 1
        if at < 0:
            return None
        segment = self._segments[at]
        index = segment.index(rid)
        return None if index is None else (segment, index)

    def _take_out(self, rid: int, dropped: bool = False) -> None:
        """Acknowledge (or drop, counting its samples) one record wherever it is."""
        if (buffered := self._pending.pop(rid, None)) is not None:
            size, samples = len(buffered.frame), buffered.record.samples
        elif (buffered := self._inflight.get(rid)) is not None:
            if rid in self._inflight_gone:
                return
            self._inflight_gone.add(rid)
            self._unlogged_acks.add(rid)
            size, samples = len(buffered.frame), buffered.record.samples
        elif (found := self._locate(rid)) is not None:
            segment, index = found
            size, samples = segment.mark_gone(index)
            if not size:
                return
            self._unlogged_acks.add(rid)
            if not segment.live_count and segment is not self._segments[-1]:
                self._delete_segment(segment)
        else:
            return
        self._bytes -= size
        self._samples -= samples
        if dropped:
            self.dropped_samples += samples

    def _make_room(self, size: int) -> None:
        """Drop the oldest records until `size` more bytes fit: whole segments first."""
        while self._bytes + size > self.max_bytes and self._bytes > 0:
            if len(self._segments) > 1:
                self._drop_segment(self._segments[0], "max_spool reached")
                continue
            oldest = self._oldest_live_id()
            if oldest is None:
                break
            self._take_out(oldest, dropped=True)

    def _oldest_live_id(self) -> int | None:
        for segment in self._segments:
            for index in segment.live(reverse=False):
                return segment.ids[index]
        for rid in self._inflight:
            if rid not in self._inflight_gone:
                return rid
        return next(iter(self._pending), None)

    def _drop_segment(self, segment: _Segment, why: str) -> None:
        """Delete a segment with the records still waiting in it, counting them."""
        if segment.live_count:
            log.warning(
                "spool: %s, dropping %d records (%d samples) from %s",
                why,
                segment.live_count,
                segment.live_samples,
                segment.path.name,
            )
        self.dropped_samples += segment.live_samples
        self._bytes -= segment.live_bytes
        self._samples -= segment.live_samples
        for index in range(len(segment.ids)):
            segment.mark_gone(index)
        self._delete_segment(segment)

    def _delete_segment(self, segment: _Segment) -> None:
        at = self._segments.index(segment)
        if segment.refs_older:
            # Its acks for older segments vanish with it: write them again.
            for older in self._segments[:at]:
                self._unlogged_acks.update(older.gone_ids())
        del self._segments[at]
        if at == len(self._segments) and self._fd is not None:
            self._fs.close(self._fd)
            self._fd = None
        if (segment.refs_older and at) or not any(later.size for later in self._segments[at:]):
            # Its acks for older segments, or the newest meta (id floor, dropped samples),
            # are on disk nowhere else yet: an unlink that reached the disk before the next
            # write would bring acknowledged records back, or lower the floor.
            self._doomed.append(segment.path)
        else:
            self._unlink(segment.path)

    def _unlink(self, path: Path) -> None:
        try:
            self._fs.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as err:
            log.error("cannot delete spool segment %s: %s", path, err)
        self._dir_dirty = True

    def _unlink_doomed(self) -> None:
        for path in self._doomed:
            self._unlink(path)
        self._doomed.clear()

    # -- writing --

    def _plan(self) -> _Plan | None:
        """The next write: meta and acks, then as many buffered records as fit."""
        self._unlogged_acks = {rid for rid in self._unlogged_acks if self._locate(rid)}
        current = self._segments[-1] if self._segments else None
        needs_floor = self._next_id + ID_LEASE // 2 > self._floor_logged
        needs_meta = needs_floor or self.dropped_samples != self._dropped_logged
        if not (self._pending or self._unlogged_acks or needs_meta):
            self._unlink_doomed()  # everything they held is written again by now
            return None
        if current is None or (self._pending and current.size >= self.segment_bytes):
            current = self._new_segment()
        if self._fd is None:
            self._fd = self._fs.open(current.path, os.O_WRONLY | os.O_CLOEXEC)
        frames: list[bytes] = []
        meta = None
        if needs_meta or current.size == 0:
            meta = Meta(max(self._floor_logged, self._next_id + ID_LEASE), self.dropped_samples)
            frames.append(encode_meta(meta))
        acks = set(self._unlogged_acks)
        if acks:
            frames.append(encode_acks(acks))
        room = self.segment_bytes - current.size - sum(map(len, frames))
        records: list[_Buffered] = []
        for buffered in self._pending.values():
            if records and len(buffered.frame) > room:
                break
            records.append(buffered)
            room -= len(buffered.frame)
        for buffered in records:
            del self._pending[buffered.record.id]
            self._inflight[buffered.record.id] = buffered
        frames.extend(buffered.frame for buffered in records)
        return _Plan(current, self._fd, current.size, b"".join(frames), records, acks, meta)

    def _new_segment(self) -> _Segment:
        """Create the next segment file, named at or below the first id it will hold."""
        first = next(iter(self._pending), self._next_id)
        name = max(first, self._segments[-1].name + 1) if self._segments else first
        segment = _Segment(name, self.directory / f"{name:020d}.seg")
        fd = self._fs.open(segment.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
        if self._fd is not None:
            self._fs.close(self._fd)
        self._fd = fd
        self._segments.append(segment)
        self._dir_dirty = True
        previous = self._segments[-2] if len(self._segments) > 1 else None
        if previous is not None and not previous.live_count:
            self._delete_segment(previous)
        return segment

    def _commit(self, plan: _Plan) -> None:
        segment = plan.segment
        offset = plan.start + len(plan.data) - sum(len(b.frame) for b in plan.records)
        for buffered in plan.records:
            rid = buffered.record.id
            segment.add(rid, offset, len(buffered.frame), buffered.record.samples, gone=False)
            if rid in self._inflight_gone:
                segment.mark_gone(len(segment.ids) - 1)
            offset += len(buffered.frame)
        segment.size = plan.start + len(plan.data)
        if plan.acks and min(plan.acks) < segment.first_id:
            segment.refs_older = True
        self._unlogged_acks -= plan.acks
        self._inflight.clear()
        self._inflight_gone.clear()
        if plan.meta is not None:
            self._floor_logged = plan.meta.id_floor
            self._dropped_logged = plan.meta.dropped_samples
        if segment is not self._segments[-1] and not segment.live_count:
            self._delete_segment(segment)

    def _undo(self) -> None:
        """Put the records of a failed write back in front of the buffer."""
        kept = {rid: b for rid, b in self._inflight.items() if rid not in self._inflight_gone}
        self._unlogged_acks -= self._inflight_gone
        self._pending = kept | self._pending
        self._inflight.clear()
        self._inflight_gone.clear()

    def _free_space(self, wanted: int) -> int:
        """Drop the oldest segments (the current one last) to free `wanted` bytes."""
        freed = 0
        while freed < wanted and len(self._segments) > 1:
            freed += self._segments[0].size
            self._drop_segment(self._segments[0], "disk full")
        current = self._segments[-1] if self._segments else None
        if freed < wanted and current is not None and current.size and current.live_count:
            # Only the segment being written is left: start a new one and drop it.
            try:
                self._new_segment()
            except OSError as err:
                log.error("spool: disk full, cannot start a new segment: %s", err)
                return freed
            freed += current.size
            self._drop_segment(current, "disk full")
        return freed

    def _failed(self, failure: OSError) -> None:
        if self.last_error is None or self.last_error.errno != failure.errno:
            with self._lock:
                log.error(
                    "spool %s: cannot write (%s); %d records (%d bytes) kept in memory, "
                    "retrying at every sync",
                    self.directory,
                    failure.strerror or failure,
                    len(self._pending),
                    sum(len(b.frame) for b in self._pending.values()),
                )
        self.last_error = failure

    def _sync_directory(self) -> None:
        with self._lock:
            if not self._dir_dirty:
                return
            self._dir_dirty = False
        try:
            fd = self._fs.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                self._fs.fsync(fd)
            finally:
                self._fs.close(fd)
        except OSError as err:
            log.warning("spool: cannot fsync %s: %s", self.directory, err)
            with self._lock:
                self._dir_dirty = True

    # -- reading --

    def _select(
        self,
        limit: int,
        exclude: Collection[int],
        newest_first: bool,
        max_bytes: int | None = None,
    ) -> list[Record]:
        budget = [max_bytes if max_bytes is not None else sys.maxsize]
        with self._lock:
            self._check_open()
            if limit <= 0:
                return []
            memory = [
                b.record
                for b in itertools.chain(self._inflight.values(), self._pending.values())
                if b.record.id not in self._inflight_gone and b.record.id not in exclude
            ]
            out: list[Record] = []
            if newest_first:
                out.extend(reversed(memory[-limit:]))
            # A copy: a record found damaged may take its segment with it.
            segments = self._segments[::-1] if newest_first else self._segments[:]
            for segment in segments:
                if len(out) >= limit:
                    break
                out.extend(
                    self._read_live(
                        segment, limit - len(out), exclude, newest_first, budget=budget, before=out
                    )
                )
            if not newest_first:
                for record in memory[: limit - len(out)]:
                    if out and len(record.payload) > budget[0]:
                        break
                    budget[0] -= len(record.payload)
                    out.append(record)
            return out

    def _read_live(
        self,
        segment: _Segment,
        wanted: int,
        exclude: Collection[int],
        reverse: bool,
        *,
        budget: list[int],
        before: list[Record],
    ) -> list[Record]:
        """Up to `wanted` live records of `segment` whose frames fit in `budget[0]`
        bytes (spent as they are taken; the first record of all is taken whatever its
        size: `before` holds those already taken)."""
        candidates = (at for at in segment.live(reverse) if segment.ids[at] not in exclude)
        records: list[Record] = []
        exhausted = False
        while len(records) < wanted and not exhausted:
            batch: list[int] = []
            for at in itertools.islice(candidates, wanted - len(records)):
                if (before or records or batch) and segment.sizes[at] > budget[0]:
                    budget[0] = 0  # spent: no later, smaller record jumps the queue
                    exhausted = True
                    break
                budget[0] -= segment.sizes[at]
                batch.append(at)
            else:
                exhausted = not batch
            if batch:
                records.extend(self._read(segment, batch))
        return records

    def _read(self, segment: _Segment, indices: list[int]) -> list[Record]:
        """Records at `indices`, read in one go; unreadable ones are taken out and counted."""
        start = min(segment.offsets[at] for at in indices)
        end = max(segment.offsets[at] + segment.sizes[at] for at in indices)
        try:
            data = self._fs.read_at(segment.path, start, end - start)
        except OSError as err:
            log.error("spool segment %s unreadable: %s", segment.path, err)
            data = b""
        records: list[Record] = []
        for at in indices:
            try:
                frame = decode_frame(data, segment.offsets[at] - start)
                record = decode_record(frame)
                if record.id != segment.ids[at] or frame.end - frame.offset != segment.sizes[at]:
                    raise CorruptFrameError("another record than indexed")
            except FrameError as err:
                log.error(
                    "spool: record %d in %s is damaged: %s", segment.ids[at], segment.path, err
                )
                self.corrupt_records += 1
                self._take_out(segment.ids[at])
                continue
            records.append(record)
        return records


def _write_durably(fs: FileSystem, fd: int, start: int, data: bytes) -> OSError | None:
    """Write `data` at `start` and fdatasync; on failure cut the file back to `start`.

    Writing at an explicit offset (not O_APPEND) means that even when the cut fails,
    the next attempt overwrites the partial frames instead of indexing past them.
    """
    try:
        written = 0
        while written < len(data):
            written += fs.pwrite(fd, memoryview(data)[written:], start + written)
        fs.fdatasync(fd)
    except OSError as err:
        try:
            fs.ftruncate(fd, start)
        except OSError as cut:
            log.error("spool: cannot cut back a failed write: %s", cut)
        return err
    return None
