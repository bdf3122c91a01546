"""Which sites report: the time of each site's last push, kept across restarts.

A site is `reporting` while its last push is within `silent_after`, `silent` after that,
and `never_seen` when it is in the inventory but never pushed. The last-push times live
in `state_dir/last-push.json`, replaced atomically every few seconds when they changed
(and at a clean stop), so a restart or even a SIGKILL loses at most those seconds.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Literal

from kipu.fs import replace_file

log = logging.getLogger(__name__)

LAST_PUSH_FILE = "last-push.json"
FORMAT = 1
SiteState = Literal["reporting", "silent", "never_seen"]
STATES: tuple[SiteState, ...] = ("reporting", "silent", "never_seen")


class Liveness:
    """Last push per site; `save` and `load` block (call them from a worker thread)."""

    def __init__(self, state_dir: Path, silent_after: float) -> None:
        self.path = state_dir / LAST_PUSH_FILE
        self.silent_after = silent_after
        self.last_push: dict[str, float] = {}
        self._dirty = False

    def pushed(self, site_id: str, now: float) -> None:
        if now > self.last_push.get(site_id, 0.0):
            self.last_push[site_id] = now
            self._dirty = True

    def state(self, site_id: str, now: float) -> SiteState:
        last = self.last_push.get(site_id)
        if last is None:
            return "never_seen"
        return "reporting" if now - last <= self.silent_after else "silent"

    def load(self) -> None:
        try:
            document = json.loads(self.path.read_bytes())
            if document.get("format") != FORMAT:
                raise ValueError(f"not a format {FORMAT} file")
            self.last_push = {str(k): float(v) for k, v in document["last_push"].items()}
        except FileNotFoundError:
            return
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as err:
            log.error("%s is unreadable (%s): every site starts as never seen", self.path, err)

    def save(self, force: bool = False) -> None:
        """Replace the file atomically if anything changed since the last save."""
        if not (self._dirty or force):
            return
        self._dirty = False
        snapshot = dict(self.last_push)
        data = json.dumps({"format": FORMAT, "last_push": snapshot}).encode()
        try:
            replace_file(self.path, data)
        except OSError as err:
            self._dirty = True
            log.error("cannot save last-push times to %s: %s", self.path, err)
