"""A simulated disk that can lose power after any operation: crash images for tests.

`CrashFS` implements `kipu.fs.FileSystem` in memory and records every call in order.
`CrashFS.crash_points()` then replays that log and, after each operation that changed
the disk, lists the states the disk could be found in had the power failed right
then (`CrashImage`); `CrashImage.materialise()` writes one into a real folder, where
the real code (with the default `kipu.fs.LOCAL`) can open it.

The model, roughly ext4 (data=ordered) or any journaling file system, read as POSIX
allows and no kinder:

- A file's content is durable as of its last fsync or fdatasync (both also make its
  size durable). The writes and truncations since then reach the disk in order, and
  power can fail in the middle of one write: a crash keeps none, some or all of them,
  the last one kept possibly torn (cut at 0, 1, half or all but one of its bytes), and
  the torn write may also have moved the end of the file while its data never landed
  (the rest of its extent reads as zeros).
- A folder's entries (creating, renaming, unlinking a name) are durable only once that
  folder is fsynced. Before that, a crash keeps any prefix of the changes made since
  (the journal commits metadata in order, at times of its own choosing), from none of
  them to all. Folders are independent: fsyncing one, or a file in it, commits nothing
  else.
- Creating folders is not modelled: `makedirs` is durable at once, as if the folder
  existed before the program ran (packages and systemd create them).
- Nothing else fails: no short writes, no full disk, no EIO, no reordering of writes
  within a file, no damage to data that was durable.
"""

from __future__ import annotations

import dataclasses
import errno
import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from kipu.fs import FileSystem

# Where a torn write is cut: before its first byte, after it, halfway, before its last.
_TEAR_POINTS = ("none", "one", "half", "all-but-one")
_TORN, _ZEROS = "torn", "zeros"


@dataclass(frozen=True)
class Operation:
    """One call made on the simulated disk; `changes` when it altered what a crash keeps."""

    index: int
    kind: str  # the FileSystem method, or the effect for `open` (create, truncate)
    path: str
    detail: str = ""
    changes: bool = False

    def __str__(self) -> str:
        extra = f" {self.detail}" if self.detail else ""
        return f"#{self.index} {self.kind} {self.path}{extra}"


# -- the disk model (shared by the live file system and the replay) --


@dataclass(frozen=True)
class _Write:
    offset: int
    data: bytes


@dataclass(frozen=True)
class _Resize:
    length: int


_FileChange = _Write | _Resize


@dataclass
class _Inode:
    durable: bytes = b""
    unsynced: list[_FileChange] = field(default_factory=list)
    content: bytearray = field(default_factory=bytearray)  # what reads see


@dataclass(frozen=True)
class _Link:
    name: str
    inode: int


@dataclass(frozen=True)
class _Unlink:
    name: str


@dataclass(frozen=True)
class _Rename:
    source: str
    target: str


_DirChange = _Link | _Unlink | _Rename


@dataclass
class _Folder:
    durable: dict[str, int] = field(default_factory=dict)
    unsynced: list[_DirChange] = field(default_factory=list)
    entries: dict[str, int] = field(default_factory=dict)  # what lookups see


def _apply_file(content: bytearray, change: _FileChange) -> None:
    if isinstance(change, _Resize):
        del content[change.length :]
        content.extend(bytes(change.length - len(content)))
        return
    end = change.offset + len(change.data)
    if len(content) < change.offset:
        content.extend(bytes(change.offset - len(content)))
    content[change.offset : end] = change.data


def _apply_dir(entries: dict[str, int], change: _DirChange) -> None:
    if isinstance(change, _Link):
        entries[change.name] = change.inode
    elif isinstance(change, _Unlink):
        del entries[change.name]
    else:
        entries[change.target] = entries.pop(change.source)


@dataclass(frozen=True)
class _Effect:
    """What a recorded operation did to the disk, replayable on a fresh `_Disk`."""

    kind: str  # mkdir, create, unlink, rename, write, resize, sync, syncdir
    folder: PurePosixPath | None = None
    name: str = ""
    target: str = ""
    inode: int = -1
    offset: int = 0
    data: bytes = b""
    length: int = 0


