"""Durability in one place: every output file is written atomically, every move is verified."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


def _process_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# mkstemp creates 0600 files; outputs (sidecars, previews) get the usual umask-based mode instead,
# so that operators in the group can open them
FILE_MODE = 0o666 & ~_process_umask()


def fsync_dir(path: Path) -> None:
    """Persist a directory entry (a rename or unlink) across a power cut."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(path: Path) -> None:
    """`mkdir -p` whose new folders survive a power cut (each new entry is synced in its parent)."""
    missing = []
    while not path.is_dir():
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        fsync_dir(folder.parent)


@contextlib.contextmanager
def atomic_write(path: str | Path, *, sync: bool = True) -> Iterator[BinaryIO]:
    """Open a temp file beside `path`; on success fsync and rename it over `path`, else remove it.

    `sync=False` skips the two fsyncs for files that matter less than their cost (previews): still
    never a half-written file after a crash, but a power cut may lose the newest ones.
    """
    path = Path(path)
    make_dirs(path.parent)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            if sync:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
        if sync:
            fsync_dir(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes, *, sync: bool = True) -> None:
    with atomic_write(path, sync=sync) as handle:
        handle.write(data)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def unique_path(path: Path) -> Path:
    """`path`, or `name-1.ext`, `name-2.ext`, ... : the first that does not exist (never overwrite)."""
    if not path.exists():
        return path
    stem, suffix = path.name.split(".", 1) if "." in path.name else (path.name, "")
    suffix = f".{suffix}" if suffix else ""
    n = 1
    while True:
        candidate = path.with_name(f"{stem}-{n}{suffix}")
        if not candidate.exists():
            return candidate
        n += 1


def safe_move(src: Path, dst: Path, *, copy_only: bool = False) -> Path:
    """Move `src` to `dst` (or a suffixed name if taken) without ever losing or damaging it.

    Same file system: a hard link then unlink (atomic, never overwrites). Across file systems, or
    when copying: copy to a temp file, fsync, verify size and sha256, rename, then remove the
    original (unless `copy_only`). Returns the final path.
    """
    if src.is_symlink():  # linking or copying would take the target, which may lie outside our folders
        raise OSError(f"{src} is a symbolic link; afmwatch does not follow links")
    make_dirs(dst.parent)
    while True:
        final = unique_path(dst)
        if not copy_only:
            try:
                os.link(src, final, follow_symlinks=False)
            except FileExistsError:
                continue
            except OSError:
                pass  # cross-device or no hard links: fall back to copy + verify
            else:
                fsync_dir(final.parent)
                os.unlink(src)
                fsync_dir(src.parent)
                return final
        break
    expected_size = src.stat().st_size
    expected_hash = sha256_file(src)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent)
    tmp = Path(tmp_name)
    try:
        with open(src, "rb") as source, os.fdopen(fd, "wb") as target:
            shutil.copyfileobj(source, target, 1 << 20)
            target.flush()
            os.fsync(target.fileno())
        if tmp.stat().st_size != expected_size or sha256_file(tmp) != expected_hash:
            raise OSError(f"copy of {src} to {final} failed verification")
        shutil.copystat(src, tmp)
        while True:
            try:
                os.link(tmp, final)
                break
            except FileExistsError:
                final = unique_path(dst)
        tmp.unlink()
        fsync_dir(final.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if not copy_only:
        os.unlink(src)
        fsync_dir(src.parent)
    return final
