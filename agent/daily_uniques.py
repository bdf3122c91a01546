"""Distinct WiFi clients per day, without keeping who they are.

Station identifiers (MAC addresses) are hashed with a keyed HMAC as soon as they are
read. The key is random, lives only in this process's memory and is replaced at local
midnight together with the day's hashes, so nothing links a client across days or to a
MAC address, and nothing of it is ever written to disk, a label or a log. A restart
therefore starts the day's count again (documented, and the price of privacy).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Callable, Iterable


class DailyUniques:
    """Counts distinct client identifiers per source (device) for the current day."""

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        new_key: Callable[[], bytes] = lambda: os.urandom(32),
    ) -> None:
        self._clock = clock
        self._new_key = new_key
        self._day = self._today()
        self._key = new_key()
        self._seen: dict[str, set[bytes]] = {}

    def _today(self) -> tuple[int, int, int]:
        local = time.localtime(self._clock())
        return local.tm_year, local.tm_mon, local.tm_mday

    def _rotate_if_new_day(self) -> None:
        today = self._today()
        if today != self._day:
            self._day = today
            self._key = self._new_key()
            self._seen.clear()

    def add(self, source: str, client_ids: Iterable[bytes]) -> None:
        """Count these clients as seen today on `source`; only their keyed hashes are kept."""
        self._rotate_if_new_day()
        seen = self._seen.setdefault(source, set())
        for client in client_ids:
            seen.add(hmac.digest(self._key, client, hashlib.sha256)[:16])

    def count(self, source: str) -> int:
        self._rotate_if_new_day()
        return len(self._seen.get(source, ()))
