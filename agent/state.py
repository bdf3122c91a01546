"""What the agent keeps in `state_dir`: availability counters and the heartbeat.

One small JSON file, replaced atomically (write, fsync, rename, fsync the folder) every
`heartbeat_interval` and at a clean stop. A power cut therefore loses at most one
interval of counting, and the file is always either the old or the new version.
The heartbeat is the wall-clock time of the last save: on start, the gap since it is
time the agent was not running (a power cut, most often) and goes to
`kipu_agent_offline_seconds_total`.
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

log = logging.getLogger(__name__)

STATE_FILE = "agent-state.json"
LOCK_FILE = "agent.lock"
FORMAT = 1


class StateError(Exception):
    """The state folder cannot be used."""


@dataclass(frozen=True)
class SavedState:
    counters: LinkCounters
    heartbeat: float | None  # wall-clock seconds of the save
    boot_time: float | None  # the host's boot time when saved


def encode(state: SavedState) -> bytes:
    document = {
        "format": FORMAT,
        "heartbeat": state.heartbeat,
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
    )


def _number(raw: dict[str, Any], name: str, default: float) -> float:
    value = raw.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{name} is not a non-negative number")
    return float(value)


def _optional_number(raw: dict[str, Any], name: str) -> float | None:
    return None if raw.get(name) is None else _number(raw, name, 0.0)


def offline_gap(heartbeat: float | None, now: float) -> float:
    """Seconds since the last heartbeat; 0 when unknown or when the clock went back."""
    if heartbeat is None or now <= heartbeat:
        return 0.0
    return now - heartbeat


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

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.path = state_dir / STATE_FILE
        self._lock: IO[bytes] | None = None
        # The heartbeat saves from a worker thread; a stop may save at the same time.
        self._saving = threading.Lock()
        self._saved_heartbeat = 0.0

    def open(self) -> None:
        """Create the folder if needed and take its lock; StateError if impossible."""
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
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
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as err:
            raise StateError(f"cannot read {self.path}: {err}") from err
        try:
            return decode(data)
        except ValueError as err:
            aside = self.path.with_name(f"{STATE_FILE}.corrupt-{int(time.time())}")
            with contextlib.suppress(OSError):
                self.path.rename(aside)
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
            if state.heartbeat is not None and state.heartbeat < self._saved_heartbeat:
                return
            self._save(state)
            self._saved_heartbeat = state.heartbeat or 0.0

    def _save(self, state: SavedState) -> None:
        tmp = self.path.with_name(f".{STATE_FILE}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        try:
            os.write(fd, encode(state))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        dir_fd = os.open(self.state_dir, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
