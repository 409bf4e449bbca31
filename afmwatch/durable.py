"""Durability in one place: every output file is written atomically, every move is verified."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from afmwatch.names import NAME_MAX, fitted, split_tail

# `.NAME.XXXXXXXX.part`: mkstemp adds 8 characters and the suffix to the prefix
_TEMP_EXTRA = len(".") + len(".") + 8 + len(".part")


class SourceChanged(OSError):
    """The path no longer names the file that was planned to move (replaced, rewritten or swapped)."""


def temp_prefix(name: str) -> str:
    """mkstemp's prefix for a temp file beside `name`, short enough for the whole temp name to fit."""
    stem, tail = split_tail(name)
    return "." + fitted(stem, tail, NAME_MAX - _TEMP_EXTRA) + "."


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
    fd, tmp_name = tempfile.mkstemp(prefix=temp_prefix(path.name), suffix=".part", dir=path.parent)
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


def numbered(path: Path, n: int) -> Path:
    """`name-N.ext` beside `path` (cut short when the name would pass 255 bytes)."""
    stem, suffix = path.name.split(".", 1) if "." in path.name else (path.name, "")
    return path.with_name(fitted(f"{stem}-{n}", f".{suffix}" if suffix else ""))


def unique_path(path: Path) -> Path:
    """`path`, or `name-1.ext`, `name-2.ext`, ... : the first that does not exist (never overwrite)."""
    if not os.path.lexists(path):
        return path
    n = 1
    while os.path.lexists(candidate := numbered(path, n)):
        n += 1
    return candidate


def free_folders(path: Path, base: Path) -> Path:
    """`path` with every folder below `base` that is taken by a file (a scan `x.tif` sorted before a
    folder `x.tif/` arrived) replaced by the first free numbered name (`x-1.tif/`)."""
    try:
        parts = path.parent.relative_to(base).parts
    except ValueError:
        return path
    folder = base
    for part in parts:
        candidate, n = folder / part, 0
        while os.path.lexists(candidate) and (candidate.is_symlink() or not candidate.is_dir()):
            n += 1
            candidate = numbered(folder / part, n)
        folder = candidate
    return folder / path.name


_LIBC = ctypes.CDLL(None, use_errno=True)


def _rename_noreplace(src: Path, dst: Path) -> bool:
    """Rename without ever replacing `dst` (Linux renameat2); False where the system cannot."""
    renameat2 = getattr(_LIBC, "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_noreplace = -100, 1
    if renameat2(at_fdcwd, os.fsencode(src), at_fdcwd, os.fsencode(dst), rename_noreplace) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EXDEV):
        return False
    raise OSError(code, os.strerror(code), str(dst))


def _check(expect: Callable[[os.stat_result], bool] | None, info: os.stat_result, src: Path) -> None:
    if expect is not None and not expect(info):
        raise SourceChanged(errno.ESTALE, "the file changed or was replaced before it could be moved", str(src))


def safe_move(
    src: Path,
    dst: Path,
    *,
    copy_only: bool = False,
    expect: Callable[[os.stat_result], bool] | None = None,
    sha256: str | None = None,
) -> Path:
    """Move `src` to `dst` (or a suffixed name if taken) without ever losing or damaging it.

    Same file system: a hard link then unlink (atomic, never overwrites); where the system refuses
    the link (a file of another owner under protected_hardlinks), a rename that never replaces.
    Across file systems, or when copying: copy to a temp file, fsync, verify size and sha256, rename,
    then remove the original (unless `copy_only`). Returns the final path.

    `expect` (the planned file's identity, given its lstat) and `sha256` (its content, checked on a
    copy) make sure the file moved is the one planned: otherwise SourceChanged, with nothing moved.
    A file renamed over `src` after it was linked is left where it is (it is new content).
    """
    if src.is_symlink():  # linking or copying would take the target, which may lie outside our folders
        raise OSError(f"{src} is a symbolic link; afmwatch does not follow links")
    make_dirs(dst.parent)
    while True:
        final = unique_path(dst)
        if not copy_only:
            _check(expect, os.lstat(src), src)
            try:
                os.link(src, final, follow_symlinks=False)
            except FileExistsError:
                continue
            except OSError as exc:
                if exc.errno != errno.EXDEV and _rename_noreplace(src, final):
                    _placed(final, src, expect, renamed=True)
                    return final
            else:
                _placed(final, src, expect, renamed=False)
                return final
        break
    with open(src, "rb", opener=lambda name, flags: os.open(name, flags | os.O_NOFOLLOW | os.O_NONBLOCK)) as source:
        info = os.fstat(source.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise SourceChanged(errno.ESTALE, "no longer a regular file", str(src))
        _check(expect, info, src)
        expected_size = info.st_size
        expected_hash = sha256 or sha256_file(src)
        fd, tmp_name = tempfile.mkstemp(prefix=temp_prefix(final.name), suffix=".part", dir=final.parent)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as target:
                shutil.copyfileobj(source, target, 1 << 20)
                target.flush()
                os.fsync(target.fileno())
            if tmp.stat().st_size != expected_size or sha256_file(tmp) != expected_hash:
                if sha256 is not None:
                    raise SourceChanged(errno.ESTALE, "its content is not the content planned", str(src))
                raise OSError(f"copy of {src} to {final} failed verification")
            shutil.copystat(src, tmp, follow_symlinks=False)
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
    if not copy_only and _still(src, expect):
        os.unlink(src)
        fsync_dir(src.parent)
    return final


def _placed(final: Path, src: Path, expect: Callable[[os.stat_result], bool] | None, *, renamed: bool) -> None:
    """After the link (or rename) to `final`: undo it if it took another file than planned; else
    remove the original, unless a new file was renamed over it meanwhile."""
    if expect is not None and not expect(os.lstat(final)):
        if renamed:
            _rename_noreplace(final, src)  # give the new file its place back
        else:
            os.unlink(final)
        raise SourceChanged(errno.ESTALE, "the file changed or was replaced before it could be moved", str(src))
    fsync_dir(final.parent)
    if not renamed and _still(src, expect):
        try:
            os.unlink(src)
        except PermissionError:  # the original's folder is not ours to change: not moved after all
            os.unlink(final)
            raise
    fsync_dir(src.parent)


def _still(src: Path, expect: Callable[[os.stat_result], bool] | None) -> bool:
    """Whether `src` still names the planned file (so removing it removes nothing new)."""
    if expect is None:
        return True
    try:
        return expect(os.lstat(src))
    except FileNotFoundError:
        return False
