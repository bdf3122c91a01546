"""Site tokens: random, shown once, stored only as SHA-256 hashes in `state_dir`.

`kipu-collector token issue SITE_ID` adds a token for a site (a site may hold several,
e.g. while a box is replaced), `token revoke SITE_ID` revokes every token of the site,
`token list` shows sites and dates. The file is `tokens.json`, replaced atomically
(write, fsync, rename, fsync the folder) under an exclusive lock, so two commands never
lose each other's changes. The running service looks at the file's modification every
second (`TokenBook.refresh`) and takes issued and revoked tokens without a restart.

A token is 32 random bytes in URL-safe base64 with a `kipu_` prefix: guessing one is
hopeless, so a fast hash is enough to store it (the collector hashes the bearer token of
every push), and a lookup by hash leaks nothing useful about the token by its timing.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import json
import secrets
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from kipu.fs import replace_file

TOKENS_FILE = "tokens.json"
LOCK_FILE = "tokens.lock"
FORMAT = 1
PREFIX = "kipu_"


@dataclass(frozen=True)
class TokenEntry:
    site_id: str
    sha256: str
    created: str  # ISO 8601, UTC
    revoked: str | None = None


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat()


class TokenFileError(Exception):
    """The token file cannot be read or written; the message says why."""


def read_entries(path: Path) -> list[TokenEntry]:
    """The entries of a token file; [] when it does not exist yet."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as err:
        raise TokenFileError(f"cannot read {path}: {err.strerror or err}") from err
    try:
        document = json.loads(data)
        if document.get("format") != FORMAT:
            raise ValueError(f"not a format {FORMAT} token file")
        return [TokenEntry(**entry) for entry in document["tokens"]]
    except (ValueError, TypeError, KeyError, AttributeError) as err:
        raise TokenFileError(f"{path} is damaged ({err}); restore it from a backup") from err


class TokenStore:
    """The token file of a state folder, for the commands that change it."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.path = state_dir / TOKENS_FILE

    @contextlib.contextmanager
    def _locked(self) -> Iterator[list[TokenEntry]]:
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
        with open(self.state_dir / LOCK_FILE, "ab") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield read_entries(self.path)

    def issue(self, site_id: str) -> str:
        """Add a token for `site_id` and return it (the only time it is seen)."""
        token = new_token()
        with self._locked() as entries:
            entries.append(TokenEntry(site_id, hash_token(token), _now()))
            self._write(entries)
        return token

    def issue_many(self, site_ids: list[str]) -> dict[str, str]:
        """A new token for each of `site_ids`, written at once (provisioning many sites)."""
        tokens = {site_id: new_token() for site_id in site_ids}
        with self._locked() as entries:
            now = _now()
            entries.extend(TokenEntry(s, hash_token(t), now) for s, t in tokens.items())
            self._write(entries)
        return tokens

    def revoke(self, site_id: str) -> int:
        """Revoke every active token of `site_id`; returns how many were."""
        with self._locked() as entries:
            now = _now()
            count = 0
            for i, entry in enumerate(entries):
                if entry.site_id == site_id and entry.revoked is None:
                    entries[i] = TokenEntry(entry.site_id, entry.sha256, entry.created, now)
                    count += 1
            if count:
                self._write(entries)
        return count

    def entries(self) -> list[TokenEntry]:
        return read_entries(self.path)

    def _write(self, entries: list[TokenEntry]) -> None:
        document = {"format": FORMAT, "tokens": [asdict(e) for e in entries]}
        data = json.dumps(document, indent=1).encode() + b"\n"
        replace_file(self.path, data, mode=0o600)  # token hashes: for the collector only


class TokenBook:
    """The service's view of the token file: active token hashes to site ids."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / TOKENS_FILE
        self._sites: dict[str, str] = {}
        self._key: tuple[int, int, int] | None = None
        self.error: str | None = None  # why the last refresh failed; the old book stays

    def site_for(self, token: str) -> str | None:
        """The site a bearer token belongs to; None when unknown or revoked."""
        return self._sites.get(hash_token(token))

    def refresh(self) -> bool:
        """Read the file again if it changed (blocking: call it from a worker thread).

        Returns True when the book changed. A damaged file keeps the previous book and
        sets `error`.
        """
        try:
            stat = self.path.stat()
            key = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
        except FileNotFoundError:
            key = None
        if key == self._key and self.error is None:
            return False
        try:
            entries = read_entries(self.path)
        except TokenFileError as err:
            self.error = str(err)
            return False
        self._sites = {e.sha256: e.site_id for e in entries if e.revoked is None}
        self._key, self.error = key, None
        return True

    def sites(self) -> set[str]:
        """Sites holding at least one active token."""
        return set(self._sites.values())
