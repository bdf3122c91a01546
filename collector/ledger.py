"""The availability ledger: each site's persisted counters, one point per hour, on disk.

The monthly SLA report and the research panel are computed from it (`collector.reports`),
without Prometheus. For every site and every hour it keeps the **last sample of that
hour** of three groups of series the agent pushes:

- **link**: `kipu_link_up_seconds_total`, `kipu_link_down_seconds_total`,
  `kipu_agent_offline_seconds_total` and `kipu_link_outages_total` (one timestamp: the
  agent sends them in the same snapshot);
- **wifi**: `kipu_wifi_unique_clients`, summed over the site's devices;
- **traffic**: `kipu_interface_receive_bytes_total` plus
  `kipu_interface_transmit_bytes_total`, summed over every interface the agent polls.

A point is the hour (UTC, hours since the epoch), for each group the sample's offset in
that hour (milliseconds; absent when the group has no sample in that hour) and its
values. Two points of the same site and hour merge group by group: the later sample
wins. Merging is the only operation, so points can be written again, in any order, any
number of times: a backfilled sample fills the hour it belongs to, and the reports
re-split the gap it lands in.

On disk (`state_dir/ledger/`):

- `YYYY-MM.journal` per UTC month of the points' hours: an append-only sequence of
  chunks (`KLJ1`, payload length, CRC-32, then the zlib-compressed payload: per site, its
  id and its points of 56 bytes each). A torn chunk at the end (a crash while
  appending) is cut off when the ledger starts. `compact` rewrites a journal as a
  compacted part (`KLC1` chunks: one block per site, in site order, its points in hour
  order) when its tail grows past a quarter of that part (4 MiB at least), and an hour
  after its month is over; reports then stream it site by site (`Reader`), holding
  only the tail in memory.
- `open.bin`: the points of the current hour (still changing), replaced atomically at
  every save; they go to the journal once their hour is over.
- `first-seen.json`: each site's earliest sample timestamp (the panel's
  `sites_connected`).

The hot path (`observe`) only merges tuples into dicts; `take` (on the event loop, cheap)
hands what changed to `write` (blocking, in a worker thread) every `SAVE_INTERVAL`
seconds. A SIGKILL loses the points merged since the last save; since the counters are
cumulative, the next point of the same site covers the lost one's growth (spread over a
longer gap): totals are kept, only their split across hours coarsens.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import math
import os
import struct
import threading
import time
import zlib
from collections.abc import Container, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from kipu.fs import replace_file
from kipu.remote_write.codec import Series, sample_values

log = logging.getLogger(__name__)

LEDGER_DIR = "ledger"
OPEN_FILE = "open.bin"
FIRST_SEEN_FILE = "first-seen.json"
SAVE_INTERVAL = 5.0  # seconds between saves: what a SIGKILL can lose
RETENTION_MONTHS = 25  # UTC months of journal kept (this one and the 24 before)
# 56 bytes a point, 745 hours: 42 KB a site-month before compression.
HOUR_MS = 3_600_000
FUTURE_SLACK = 3600.0  # samples stamped further ahead of the collector's clock are left out

LINK_METRICS = {
    "kipu_link_up_seconds_total": 0,
    "kipu_link_down_seconds_total": 1,
    "kipu_agent_offline_seconds_total": 2,
    "kipu_link_outages_total": 3,
}
WIFI_METRIC = "kipu_wifi_unique_clients"
TRAFFIC_METRICS = frozenset(
    {"kipu_interface_receive_bytes_total", "kipu_interface_transmit_bytes_total"}
)
METRICS = frozenset({*LINK_METRICS, WIFI_METRIC, *TRAFFIC_METRICS})
"""The metrics whose series the ledger reads (add them to `Ingest.watched`)."""

NAN = math.nan
ABSENT = -1  # a group's offset when the point has no sample of it

# A point: (hour, link_offset, wifi_offset, traffic_offset, up, down, offline, outages,
# wifi, traffic). Offsets in milliseconds within the hour, ABSENT when missing; a link
# value NaN when that counter was not in the sample. A tuple of numbers: the garbage
# collector does not track it.
Point = tuple[int, int, int, int, float, float, float, float, float, float]
HOUR, LINK_AT, WIFI_AT, TRAFFIC_AT, UP, DOWN, OFFLINE, OUTAGES, WIFI, TRAFFIC = range(10)

_POINT = struct.Struct("<IIIIdddffd")
POINT_BYTES = _POINT.size  # 56
_CHUNK = struct.Struct("<4sII")
_MAGIC = b"KLJ1"  # a chunk of the tail: what one save appended
_COMPACTED = b"KLC1"  # a chunk of the compacted part: whole sites, in site order
_MAGICS = (_MAGIC, _COMPACTED)
COMPACT_CHUNK = 4 * 1024**2  # raw bytes of points per compacted chunk
COMPACT_TAIL = 4 * 1024**2  # compact a journal once its tail is this large...
COMPACT_PAUSE = 3600.0  # ...or, for a month that is over, an hour after its last append
_SITE = struct.Struct("<HI")
_NONE = 0xFFFFFFFF


def merge(old: Point, new: Point) -> Point:
    """The two points of one hour merged group by group: the later sample wins; at the
    same instant, the link counters one lacks come from the other."""
    if old[HOUR] != new[HOUR]:
        raise ValueError("points of different hours")
    hour = old[HOUR]
    if new[LINK_AT] > old[LINK_AT]:
        link_at, link = new[LINK_AT], new[UP : OUTAGES + 1]
    elif new[LINK_AT] < old[LINK_AT]:
        link_at, link = old[LINK_AT], old[UP : OUTAGES + 1]
    else:
        link_at = old[LINK_AT]
        link = tuple(
            b if not math.isnan(b) else a
            for a, b in zip(old[UP : OUTAGES + 1], new[UP : OUTAGES + 1], strict=True)
        )
    if new[WIFI_AT] >= old[WIFI_AT]:
        wifi_at, wifi = new[WIFI_AT], new[WIFI]
    else:
        wifi_at, wifi = old[WIFI_AT], old[WIFI]
    if new[TRAFFIC_AT] >= old[TRAFFIC_AT]:
        traffic_at, traffic = new[TRAFFIC_AT], new[TRAFFIC]
    else:
        traffic_at, traffic = old[TRAFFIC_AT], old[TRAFFIC]
    return (hour, link_at, wifi_at, traffic_at, *link, wifi, traffic)  # type: ignore[return-value,unused-ignore]


def _put(points: dict[int, Point], point: Point) -> None:
    hour = point[0]
    known = points.get(hour)
    points[hour] = point if known is None else merge(known, point)


def pack(points: Iterable[Point]) -> bytes:
    out = bytearray()
    for p in points:
        out += _POINT.pack(
            p[HOUR],
            _NONE if p[LINK_AT] < 0 else p[LINK_AT],
            _NONE if p[WIFI_AT] < 0 else p[WIFI_AT],
            _NONE if p[TRAFFIC_AT] < 0 else p[TRAFFIC_AT],
            *p[UP:],
        )
    return bytes(out)


def unpack(data: bytes | bytearray | memoryview) -> Iterator[Point]:
    for raw in _POINT.iter_unpack(data):
        yield (
            raw[0],
            ABSENT if raw[1] == _NONE else raw[1],
            ABSENT if raw[2] == _NONE else raw[2],
            ABSENT if raw[3] == _NONE else raw[3],
            *raw[4:],
        )


def utc_month(hour: int) -> str:
    """The journal (UTC month, YYYY-MM) of an hour since the epoch."""
    moment = datetime.datetime.fromtimestamp(hour * 3600, datetime.UTC)
    return f"{moment.year:04d}-{moment.month:02d}"


def months_between(start: float, end: float) -> list[str]:
    """The UTC months (YYYY-MM) that seconds `start` to `end` touch."""
    first = datetime.datetime.fromtimestamp(start, datetime.UTC)
    last = datetime.datetime.fromtimestamp(end, datetime.UTC)
    year, month, months = first.year, first.month, []
    while (year, month) <= (last.year, last.month):
        months.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months


@dataclass(frozen=True)
class Taken:
    """What one save writes: final points by journal, the open points, first samples."""

    final: dict[str, dict[str, list[Point]]]  # journal month -> site -> points
    open: dict[str, list[Point]]
    first_seen: dict[str, int] | None  # None: unchanged since the last save
    now: float


class Ledger:
    """The ledger of one collector (see the module docstring)."""

    def __init__(self, state_dir: Path, retention_months: int = RETENTION_MONTHS) -> None:
        self.directory = state_dir / LEDGER_DIR
        self.retention_months = retention_months
        # Points of hours that are over, not written yet: site -> hour -> point.
        self._final: dict[str, dict[int, Point]] = {}
        # Points of the current hour (and later, for clocks ahead): written to open.bin
        # at every save, to the journal once their hour is over.
        self._open: dict[str, dict[int, Point]] = {}
        self.first_seen: dict[str, int] = {}  # ms
        self._first_changed = False
        self._write_lock = threading.Lock()
        # Per journal month: bytes of its tail (appended since it was last compacted)
        # and the time of its last append.
        self._tails: dict[str, int] = {}
        self._compacted: dict[str, int] = {}
        self._appended: dict[str, float] = {}
        self.saves = 0
        self.compactions = 0

    # -- the hot path (event loop)

    def observe(self, site_id: str, series: Iterable[tuple[Series, bytes]], now: float) -> None:
        """Take the watched series of one accepted push; `now` in seconds."""
        link: dict[int, list[float]] = {}
        wifi: dict[int, float] = {}
        traffic: dict[int, float] = {}
        # A clock far ahead would keep points "open" forever, one far behind would make
        # journals retention removes at once: neither belongs in a monthly report.
        newest = int((now + FUTURE_SLACK) * 1000)
        oldest = int((now - self.retention_months * 31 * 86400) * 1000)
        for labels, run in series:
            name = _name(labels)
            slot = LINK_METRICS.get(name)
            if slot is None and name != WIFI_METRIC and name not in TRAFFIC_METRICS:
                continue
            for stamp, value in sample_values(run):
                if math.isnan(value) or not oldest <= stamp <= newest:
                    continue  # stale markers too
                if slot is not None:
                    link.setdefault(stamp, [NAN, NAN, NAN, NAN])[slot] = value
                elif name == WIFI_METRIC:
                    wifi[stamp] = wifi.get(stamp, 0.0) + value
                else:
                    traffic[stamp] = traffic.get(stamp, 0.0) + value
        if not (link or wifi or traffic):
            return
        current = int(now // 3600)
        final = self._final.setdefault(site_id, {})
        opened = self._open.setdefault(site_id, {})
        for stamp, values in link.items():
            hour, offset = divmod(stamp, HOUR_MS)
            target = opened if hour >= current else final
            _put(target, (hour, offset, ABSENT, ABSENT, *values, NAN, NAN))  # type: ignore[arg-type]
        for stamp, value in wifi.items():
            hour, offset = divmod(stamp, HOUR_MS)
            target = opened if hour >= current else final
            _put(target, (hour, ABSENT, offset, ABSENT, NAN, NAN, NAN, NAN, value, NAN))
        for stamp, value in traffic.items():
            hour, offset = divmod(stamp, HOUR_MS)
            target = opened if hour >= current else final
            _put(target, (hour, ABSENT, ABSENT, offset, NAN, NAN, NAN, NAN, NAN, value))
        earliest = min((*link, *wifi, *traffic))
        known = self.first_seen.get(site_id)
        if known is None or earliest < known:
            self.first_seen[site_id] = earliest
            self._first_changed = True

    def forget(self, keep: set[str]) -> None:
        """Stop holding unsaved points of sites gone from the inventory (the journal
        keeps what was written: a report of a past month still lists them if asked)."""
        for table in (self._open, self._final):
            for site_id in [s for s in table if s not in keep]:
                del table[site_id]

    def take(self, now: float) -> Taken:
        """What to write now (cheap: call it on the event loop, then `write` in a thread)."""
        current = int(now // 3600)
        final, self._final = self._final, {}
        for site_id, hours in self._open.items():
            for hour in [h for h in hours if h < current]:
                _put(final.setdefault(site_id, {}), hours.pop(hour))
        by_month: dict[str, dict[str, list[Point]]] = {}
        for site_id, hours in final.items():
            for hour, point in hours.items():
                by_month.setdefault(utc_month(hour), {}).setdefault(site_id, []).append(point)
        opened = {s: list(h.values()) for s, h in self._open.items() if h}
        first = None
        if self._first_changed:
            first, self._first_changed = dict(self.first_seen), False
        return Taken(by_month, opened, first, now)

    def give_back(self, taken: Taken) -> None:
        """Put back what a failed `write` could not write, to try at the next save."""
        for sites in taken.final.values():
            for site_id, points in sites.items():
                hours = self._final.setdefault(site_id, {})
                for point in points:
                    _put(hours, point)
        if taken.first_seen is not None:
            self._first_changed = True

    # -- disk (worker thread)

    def load(self) -> None:
        """Read the open points and first samples back; cut torn chunks (blocking)."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o750)
        for path in sorted(self.directory.glob("*.journal")):
            self._compacted[path.stem], self._tails[path.stem] = _scan(path)
        try:
            opened = (self.directory / OPEN_FILE).read_bytes()
            for site_id, points in _decode_payload(opened):
                hours = self._open.setdefault(site_id, {})
                for point in points:
                    _put(hours, point)
        except FileNotFoundError:
            pass
        except (OSError, ValueError, struct.error, zlib.error) as err:
            log.error("ledger: %s is unreadable (%s): the open hour starts afresh", OPEN_FILE, err)
        try:
            document = json.loads((self.directory / FIRST_SEEN_FILE).read_bytes())
            self.first_seen = {str(k): int(v) for k, v in document.items()}
        except FileNotFoundError:
            pass
        except (OSError, ValueError, TypeError, AttributeError) as err:
            log.error("ledger: %s is unreadable (%s)", FIRST_SEEN_FILE, err)

    def write(self, taken: Taken) -> None:
        """Append the final points, replace the open ones (blocking; OSError on failure)."""
        with self._write_lock:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o750)
            for month, sites in sorted(taken.final.items()):
                chunk = _encode_chunk(sites.items())
                _append(self.directory / f"{month}.journal", chunk)
                self._tails[month] = self._tails.get(month, 0) + len(chunk)
                self._appended[month] = taken.now
            replace_file(self.directory / OPEN_FILE, zlib.compress(_payload(taken.open.items()), 1))
            if taken.first_seen is not None:
                data = json.dumps(taken.first_seen, separators=(",", ":")).encode()
                replace_file(self.directory / FIRST_SEEN_FILE, data)
            self._expire(taken.now)
            self._compact(taken.now)
            self.saves += 1

    def save(self, now: float) -> None:
        """`take` and `write` at once: for a clean stop and for tests (blocking)."""
        taken = self.take(now)
        try:
            self.write(taken)
        except OSError:
            self.give_back(taken)
            raise

    def _compact(self, now: float) -> None:
        """Compact the journals whose tail grew large, or of a month over and quiet."""
        current = utc_month(int(now // 3600))
        for month, tail in sorted(self._tails.items()):
            quiet = now - self._appended.get(month, 0.0) >= COMPACT_PAUSE
            # A tail of a quarter of the compacted part: a month is rewritten a dozen
            # times as it grows, not once every few hours.
            large = tail >= max(COMPACT_TAIL, self._compacted.get(month, 0) // 4)
            if large or (tail > 0 and month < current and quiet):
                path = self.directory / f"{month}.journal"
                started = time.monotonic()
                try:
                    size = compact(path) if path.exists() else 0
                except (OSError, ValueError, struct.error, zlib.error) as err:
                    # The journal stays as it is, readable; try again once it grows.
                    log.error("ledger: cannot compact %s: %s", path.name, err)
                    self._tails[month] = 0
                    continue
                self._tails[month], self._compacted[month] = 0, size
                self.compactions += 1
                log.info(
                    "ledger: %s compacted to %d bytes in %.1f s",
                    path.name,
                    size,
                    time.monotonic() - started,
                )

    def _expire(self, now: float) -> None:
        today = datetime.datetime.fromtimestamp(now, datetime.UTC)
        index = today.year * 12 + today.month - 1 - (self.retention_months - 1)
        oldest = f"{index // 12:04d}-{index % 12 + 1:02d}"
        for path in self.directory.glob("*.journal"):
            if path.stem < oldest:
                log.info(
                    "ledger: %s is past the retention of %d months: removed",
                    path.name,
                    self.retention_months,
                )
                path.unlink(missing_ok=True)
                self._tails.pop(path.stem, None)
                self._compacted.pop(path.stem, None)


def _name(labels: Series) -> str:
    for name, value in labels:
        if name == "__name__":
            return value
    return ""


# -- the file formats


def _payload(sites: Iterable[tuple[str, list[Point]]]) -> bytes:
    out = bytearray()
    for site_id, points in sites:
        encoded = site_id.encode()
        out += _SITE.pack(len(encoded), len(points))
        out += encoded
        out += pack(sorted(points))
    return bytes(out)


def _encode_chunk(sites: Iterable[tuple[str, list[Point]]]) -> bytes:
    payload = zlib.compress(_payload(sites), 6)
    return _CHUNK.pack(_MAGIC, len(payload), zlib.crc32(payload)) + payload


def _decode_payload(compressed: bytes) -> Iterator[tuple[str, list[Point]]]:
    for site_id, raw in _site_blocks(zlib.decompress(compressed)):
        yield site_id, list(unpack(raw))


def _site_blocks(data: bytes) -> Iterator[tuple[str, memoryview]]:
    view = memoryview(data)
    at = 0
    while at < len(view):
        length, count = _SITE.unpack_from(view, at)
        at += _SITE.size
        site_id = bytes(view[at : at + length]).decode()
        at += length
        size = count * POINT_BYTES
        if at + size > len(view):
            raise ValueError("a site block runs past the chunk")
        yield site_id, view[at : at + size]
        at += size


def _chunks(path: Path) -> Iterator[tuple[bytes, bytes]]:
    """(magic, compressed payload) of a journal's whole chunks, in order."""
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return
    with f:
        while True:
            head = f.read(_CHUNK.size)
            if len(head) < _CHUNK.size:
                return
            magic, length, crc = _CHUNK.unpack(head)
            payload = f.read(length)
            if magic not in _MAGICS or len(payload) < length or zlib.crc32(payload) != crc:
                return  # a torn end (cut at the next start)
            yield magic, payload


def _blocks(path: Path) -> Iterator[tuple[bool, str, memoryview]]:
    """(compacted?, site_id, its points' bytes in hour order) of a journal."""
    for magic, payload in _chunks(path):
        for site_id, raw in _site_blocks(zlib.decompress(payload)):
            yield magic == _COMPACTED, site_id, raw


def _scan(path: Path) -> tuple[int, int]:
    """Bytes of a journal's compacted part and of its tail; cuts a torn end off."""
    good = compacted = 0
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        while good < size:
            f.seek(good)
            head = f.read(_CHUNK.size)
            if len(head) < _CHUNK.size:
                break
            magic, length, crc = _CHUNK.unpack(head)
            if magic not in _MAGICS or good + _CHUNK.size + length > size:
                break
            last = good + _CHUNK.size + length == size
            if last and zlib.crc32(f.read(length)) != crc:  # the last one: check it whole
                break
            good += _CHUNK.size + length
            if magic == _COMPACTED:
                compacted = good
    if good < size:
        log.warning(
            "ledger: %s ends with a torn chunk: cut from %d to %d bytes", path.name, size, good
        )
        os.truncate(path, good)
    return compacted, good - compacted


def compact(path: Path) -> int:
    """Rewrite a journal as one block per site, in site order (blocking); its new size.

    The compacted part is already in site order: it is merged with the tail (held in
    memory: a day of points at most, as the ledger compacts) one site at a time."""
    tail: dict[str, dict[int, Point]] = {}
    for compacted, site_id, raw in _blocks(path):
        if not compacted:
            hours = tail.setdefault(site_id, {})
            for point in unpack(raw):
                _put(hours, point)
    tmp = path.with_name(f".{path.name}.tmp")
    batch = bytearray()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    try:

        def flush() -> None:
            if batch:
                payload = zlib.compress(batch, 6)
                os.write(fd, _CHUNK.pack(_COMPACTED, len(payload), zlib.crc32(payload)))
                os.write(fd, payload)
                batch.clear()

        def emit(site_id: str, points: bytes) -> None:
            encoded = site_id.encode()
            batch.extend(_SITE.pack(len(encoded), len(points) // POINT_BYTES))
            batch.extend(encoded)
            batch.extend(points)
            if len(batch) >= COMPACT_CHUNK:
                flush()

        for compacted, site_id, raw in _blocks(path):
            if not compacted:
                continue
            extra = tail.pop(site_id, None)
            if not extra:
                emit(site_id, bytes(raw))
            elif raw and min(extra) > _hour_at(raw, len(raw) // POINT_BYTES - 1):
                # The usual case: the tail only continues the site: no need to unpack.
                emit(site_id, bytes(raw) + pack(extra[h] for h in sorted(extra)))
            else:
                hours = {p[0]: p for p in unpack(raw)}
                for point in extra.values():
                    _put(hours, point)
                emit(site_id, pack(hours[h] for h in sorted(hours)))
        for site_id in sorted(tail):
            hours = tail[site_id]
            emit(site_id, pack(hours[h] for h in sorted(hours)))
        flush()
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return path.stat().st_size


def _append(path: Path, chunk: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    try:
        os.write(fd, chunk)
        os.fdatasync(fd)
    finally:
        os.close(fd)


# -- reading (reports)


def _hour_at(raw: memoryview, index: int) -> int:
    return int(_POINT.unpack_from(raw, index * POINT_BYTES)[0])


def _index(raw: memoryview, hour: int) -> int:
    """The first point of a block (in hour order) at or after `hour`."""
    low, high = 0, len(raw) // POINT_BYTES
    while low < high:
        middle = (low + high) // 2
        if _hour_at(raw, middle) < hour:
            low = middle + 1
        else:
            high = middle
    return low


class _Sides:
    """Each site's nearest point before and after the hours asked."""

    def __init__(self) -> None:
        self.before: dict[str, Point] = {}
        self.after: dict[str, Point] = {}

    def offer(self, site_id: str, point: Point, after: bool) -> None:
        table = self.after if after else self.before
        known = table.get(site_id)
        if known is None or (known[HOUR] > point[HOUR] if after else known[HOUR] < point[HOUR]):
            table[site_id] = point
        elif known[HOUR] == point[HOUR]:
            table[site_id] = merge(known, point)

    def add_to(self, site_id: str, hours: dict[int, Point]) -> None:
        for table in (self.before, self.after):
            point = table.pop(site_id, None)
            if point is not None:
                _put(hours, point)


class Reader:
    """The points of hours touching [start, end) (seconds) of each site, with its
    nearest point within a month either side: one site at a time (`sites()`), so that
    a month of 10,000 sites is never held whole (blocking: file reads)."""

    def __init__(
        self, state_dir: Path, start: float, end: float, wanted: Container[str] | None = None
    ) -> None:
        self.directory = state_dir / LEDGER_DIR
        self.first_hour, self.last_hour = int(start // 3600), math.ceil(end / 3600)
        self.wanted = wanted
        # The UTC month holding most of the hours: its compacted part is streamed.
        self.main = utc_month((self.first_hour + self.last_hour) // 2)
        self.months = months_between(start - 32 * 86400, end + 32 * 86400)
        self.first_seen: dict[str, int] = {}
        try:
            document = json.loads((self.directory / FIRST_SEEN_FILE).read_bytes())
            self.first_seen = {str(k): int(v) for k, v in document.items()}
        except (OSError, ValueError, TypeError, AttributeError):
            pass

    def _split(self, site_id: str, raw: memoryview, sides: _Sides) -> memoryview:
        """The block's points within the hours asked; offers its neighbours to `sides`."""
        begin = _index(raw, self.first_hour)
        stop = _index(raw, self.last_hour + 1)
        if begin > 0:
            sides.offer(
                site_id, next(unpack(raw[(begin - 1) * POINT_BYTES : begin * POINT_BYTES])), False
            )
        if stop < len(raw) // POINT_BYTES:
            sides.offer(
                site_id, next(unpack(raw[stop * POINT_BYTES : (stop + 1) * POINT_BYTES])), True
            )
        return raw[begin * POINT_BYTES : stop * POINT_BYTES]

    def sites(self) -> Iterator[tuple[str, list[Point]]]:
        """(site_id, its points in hour order, neighbours included), each site once."""
        sides = _Sides()
        # Points from outside the main month's compacted part, as bytes: a tail of a
        # week of 10,000 sites costs its 56 bytes a point, not Python tuples.
        extra: dict[str, bytearray] = {}
        wanted = self.wanted

        def keep(site_id: str, raw: memoryview) -> None:
            inside = self._split(site_id, raw, sides)
            if inside:
                extra.setdefault(site_id, bytearray()).extend(inside)

        def merged(site_id: str, *blocks: bytes | bytearray | memoryview) -> list[Point]:
            hours: dict[int, Point] = {}
            for block in blocks:
                for point in unpack(block):
                    _put(hours, point)
            sides.add_to(site_id, hours)
            return [hours[h] for h in sorted(hours)]

        for month in self.months:
            for compacted, site_id, raw in _blocks(self.directory / f"{month}.journal"):
                if (wanted is None or site_id in wanted) and not (compacted and month == self.main):
                    keep(site_id, raw)
        opened: list[tuple[str, list[Point]]] = []
        with contextlib.suppress(OSError, ValueError, struct.error, zlib.error):
            opened = list(_decode_payload((self.directory / OPEN_FILE).read_bytes()))
        for site_id, points in opened:
            if wanted is None or site_id in wanted:
                keep(site_id, memoryview(pack(sorted(points))))
        done: set[str] = set()
        for compacted, site_id, raw in _blocks(self.directory / f"{self.main}.journal"):
            if not compacted or (wanted is not None and site_id not in wanted):
                continue
            inside = self._split(site_id, raw, sides)
            more = extra.pop(site_id, None)
            if more is None and site_id not in sides.before and site_id not in sides.after:
                points = list(unpack(inside))  # in order, one per hour: nothing to merge
            else:
                points = merged(site_id, inside, more or b"")
            done.add(site_id)
            yield site_id, points
        for site_id in sorted({*extra, *sides.before, *sides.after} - done):
            yield site_id, merged(site_id, extra.pop(site_id, b""))


def month_bounds(month: str, timezone: str) -> tuple[float, float]:
    """Seconds since the epoch of the first instant of `month` (YYYY-MM) in `timezone`,
    and of the next month's."""
    import zoneinfo  # noqa: PLC0415 - only for reports

    zone = zoneinfo.ZoneInfo(timezone)
    year, number = (int(part) for part in month.split("-"))
    start = datetime.datetime(year, number, 1, tzinfo=zone)
    year, number = (year + 1, 1) if number == 12 else (year, number + 1)
    end = datetime.datetime(year, number, 1, tzinfo=zone)
    return start.timestamp(), end.timestamp()
