"""A scan's identity from the moment it is opened to the moment it is moved.

A file is opened once, below the watch folder, without following a link at any depth, and without
blocking (a FIFO opens at once and is refused, never read). It must be a regular file (`fstat`). Its
bytes are hashed and copied from that one descriptor into a private copy that the readers parse, so
what is classified is exactly what was hashed, whatever happens to the path meanwhile. Before the
move the path must still name the same file (device, inode, size, modification time); a copy across
file systems is checked against the hash as well (`afmwatch.durable.safe_move`).
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

from afmwatch.errors import AfmwatchError
from afmwatch.names import path_text

CHUNK = 1 << 20

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISLNK, "a symbolic link"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    return next((what for test, what in _KINDS if test(mode)), "not a regular file")


class NotRegularFile(AfmwatchError):
    """The path names a link, folder, FIFO, device or socket: never read, never followed."""

    def __init__(self, path: Path, what: str):
        self.path = path
        self.what = what
        super().__init__(f"{path_text(path.name)}: {what}, not a regular file; not read")


class ContentChanged(AfmwatchError):
    """The file changed while its bytes were copied (it is being written): it settles again."""


@dataclass(frozen=True)
class Identity:
    """Which file a path named when it was opened."""

    dev: int
    ino: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, info: os.stat_result) -> Identity:
        return cls(info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)

    def matches(self, info: os.stat_result) -> bool:
        return stat.S_ISREG(info.st_mode) and Identity.of(info) == self


def open_below(root: Path, path: Path) -> tuple[int, Identity]:
    """A read-only descriptor for `path` and its identity, opened folder by folder from `root` with
    O_NOFOLLOW (a link at any depth is refused) and O_NONBLOCK (a FIFO never blocks); raises
    NotRegularFile for anything but a regular file, FileNotFoundError, PermissionError."""
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        raise NotRegularFile(path, "outside the watch folder") from None
    if not parts:
        raise NotRegularFile(path, "the watch folder itself")
    folder = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            try:
                inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise NotRegularFile(path, f"below {path_text(part)}, which is a link or not a folder") from None
                raise
            os.close(folder)
            folder = inner
        info = os.stat(parts[-1], dir_fd=folder, follow_symlinks=False)
        if not stat.S_ISREG(info.st_mode):  # look before opening: opening a device can act on it
            raise NotRegularFile(path, kind(info.st_mode))
        try:
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=folder)
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # swapped for a link since we looked
                raise NotRegularFile(path, "a symbolic link") from None
            raise
    finally:
        os.close(folder)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):  # swapped since we looked
        os.close(fd)
        raise NotRegularFile(path, kind(info.st_mode))
    return fd, Identity.of(info)


def copy_hashed(fd: int, identity: Identity, dest: Path) -> str:
    """Copy the open file into `dest` (a private copy for the readers), hashing it on the way;
    ContentChanged if its size or modification time moved meanwhile. Returns the sha256."""
    digest = hashlib.sha256()
    dest.parent.mkdir(parents=True, exist_ok=True)
    offset = 0
    with open(dest, "wb") as target:
        while block := os.pread(fd, CHUNK, offset):
            digest.update(block)
            target.write(block)
            offset += len(block)
    if offset != identity.size or Identity.of(os.fstat(fd)) != identity:
        dest.unlink(missing_ok=True)
        raise ContentChanged(f"{path_text(dest.name)} changed while it was read")
    return digest.hexdigest()


def still_same(path: Path, identity: Identity) -> bool:
    """Whether `path` names the file that was opened (not a rewrite, a replacement or a swap)."""
    try:
        return identity.matches(os.lstat(path))
    except OSError:
        return False


def clear_folder(folder: Path) -> None:
    """Empty the private copies' folder (copies left by a killed service)."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
