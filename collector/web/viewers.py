"""Viewers of the NOC page and the read API: scrypt password hashes and HTTP Basic.

A hash is `scrypt$N$r$p$salt_b64$hash_b64` (stdlib `hashlib.scrypt`; `kipu-collector
viewer hash` makes one). Checking a password costs tens of milliseconds and 32 MiB on
purpose, and a browser sends Basic credentials with every request, so `Gate` keeps a
verified (name, password) pair for a few minutes, keyed by an HMAC under a key that
lives only in this process's memory: a repeat request costs one HMAC, and the cache
never holds a password, nor anything an offline guesser could test passwords against.

An entry is good only while the viewer still exists with the same hash, so a reload
that removes a viewer or changes a password takes effect at once; a change of the
viewer's projects too, since the scope is read from the current configuration.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from collector.config import PASSWORD_HASH, Viewer

log = logging.getLogger(__name__)

SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32
MAX_MEMORY = 256 * 1024**2  # a hash asking for more than this is refused
REALM = 'Basic realm="kipu"'
# A stand-in checked for an unknown name, so that the answer takes as long as for a
# known name with a wrong password (names are not to be found out by timing).
_DECOY = (
    "scrypt$32768$8$1$a2lwdS1kZWNveS1zYWx0IQ==$bm90IGEgcGFzc3dvcmQsIGEgZGVjb3kgZm9yIHRpbWluZw=="
)


class PasswordHashError(ValueError):
    """A password hash that cannot be checked (bad parameters)."""


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """A new salted scrypt hash of `password`, as `viewers:` takes it (blocking: CPU)."""
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password, salt, n, r, p, length=HASH_BYTES)
    return "$".join(
        ("scrypt", str(n), str(r), str(p), _b64(salt), _b64(digest)),
    )


def verify_password(password: str, encoded: str) -> bool:
    """Whether `password` matches `encoded`, compared in constant time (blocking: CPU).

    PasswordHashError when `encoded` is malformed or asks for absurd parameters.
    """
    if not PASSWORD_HASH.match(encoded):
        raise PasswordHashError("not a scrypt$N$r$p$salt$hash string")
    _, n, r, p, salt, expected = encoded.split("$")
    try:
        salt_bytes = base64.b64decode(salt, validate=True)
        expected_bytes = base64.b64decode(expected, validate=True)
    except binascii.Error as err:
        raise PasswordHashError(f"bad base64: {err}") from None
    if not expected_bytes:
        raise PasswordHashError("empty hash")
    digest = _scrypt(password, salt_bytes, int(n), int(r), int(p), length=len(expected_bytes))
    return hmac.compare_digest(digest, expected_bytes)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, *, length: int) -> bytes:
    if n < 2 or n & (n - 1) or r < 1 or p < 1:
        raise PasswordHashError(f"N={n} r={r} p={p}: N must be a power of 2, r and p >= 1")
    memory = 128 * r * (n + p + 2)
    if memory > MAX_MEMORY:
        raise PasswordHashError(f"N={n} r={r} p={p} needs {memory >> 20} MiB")
    try:
        return hashlib.scrypt(
            password.encode("utf-8"),
            salt=salt,
            n=n,
            r=r,
            p=p,
            maxmem=memory + 1024**2,
            dklen=length,
        )
    except (ValueError, MemoryError) as err:
        raise PasswordHashError(str(err)) from None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """(name, password) of an `Authorization: Basic` header; None if absent or malformed."""
    if not header:
        return None
    scheme, _, encoded = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except binascii.Error:
        return None
    try:
        text = decoded.decode("utf-8")
    except UnicodeDecodeError:
        text = decoded.decode("latin-1")  # RFC 7617: what older clients send
    name, colon, password = text.partition(":")
    if not colon or not name:
        return None
    return name, password


@dataclass
class _Entry:
    name: str
    password_hash: str
    expires: float


class Gate:
    """Who is asking: the viewer of valid Basic credentials, or None."""

    def __init__(
        self,
        *,
        ttl: float = 300.0,
        max_entries: int = 1024,
        concurrency: int = 2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.clock = clock
        self.verifications = 0
        """scrypt computations made (the cache saves the rest)."""
        self._key = secrets.token_bytes(32)
        self._cache: OrderedDict[bytes, _Entry] = OrderedDict()
        # Each check takes 32 MiB and a core: a flood of wrong passwords waits here
        # instead of taking the machine's memory.
        self._checks = asyncio.Semaphore(concurrency)
        self._reported: set[str] = set()

    async def viewer(self, header: str | None, viewers: Sequence[Viewer]) -> Viewer | None:
        """The viewer whose name and password `header` carries; None if none matches."""
        credentials = basic_credentials(header)
        if credentials is None:
            return None
        name, password = credentials
        by_name = {viewer.name: viewer for viewer in viewers}
        viewer = by_name.get(name)
        key = hmac.new(self._key, f"{name}\0{password}".encode(), hashlib.sha256).digest()
        now = self.clock()
        entry = self._cache.get(key)
        if entry is not None:
            current = viewer is not None and entry.password_hash == viewer.password_hash
            if current and entry.expires > now:
                return viewer
            del self._cache[key]
        encoded = viewer.password_hash if viewer is not None else _DECOY
        async with self._checks:
            self.verifications += 1
            try:
                matched = await asyncio.to_thread(verify_password, password, encoded)
            except PasswordHashError as err:
                self._report(name, err)
                return None
        if not matched or viewer is None:
            return None
        self._remember(key, _Entry(name, encoded, now + self.ttl))
        return viewer

    def _remember(self, key: bytes, entry: _Entry) -> None:
        self._cache[key] = entry
        self._cache.move_to_end(key)
        while len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)

    def _report(self, name: str, err: PasswordHashError) -> None:
        if name not in self._reported:
            self._reported.add(name)
            log.error("viewer %s: its password_hash cannot be checked: %s", name, err)
