"""The file operations the spool and the state store make, in one replaceable place.

`Spool` and `StateStore` do every write, sync, rename and delete through a
`FileSystem` (`LOCAL` unless told otherwise) so that tests can put a simulated disk
underneath them and cut its power at any instant (`tests.support.crashfs`). The
methods mirror the `os` calls they stand for, with the same arguments, results and
errors; only the operations those two classes use are here. Standard library only.
"""

from __future__ import annotations

import os
from pathlib import Path


class FileSystem:
    """The local file system, through `os`."""

    def makedirs(self, path: Path, mode: int) -> None:
        """Create a folder and its parents; nothing when it exists (`Path.mkdir`)."""
        path.mkdir(parents=True, exist_ok=True, mode=mode)

    def listdir(self, path: Path) -> list[str]:
        """The names in a folder."""
        return os.listdir(path)

    def read_bytes(self, path: Path) -> bytes:
        """A whole file."""
        return path.read_bytes()

    def read_at(self, path: Path, offset: int, size: int) -> bytes:
        """Up to `size` bytes of a file from `offset` (fewer at its end)."""
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(size)

    def open(self, path: Path, flags: int, mode: int = 0o777) -> int:
        """A descriptor, as `os.open` (a folder opened read-only can be fsynced)."""
        return os.open(path, flags, mode)

    def close(self, fd: int) -> None:
        """Release a descriptor."""
        os.close(fd)

    def write(self, fd: int, data: bytes | memoryview) -> int:
        """Write at the descriptor's position; the bytes written."""
        return os.write(fd, data)

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> int:
        """Write at `offset`; the bytes written."""
        return os.pwrite(fd, data, offset)

    def fsync(self, fd: int) -> None:
        """Make a file's data and metadata, or a folder's entries, durable."""
        os.fsync(fd)

    def fdatasync(self, fd: int) -> None:
        """Make a file's data (and its size) durable."""
        os.fdatasync(fd)

    def ftruncate(self, fd: int, length: int) -> None:
        """Cut or extend an open file to `length` bytes."""
        os.ftruncate(fd, length)

    def truncate(self, path: Path, length: int) -> None:
        """Cut or extend a file to `length` bytes."""
        os.truncate(path, length)

    def replace(self, source: Path, target: Path) -> None:
        """Rename `source` to `target`, replacing it atomically (`os.replace`)."""
        os.replace(source, target)

    def unlink(self, path: Path) -> None:
        """Remove a file's name (FileNotFoundError when there is none)."""
        path.unlink()


LOCAL = FileSystem()


def replace_file(path: Path, data: bytes, mode: int = 0o640, fs: FileSystem = LOCAL) -> None:
    """Put `data` at `path` whole or not at all: written beside it, synced, renamed over
    it, and the rename synced in the folder. OSError from any step."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = fs.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        fs.write(fd, data)
        fs.fsync(fd)
    finally:
        fs.close(fd)
    fs.replace(tmp, path)
    folder = fs.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fs.fsync(folder)
    finally:
        fs.close(folder)
