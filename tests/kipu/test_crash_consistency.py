"""Power loss is not SIGKILL: the spool and the state store against a crashing disk.

A killed process leaves the page cache behind, so the crash tests in `test_spool.py`
never see a write half on the platter. Here the spool and the state store run a
workload on `tests.support.crashfs.CrashFS`, a simulated disk that records every
operation; then, for every operation that changed the disk and every state a power cut
right after it could leave (nothing unsynced kept, everything kept, a prefix with the
last write torn, folder changes kept or not), the real code opens that state from a
real folder and the documented promises are checked.

`explore()` is shared with ``python -m benchmarks.crash_states``, which runs it on a
larger workload and prints the figures.
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
import os
import random
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from agent.link import LinkCounters
from agent.state import STATE_FILE, SavedState, StateStore
from kipu.spool import Record, Spool
from kipu.spool.frames import SEGMENT_NAME, scan_segment
from kipu.spool.queue import ID_LEASE
from tests.support.crashfs import CrashFS, CrashImage, Operation

# Never touched on the real disk: the simulated disk lives in memory under it.
SIMULATED_ROOT = Path("/simulated-disk")
SEGMENT_BYTES = 4096
MAX_BYTES = 8 * SEGMENT_BYTES  # the spool keeps segments of at most max_bytes / 8

# Tests stay fast and still cover every crash point of a workload that rolls over
# segments, drops the oldest ones to respect max_bytes and deletes acknowledged ones.
TEST_RECORDS = 150
TEST_SAVES = 12


@dataclass(frozen=True)
class Exploration:
    """What one exploration covered, and every broken promise it found."""

    subject: str
    workload: dict[str, int]  # how much of what it did: {"saves": 12}
    operations: int  # recorded on the simulated disk
    crash_points: int  # operations that changed the disk
    images: int  # crash states opened with the real code
    torn_images: int  # of those, with a write torn
    entry_images: int  # of those, with folder changes not yet fsynced (kept or not)
    violations: list[str]
    seconds: float

    def describe_workload(self) -> str:
        """The workload in words: "12 saves"."""
        return ", ".join(f"{count} {what}" for what, count in self.workload.items())


@contextmanager
def _quiet_spool() -> Iterator[None]:
    """Thousands of torn tails are expected here; only errors are worth a log line."""
    logger = logging.getLogger("kipu.spool")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _durable_end(fs: CrashFS, start: int) -> int:
    """Operations up to the last one since `start` that changed the disk (else `start`).

    A call is complete on disk once its last change is; what it does afterwards (closing
    descriptors) cannot matter to a power cut.
    """
    for operation in reversed(fs.operations[start:]):
        if operation.changes:
            return operation.index + 1
    return start


# -- the spool --


@dataclass
class _Appended:
    record: Record
    op: int  # operations recorded before append(): it may have run before a cut there
    sync: int  # the first sync() called after it
    gone_op: int | None = None  # operations recorded before it was acknowledged or dropped
    gone_sync: int | None = None  # the first sync() called after that


@dataclass(frozen=True)
class _Sync:
    end: int  # operations up to its last change: complete on disk from a cut there on
    next_id: int  # Spool.next_id when it began
    dropped_samples: int  # Spool.dropped_samples when it began


@dataclass
class _SpoolRun:
    """The spool's workload on a simulated disk, and what it promised along the way."""

    fs: CrashFS
    spool: Spool
    rng: random.Random
    appended: dict[int, _Appended] = field(default_factory=dict)
    syncs: list[_Sync] = field(default_factory=list)
    acked: int = 0

    def append(self, count: int = 1) -> None:
        for _ in range(count):
            size = self.rng.randint(100, 900)
            stamp = self.rng.getrandbits(40)
            op = len(self.fs.operations)
            record = self.spool.append(self.rng.randbytes(size), size // 7, stamp, stamp + 15)
            self.appended[record.id] = _Appended(record, op, len(self.syncs))
            for entry in self.appended.values():
                if entry.gone_op is None and not self.spool.waiting(entry.record.id):
                    entry.gone_op, entry.gone_sync = op, len(self.syncs)

    def ack(self, ids: list[int]) -> None:
        op = len(self.fs.operations)
        for rid in ids:
            entry = self.appended[rid]
            if entry.gone_op is None and self.spool.waiting(rid):
                entry.gone_op, entry.gone_sync = op, len(self.syncs)
                self.acked += 1
        self.spool.ack(ids)

    def sync(self) -> None:
        start = len(self.fs.operations)
        next_id, dropped = self.spool.next_id, self.spool.dropped_samples
        self.spool.sync()
        assert self.spool.last_error is None
        self.syncs.append(_Sync(_durable_end(self.fs, start), next_id, dropped))

    def waiting(self) -> list[int]:
        return [rid for rid, entry in self.appended.items() if entry.gone_op is None]


def _run_spool(records: int, seed: int) -> _SpoolRun:
    """A day in the life of an agent's spool, squeezed: about `records` appends.

    Link up: each record is pushed and acknowledged soon after it is appended, so full
    segments of acknowledged records roll over and are deleted. Link down: records pile
    up past max_bytes and the oldest segments are dropped; then a burst longer than a
    segment is synced at once. Link back: the newest records and the oldest of the
    backlog are acknowledged side by side (as `kipu.lanes` does), which writes acks for
    old segments into new ones and deletes segments in the middle. Link up again, once
    the backlog is drained and the dropped samples are on record.
    """
    fs = CrashFS(SIMULATED_ROOT)
    spool = Spool(SIMULATED_ROOT / "spool", MAX_BYTES, SEGMENT_BYTES, fs=fs)
    spool.open()
    run = _SpoolRun(fs, spool, random.Random(seed))
    up = records // 5
    for _ in range(up):
        _pushed(run)
    for _ in range(records // 4):
        run.append(2)
        run.sync()
    run.append(SEGMENT_BYTES // 400)
    run.sync()
    while waiting := run.waiting():
        newest = waiting[-run.rng.randint(1, 3) :]
        oldest = waiting[: run.rng.randint(0, 3)]
        scattered = run.rng.sample(waiting, min(len(waiting), run.rng.randint(0, 2)))
        run.ack([*newest, *oldest, *scattered])
        run.append(run.rng.choice((0, 1, 2)))
        run.sync()
    for _ in range(up):
        _pushed(run)
    spool.close()
    return run


def _pushed(run: _SpoolRun) -> None:
    """One push interval with the link up: append, sync, and the push acknowledged."""
    run.append()
    run.sync()
    waiting = run.waiting()
    if run.rng.random() < 0.85:
        run.ack(waiting[-1:])
    if run.rng.random() < 0.3:
        run.ack(waiting[:2])
    if run.rng.random() < 0.2:
        run.sync()  # a sync with acks alone


def _on_disk_ids(folder: Path) -> int:
    """The highest record id that any segment file in `folder` refers to (0: none)."""
    highest = 0
    for path in folder.iterdir():
        if not SEGMENT_NAME.match(path.name):
            continue
        scan = scan_segment(path.read_bytes())
        highest = max([highest, *(info.id for info in scan.records)])
        for first, count in scan.acks:
            highest = max(highest, first + count - 1)
    return highest


def _check_spool(
    run: _SpoolRun, operation: Operation, image: CrashImage, target: Path
) -> list[str]:
    """The spool's documented promises, for one crash state: what breaks them."""
    done = operation.index + 1  # operations that reached the disk model
    completed = bisect.bisect_right([s.end for s in run.syncs], done)  # syncs complete
    last = completed - 1  # the last completed sync, -1: none
    image.materialise(target)
    folder = target / "spool"
    referenced = _on_disk_ids(folder)
    where = f"cut after {operation} [{image.label}]"
    try:
        spool = Spool(folder, MAX_BYTES, SEGMENT_BYTES)
        spool.open()
    except Exception as err:  # any exception is the finding
        return [f"{where}: open raised {err!r}"]
    problems: list[str] = []
    try:
        found = spool.oldest(10**6)
        ids = [r.id for r in found]
        if ids != sorted(set(ids)):
            problems.append(f"{where}: ids out of order or twice: {ids}")
        for record in found:
            entry = run.appended.get(record.id)
            if entry is None or entry.record != record:
                problems.append(f"{where}: record {record.id} is not what was appended")
        present = set(ids)
        for rid, entry in run.appended.items():
            # Synced, and not acknowledged or dropped before the cut: must be there.
            gone_before = entry.gone_op is not None and entry.gone_op <= done
            if entry.sync <= last and not gone_before and rid not in present:
                problems.append(f"{where}: record {rid} lost though synced")
            # Acknowledged or dropped, then synced: must not come back.
            if entry.gone_sync is not None and entry.gone_sync <= last and rid in present:
                problems.append(f"{where}: record {rid} back though its ack was synced")
        # A torn frame whose header landed but whose body reads as zeros is damage
        # followed by nothing: cut off as a torn tail, yet counted as one damaged frame.
        if spool.corrupt_records > image.zero_filled:
            problems.append(f"{where}: {spool.corrupt_records} records reported damaged")
        if last >= 0 and spool.dropped_samples < run.syncs[last].dropped_samples:
            problems.append(
                f"{where}: dropped_samples fell to {spool.dropped_samples} "
                f"from {run.syncs[last].dropped_samples}"
            )
        # No id on disk comes back, nor one handed out before the last completed sync.
        # That sync left the meta floor at least ID_LEASE / 2 past the ids handed out (a
        # meta frame is rewritten whenever the lead shrinks below that): no id below the
        # floor comes back either, though those handed out past it may.
        floor = referenced + 1
        if last >= 0:
            handed_out = max(rid for rid, e in run.appended.items() if e.op <= done)
            leased = run.syncs[last].next_id + ID_LEASE // 2
            floor = max(floor, run.syncs[last].next_id, min(handed_out + 1, leased))
        new_id = spool.append(b"after the cut", 1, 0, 0).id
        if new_id < floor:
            problems.append(f"{where}: id {new_id} handed out again (at least {floor} expected)")
    except Exception as err:  # any exception is the finding
        problems.append(f"{where}: reading raised {err!r}")
    finally:
        spool.close()
    return problems


def explore_spool(records: int = TEST_RECORDS, seed: int = 1) -> Exploration:
    """Run the spool's workload, then check every crash state of it."""
    started = time.perf_counter()
    with _quiet_spool(), tempfile.TemporaryDirectory(prefix="kipu-crash-") as scratch:
        run = _run_spool(records, seed)
        points = images = torn = entries = 0
        violations: list[str] = []
        for operation, states in run.fs.crash_points():
            points += 1
            for image in states:
                target = Path(scratch) / str(images)
                violations += _check_spool(run, operation, image, target)
                shutil.rmtree(target)
                images += 1
                torn += image.torn
                entries += image.entries_unsynced
    gone = sum(1 for entry in run.appended.values() if entry.gone_op is not None)
    workload = {
        "records": len(run.appended),
        "syncs": len(run.syncs),
        "acks": run.acked,
        "dropped": gone - run.acked,
        "segments": sum(1 for op in run.fs.operations if op.kind == "create"),
        "unlinked": sum(1 for op in run.fs.operations if op.kind == "unlink"),
    }
    return Exploration(
        "spool",
        workload,
        len(run.fs.operations),
        points,
        images,
        torn,
        entries,
        violations,
        time.perf_counter() - started,
    )


# -- the state store --


def _state(n: int) -> SavedState:
    counters = LinkCounters(
        up_seconds=60.0 * n,
        down_seconds=1.5 * n,
        outages=n,
        last_change=1.7e9 + n,
        last_state=n % 2 == 0,
        offline_seconds=float(n),
    )
    return SavedState(counters, heartbeat=1.7e9 + 60 * n, boot_time=1.6e9, seq=n)


@dataclass(frozen=True)
class _Save:
    state: SavedState
    start: int  # operations recorded before save()
    end: int  # operations up to its last change


def explore_state_store(saves: int = TEST_SAVES) -> Exploration:
    """Save successive states on a simulated disk, then check every crash state."""
    started = time.perf_counter()
    fs = CrashFS(SIMULATED_ROOT)
    store = StateStore(SIMULATED_ROOT / "state", fs=fs)
    # open() also takes a flock on the real disk: locking is not durability, skip it.
    fs.makedirs(store.state_dir, 0o750)
    done_saves: list[_Save] = []
    for n in range(1, saves + 1):
        start = len(fs.operations)
        store.save(_state(n))
        done_saves.append(_Save(_state(n), start, _durable_end(fs, start)))
        if n % 4 == 0:
            store.save(_state(n - 1))  # a late heartbeat: ignored, no write
    points = images = torn = entries = 0
    violations: list[str] = []
    with tempfile.TemporaryDirectory(prefix="kipu-crash-") as scratch:
        for operation, states in fs.crash_points():
            points += 1
            done = operation.index + 1
            completed = [s for s in done_saves if s.end <= done]
            in_flight = [s for s in done_saves if s.start < done < s.end]
            allowed = [s.state for s in (completed[-1:] + in_flight)]
            for image in states:
                target = Path(scratch) / str(images)
                image.materialise(target)
                where = f"cut after {operation} [{image.label}]"
                try:
                    loaded = StateStore(target / "state").load()
                except Exception as err:  # any exception is the finding
                    violations.append(f"{where}: load raised {err!r}")
                else:
                    if loaded is None and completed:
                        violations.append(f"{where}: nothing loaded after a completed save")
                    if loaded is not None and not any(
                        loaded == dataclasses.replace(state, seq=0) for state in allowed
                    ):
                        violations.append(f"{where}: loaded {loaded}, none of {allowed}")
                    aside = [
                        p.name
                        for p in (target / "state").iterdir()
                        if p.name.startswith(f"{STATE_FILE}.corrupt-")
                    ]
                    if aside:
                        violations.append(f"{where}: state file set aside as {aside}")
                shutil.rmtree(target)
                images += 1
                torn += image.torn
                entries += image.entries_unsynced
    return Exploration(
        "state store",
        {"saves": saves},
        len(fs.operations),
        points,
        images,
        torn,
        entries,
        violations,
        time.perf_counter() - started,
    )


def explore(
    records: int = TEST_RECORDS, saves: int = TEST_SAVES, seed: int = 1
) -> list[Exploration]:
    """Explore the spool and the state store; one `Exploration` each."""
    return [explore_spool(records, seed), explore_state_store(saves)]


def _report(result: Exploration) -> str:
    return (
        f"{result.subject} ({result.describe_workload()}): {result.operations} operations, "
        f"{result.crash_points} crash points, {result.images} crash images "
        f"({result.torn_images} torn, {result.entry_images} with folder changes unsynced), "
        f"{len(result.violations)} violations, {result.seconds:.1f} s"
    )


# -- tests: the simulated disk itself --


def _contents(fs: CrashFS, name: str) -> set[bytes | None]:
    """What `name` holds in each crash image after the last operation (None: absent)."""
    images = fs.crash_images(len(fs.operations) - 1)
    return {image.files.get(PurePosixPath(name)) for image in images}


def _sync_folder(fs: CrashFS) -> None:
    fd = fs.open(SIMULATED_ROOT, os.O_RDONLY)
    fs.fsync(fd)
    fs.close(fd)


def test_unsynced_write_is_lost_torn_or_kept() -> None:
    fs = CrashFS(SIMULATED_ROOT)
    fd = fs.open(SIMULATED_ROOT / "file", os.O_WRONLY | os.O_CREAT)
    _sync_folder(fs)
    fs.pwrite(fd, b"abcd", 0)
    torn = {b"a", b"ab", b"abc", b"\0\0\0\0", b"a\0\0\0", b"ab\0\0", b"abc\0"}
    assert _contents(fs, "file") == {b"", b"abcd", *torn}
    fs.fdatasync(fd)
    assert _contents(fs, "file") == {b"abcd"}


def test_folder_changes_are_kept_in_order_once_synced() -> None:
    fs = CrashFS(SIMULATED_ROOT)
    for name, data in (("old", b"1"), ("new", b"2")):
        fd = fs.open(SIMULATED_ROOT / name, os.O_WRONLY | os.O_CREAT)
        fs.write(fd, data)
        fs.fsync(fd)
        fs.close(fd)
    fs.replace(SIMULATED_ROOT / "new", SIMULATED_ROOT / "old")
    # Creating "new" and renaming it over "old": none, the first, or both kept.
    assert _contents(fs, "old") == {None, b"1", b"2"}
    assert _contents(fs, "new") == {None, b"2"}
    _sync_folder(fs)
    assert _contents(fs, "old") == {b"2"}
    assert _contents(fs, "new") == {None}


# -- tests: the real code --


def test_spool_keeps_its_promises_at_every_crash_point() -> None:
    result = explore_spool()
    print(_report(result))
    assert not result.violations, "\n".join(result.violations[:20])
    # A workload that explored nothing, or never tore a write, would prove nothing.
    assert result.crash_points >= 200
    assert result.images >= 1000
    assert result.torn_images >= 200
    assert result.entry_images >= 20
    assert result.workload["dropped"] > 0
    assert result.workload["segments"] >= 10
    assert result.workload["unlinked"] >= 8


def test_state_store_keeps_its_promises_at_every_crash_point() -> None:
    result = explore_state_store()
    print(_report(result))
    assert not result.violations, "\n".join(result.violations[:20])
    assert result.crash_points >= 4 * TEST_SAVES
    assert result.images >= 100
    assert result.torn_images >= TEST_SAVES
    assert result.entry_images >= 2 * TEST_SAVES