class _Disk:
    """Folders and files with their durable and their visible state."""

    def __init__(self) -> None:
        self.folders: dict[PurePosixPath, _Folder] = {}
        self.inodes: dict[int, _Inode] = {}

    def apply(self, effect: _Effect) -> None:
        if effect.kind == "mkdir":
            assert effect.folder is not None
            self.folders[effect.folder] = _Folder()
            return
        folder = self.folders[effect.folder] if effect.folder is not None else None
        if effect.kind in ("create", "unlink", "rename"):
            assert folder is not None
            change: _DirChange
            if effect.kind == "create":
                self.inodes[effect.inode] = _Inode()
                change = _Link(effect.name, effect.inode)
            elif effect.kind == "unlink":
                change = _Unlink(effect.name)
            else:
                change = _Rename(effect.name, effect.target)
            folder.unsynced.append(change)
            _apply_dir(folder.entries, change)
        elif effect.kind == "syncdir":
            assert folder is not None
            folder.durable = dict(folder.entries)
            folder.unsynced.clear()
        else:
            inode = self.inodes[effect.inode]
            if effect.kind == "sync":
                inode.durable = bytes(inode.content)
                inode.unsynced.clear()
                return
            file_change: _FileChange = (
                _Write(effect.offset, effect.data)
                if effect.kind == "write"
                else _Resize(effect.length)
            )
            inode.unsynced.append(file_change)
            _apply_file(inode.content, file_change)

    def images(self) -> Iterator[CrashImage]:
        """Every state a power cut now could leave (each file's contents told apart once)."""
        names = sorted(self.folders)
        entries_unsynced = any(self.folders[name].unsynced for name in names)
        folder_choices = [_folder_variants(self.folders[name]) for name in names]
        variants: dict[int, list[tuple[str, bytes]]] = {}
        for folder_combo in itertools.product(*folder_choices):
            inodes = sorted({i for _, entries in folder_combo for i in entries.values()})
            for i in inodes:
                if i not in variants:
                    variants[i] = _inode_variants(self.inodes[i])
            inode_choices = [variants[i] for i in inodes]
            for inode_combo in itertools.product(*inode_choices):
                content = {i: data for i, (_, data) in zip(inodes, inode_combo, strict=True)}
                labels = [
                    f"{name}: {label}"
                    for name, (label, _) in zip(names, folder_combo, strict=True)
                    if label
                ]
                labels += [
                    f"inode {i}: {label}"
                    for i, (label, _) in zip(inodes, inode_combo, strict=True)
                    if label
                ]
                files = {
                    folder / entry: content[inode]
                    for folder, (_, entries) in zip(names, folder_combo, strict=True)
                    for entry, inode in entries.items()
                }
                yield CrashImage(
                    tuple(names),
                    files,
                    "; ".join(labels) or "all durable",
                    torn=any(_TORN in label for label, _ in inode_combo),
                    zero_filled=any(_ZEROS in label for label, _ in inode_combo),
                    entries_unsynced=entries_unsynced,
                )


def _folder_variants(folder: _Folder) -> list[tuple[str, dict[str, int]]]:
    """The entries a crash may leave: a prefix of the unsynced changes (label, entries)."""
    entries = dict(folder.durable)
    variants = [("", dict(entries))]
    for kept, change in enumerate(folder.unsynced, start=1):
        _apply_dir(entries, change)
        variants.append((f"{kept}/{len(folder.unsynced)} entry changes", dict(entries)))
    return variants


