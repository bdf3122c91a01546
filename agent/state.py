"""What the agent keeps in `state_dir`: availability counters and the heartbeat.

One small JSON file, replaced atomically (write, fsync, rename, fsync the folder) every
`heartbeat_interval` and at a clean stop. A power cut therefore loses at most one
interval of counting, and the file is always either the old or the new version. Saves
are ordered by a sequence number taken when their state was read, never by the wall
clock, so an NTP step back cannot block them and a late save cannot undo a newer one.

The heartbeat is the time of the last save by a *trusted* clock (`kipu.clock`): on
start, the gap since it is time the agent was not running (a power cut, most often)
and goes to `kipu_agent_offline_seconds_total`. A box without a real-time clock starts
with a wrong clock, so the gap is computed only once the clock is trusted, from the
monotonic time elapsed since the start (`OfflineGap`). While the clock is untrusted a
save keeps the last trusted heartbeat and adds the seconds run since then
(`untrusted_run`), so a second power cut before the clock is trusted is still counted,
and the time the agent did run is not.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from agent.link import LinkCounters
from kipu.fs import LOCAL, FileSystem

log = logging.getLogger(__name__)

STATE_FILE = "agent-state.json"
LOCK_FILE = "agent.lock"
FORMAT = 1


class StateError(Exception):
    """The state folder cannot be used."""


@dataclass(frozen=True)
class SavedState:
    counters: LinkCounters
    heartbeat: float | None  # wall-clock seconds of the last save with a trusted clock
    boot_time: float | None  # the host's boot time when saved
    untrusted_run: float = 0.0  # seconds the agent ran after `heartbeat`, clock untrusted
    seq: int = 0  # orders saves within one run (not stored)


def encode(state: SavedState) -> bytes:
    document = {
        "format": FORMAT,
        "heartbeat": state.heartbeat,
        "untrusted_run": state.untrusted_run,
        "boot_time": state.boot_time,
        "counters": asdict(state.counters),
    }
    return json.dumps(document, indent=1, sort_keys=True).encode() + b"\n"


def decode(data: bytes) -> SavedState:
    """Parse a state file; ValueError says what is wrong with it."""
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"not JSON: {err}") from err
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ValueError(f"not a format {FORMAT} state file")
    raw = document.get("counters")
    if not isinstance(raw, dict):
        raise ValueError("no counters")
    counters = LinkCounters()
    for name in ("up_seconds", "down_seconds", "offline_seconds"):
        setattr(counters, name, _number(raw, name, 0.0))
    counters.outages = int(_number(raw, "outages", 0))
    counters.last_change = _optional_number(raw, "last_change")
    last_state = raw.get("last_state")
    if last_state is not None and not isinstance(last_state, bool):
        raise ValueError("last_state is not true, false or null")
    counters.last_state = last_state
    return SavedState(
        counters,
        _optional_number(document, "heartbeat"),
        _optional_number(document, "boot_time"),
        _number(document, "untrusted_run", 0.0),
    )


def _number(raw: dict[str, Any], name: str, default: float) -> float:
    value = raw.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{name} is not a non-negative number")
    return float(value)


def _optional_number(raw: dict[str, Any], name: str) -> float | None:
    return None if raw.get(name) is None else _number(raw, name, 0.0)


def offline_gap(heartbeat: float | None, started: float, ran: float = 0.0) -> float:
    """Seconds not running between the last heartbeat and a start at wall time `started`.

    `ran` is how long the agent ran after that heartbeat without a trusted clock. 0
    when unknown or when the clock went back.
    """
    if heartbeat is None:
        return 0.0
    return max(0.0, started - heartbeat - ran)


@dataclass
class OfflineGap:
    """The offline time of this start, resolved once the clock is trusted. Pure.

    `saved` is the state found at start (None: the first start ever), `started` the
    monotonic time of the start.
    """

    saved: SavedState | None
    started: float
    gap: float | None = None  # None until resolved
    _trusted_wall: float | None = None  # the last heartbeat by a trusted clock...
    _trusted_mono: float = 0.0  # ...and the monotonic time it was taken at

    def resolve(self, wall: float, mono: float) -> float:
        """With the clock trusted now (`wall`, `mono`): the gap to count, once; then 0."""
        self._trusted_wall, self._trusted_mono = wall, mono
        if self.gap is not None:
            return 0.0
        saved = self.saved
        started_wall = wall - (mono - self.started)
        self.gap = (
            0.0
            if saved is None
            else offline_gap(saved.heartbeat, started_wall, saved.untrusted_run)
        )
        return self.gap

    def heartbeat(self, mono: float) -> tuple[float | None, float]:
        """What a save made now records: the last trusted heartbeat and the run since."""
        if self._trusted_wall is not None:
            return self._trusted_wall, max(0.0, mono - self._trusted_mono)
        saved = self.saved
        ran = max(0.0, mono - self.started)
        if saved is None:
            return None, ran
        return saved.heartbeat, saved.untrusted_run + ran


def read_boot_time(path: str = "/proc/stat") -> float | None:
    """The kernel's boot time in wall-clock seconds (``btime``), None when unknown."""
    try:
        with open(path, encoding="ascii") as f:
            for line in f:
                if line.startswith("btime "):
                    return float(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


class StateStore:
    """The agent's folder: an exclusive lock and the atomically replaced state file."""

    def __init__(self, state_dir: Path, *, fs: FileSystem = LOCAL) -> None:
        self.state_dir = state_dir
        self._fs = fs
        self.path = state_dir / STATE_FILE
        self._lock: IO[bytes] | None = None
        # The heartbeat saves from a worker thread; a stop may save at the same time.
        self._saving = threading.Lock()
        self._saved_seq = -1

    def open(self) -> None:
        """Create the folder if needed and take its lock; StateError if impossible."""
        try:
            self._fs.makedirs(self.state_dir, 0o750)
            self._lock = open(self.state_dir / LOCK_FILE, "ab")  # noqa: SIM115 - held open
        except OSError as err:
            raise StateError(f"cannot use state_dir {self.state_dir}: {err}") from err
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            self._lock.close()
            self._lock = None
            raise StateError(
                f"state_dir {self.state_dir} is in use by another kipu-agent ({err.strerror})"
            ) from err

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def load(self) -> SavedState | None:
        """The saved state, or None when there is none or it is unreadable (set aside)."""
        try:
            data = self._fs.read_bytes(self.path)
        except FileNotFoundError:
            return None
        except OSError as err:
            raise StateError(f"cannot read {self.path}: {err}") from err
        try:
            return decode(data)
        except ValueError as err:
            aside = self.path.with_name(f"{STATE_FILE}.corrupt-{int(time.time())}")
            with contextlib.suppress(OSError):
                self._fs.replace(self.path, aside)
            log.error(
                "state file %s is unreadable (%s); kept as %s, counting from zero",
                self.path,
                err,
                aside.name,
            )
            return None

    def save(self, state: SavedState) -> None:
        """Replace the state file atomically and durably (thread-safe)."""
        with self._saving:
            # A heartbeat save still running in its thread after a stop's final save
            # must not put older counters back.
            if state.seq < self._saved_seq:
                return
            self._save(state)
            self._saved_seq = state.seq

    def _save(self, state: SavedState) -> None:
        tmp = self.path.with_name(f".{STATE_FILE}.tmp")
        fd = self._fs.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        try:
            data = memoryview(encode(state))
            while data:  # a write may be short (a nearly full disk): never rename a stub
                data = data[self._fs.write(fd, data) :]
            self._fs.fsync(fd)
        finally:
            self._fs.close(fd)
        self._fs.replace(tmp, self.path)
        dir_fd = self._fs.open(self.state_dir, os.O_RDONLY)
        try:
            self._fs.fsync(dir_fd)
        finally:
            self._fs.close(dir_fd)