def _inode_variants(inode: _Inode) -> list[tuple[str, bytes]]:
    """The contents a crash may leave (label, bytes), each distinct content once."""
    seen: dict[bytes, str] = {inode.durable: ""}
    content = bytearray(inode.durable)
    total = len(inode.unsynced)
    for done, change in enumerate(inode.unsynced):
        if isinstance(change, _Write) and change.data:
            size = len(change.data)
            for tear, cut in zip(_TEAR_POINTS, (0, 1, size // 2, size - 1), strict=True):
                if not 0 <= cut < size:
                    continue
                torn = bytearray(content)
                _apply_file(torn, _Write(change.offset, change.data[:cut]))
                seen.setdefault(bytes(torn), f"{done}/{total} changes, next {_TORN} ({tear})")
                _apply_file(torn, _Write(change.offset + cut, bytes(size - cut)))
                seen.setdefault(
                    bytes(torn), f"{done}/{total} changes, next {_TORN} ({tear}), {_ZEROS}"
                )
        _apply_file(content, change)
        seen.setdefault(bytes(content), f"{done + 1}/{total} changes")
    return [(label, data) for data, label in seen.items()]


@dataclass(frozen=True)
class CrashImage:
    """One state the disk may be in after a power cut."""

    folders: tuple[PurePosixPath, ...]  # relative to the simulated disk's root
    files: dict[PurePosixPath, bytes]  # relative to root
    label: str  # what was kept, for failure messages
    torn: bool = False  # a write was cut short
    zero_filled: bool = False  # ...and the rest of it reads as zeros
    entries_unsynced: bool = False  # a folder had changes not yet fsynced (kept or not)

    def materialise(self, target: Path) -> None:
        """Write this state into `target` (created; empty or absent beforehand)."""
        for folder in self.folders:
            (target / folder).mkdir(parents=True, exist_ok=True)
        for name, data in self.files.items():
            (target / name).write_bytes(data)


@dataclass
class _Handle:
    path: PurePosixPath
    inode: int | None  # None: a folder
    position: int = 0


class CrashFS(FileSystem):
    """An in-memory disk under `root` that records every call (see the module docstring).

    `root` need not exist: nothing is written outside memory. Paths outside it raise.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.operations: list[Operation] = []
        self._effects: dict[int, list[_Effect]] = {}  # by operation index
        self._disk = _Disk()
        self._handles: dict[int, _Handle] = {}
        self._fds = itertools.count(1000)
        self._inodes = itertools.count(1)
        self._apply(_Effect("mkdir", folder=PurePosixPath(".")))

    # -- replay --

    def crash_images(self, index: int) -> list[CrashImage]:
        """The disk states a power cut right after operation `index` may leave."""
        disk = self._replay(index)
        return list(disk.images())

    def crash_points(self) -> Iterator[tuple[Operation, Iterator[CrashImage]]]:
        """For each operation that changed the disk, in order: it and its crash images.

        The disk is replayed once; consume each iterator before asking for the next.
        """
        disk = _Disk()
        for effect in self._effects.get(-1, []):
            disk.apply(effect)
        for operation in self.operations:
            for effect in self._effects.get(operation.index, []):
                disk.apply(effect)
            if operation.changes:
                yield operation, disk.images()

    def _replay(self, index: int) -> _Disk:
        disk = _Disk()
        for at in range(-1, index + 1):
            for effect in self._effects.get(at, []):
                disk.apply(effect)
        return disk

    # -- recording --

    def _record(self, kind: str, path: PurePosixPath | Path, detail: str = "") -> int:
        index = len(self.operations)
        self.operations.append(Operation(index, kind, str(path), detail))
        return index

    def _apply(self, effect: _Effect, index: int = -1) -> None:
        self._effects.setdefault(index, []).append(effect)
        self._disk.apply(effect)
        if index >= 0 and not self.operations[index].changes:
            self.operations[index] = dataclasses.replace(self.operations[index], changes=True)

    def _relative(self, path: Path) -> PurePosixPath:
        try:
            return PurePosixPath(path.relative_to(self.root))
        except ValueError:
            raise ValueError(f"{path} is outside the simulated disk {self.root}") from None

    def _lookup(self, path: Path) -> tuple[PurePosixPath, str, int]:
        """(folder, name, inode) of an existing file; FileNotFoundError otherwise."""
        relative = self._relative(path)
        folder = self._disk.folders.get(relative.parent)
        if folder is None or relative.name not in folder.entries:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))
        return relative.parent, relative.name, folder.entries[relative.name]

    def _handle(self, fd: int) -> _Handle:
        try:
            return self._handles[fd]
        except KeyError:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF)) from None

    def _file(self, fd: int) -> tuple[_Handle, int]:
        handle = self._handle(fd)
        if handle.inode is None:
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(handle.path))
        return handle, handle.inode

    # -- FileSystem --

    def makedirs(self, path: Path, mode: int) -> None:
        """Create a folder and its parents, durable at once (see the module docstring)."""
        relative = self._relative(path)
        for folder in [*reversed(relative.parents), relative]:
            if folder in self._disk.folders:
                continue
            parent = self._disk.folders[folder.parent]
            if folder.name in parent.entries:
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path))
            index = self._record("makedirs", folder, oct(mode))
            self._apply(_Effect("mkdir", folder=folder), index)

    def listdir(self, path: Path) -> list[str]:
        """The names in a folder, files and folders, as the running program sees them."""
        relative = self._relative(path)
        self._record("listdir", relative)
        folder = self._disk.folders.get(relative)
        if folder is None:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))
        subfolders = [f.name for f in self._disk.folders if f.parent == relative and f.name]
        return [*folder.entries, *subfolders]

    def read_bytes(self, path: Path) -> bytes:
        """A whole file as the running program sees it."""
        _, _, inode = self._lookup(path)
        self._record("read_bytes", self._relative(path))
        return bytes(self._disk.inodes[inode].content)

    def read_at(self, path: Path, offset: int, size: int) -> bytes:
        """Up to `size` bytes from `offset`."""
        _, _, inode = self._lookup(path)
        self._record("read_at", self._relative(path), f"{offset}+{size}")
        return bytes(self._disk.inodes[inode].content[offset : offset + size])

    def open(self, path: Path, flags: int, mode: int = 0o777) -> int:
        """A descriptor; O_CREAT, O_EXCL and O_TRUNC act as in `os.open`."""
        relative = self._relative(path)
        fd = next(self._fds)
        if relative in self._disk.folders:
            self._record("open", relative, "folder")
            self._handles[fd] = _Handle(relative, None)
            return fd
        folder = self._disk.folders.get(relative.parent)
        if folder is None:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))
        inode = folder.entries.get(relative.name)
        if inode is None:
            if not flags & os.O_CREAT:
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))
            inode = next(self._inodes)
            index = self._record("create", relative, f"inode {inode}")
            self._apply(
                _Effect("create", folder=relative.parent, name=relative.name, inode=inode), index
            )
        elif flags & os.O_CREAT and flags & os.O_EXCL:
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path))
        elif flags & os.O_TRUNC and self._disk.inodes[inode].content:
            index = self._record("truncate", relative, "O_TRUNC")
            self._apply(_Effect("resize", inode=inode, length=0), index)
        else:
            self._record("open", relative)
        self._handles[fd] = _Handle(relative, inode)
        return fd

    def close(self, fd: int) -> None:
        """Release a descriptor."""
        handle = self._handles.pop(fd, None)
        if handle is None:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        self._record("close", handle.path)

    def write(self, fd: int, data: bytes | memoryview) -> int:
        """Write at the descriptor's position."""
        handle, _ = self._file(fd)
        written = self.pwrite(fd, data, handle.position)
        handle.position += written
        return written

    def pwrite(self, fd: int, data: bytes | memoryview, offset: int) -> int:
        """Write at `offset` (the write is never short)."""
        handle, inode = self._file(fd)
        payload = bytes(data)
        index = self._record("write", handle.path, f"{len(payload)} bytes at {offset}")
        self._apply(_Effect("write", inode=inode, offset=offset, data=payload), index)
        return len(payload)

    def fsync(self, fd: int) -> None:
        """A file's content becomes durable; for a folder, its entries."""
        handle = self._handle(fd)
        if handle.inode is None:
            index = self._record("fsync", handle.path, "folder")
            self._apply(_Effect("syncdir", folder=handle.path), index)
            return
        index = self._record("fsync", handle.path)
        self._apply(_Effect("sync", inode=handle.inode), index)

    def fdatasync(self, fd: int) -> None:
        """As `fsync`: the size, the only metadata modelled, is data for fdatasync too."""
        handle = self._handle(fd)
        if handle.inode is None:
            self.fsync(fd)
            return
        index = self._record("fdatasync", handle.path)
        self._apply(_Effect("sync", inode=handle.inode), index)

    def ftruncate(self, fd: int, length: int) -> None:
        """Cut or extend an open file."""
        handle, inode = self._file(fd)
        index = self._record("truncate", handle.path, f"to {length}")
        self._apply(_Effect("resize", inode=inode, length=length), index)

    def truncate(self, path: Path, length: int) -> None:
        """Cut or extend a file by name."""
        _, _, inode = self._lookup(path)
        index = self._record("truncate", self._relative(path), f"to {length}")
        self._apply(_Effect("resize", inode=inode, length=length), index)

    def replace(self, source: Path, target: Path) -> None:
        """Rename within one folder (the only kind the code makes)."""
        folder, name, _ = self._lookup(source)
        relative = self._relative(target)
        if relative.parent != folder:
            raise NotImplementedError("renames across folders are not modelled")
        index = self._record("replace", folder / name, f"to {relative.name}")
        self._apply(_Effect("rename", folder=folder, name=name, target=relative.name), index)

    def unlink(self, path: Path) -> None:
        """Remove a name (the file lives on while open)."""
        folder, name, _ = self._lookup(path)
        index = self._record("unlink", folder / name)
        self._apply(_Effect("unlink", folder=folder, name=name), index)
