"""One service per journal: an exclusive lock (flock) on a file in the state folder, held while the
service runs. Two services on one journal would each sort what the other planned and count the other's
scans as vanished; the second one refuses to start instead, naming the first one's PID.

The kernel drops a flock when its holder dies (also on kill -9 or a power cut), so a stale lock
file never blocks a restart. The descriptor is not inherited by the reader processes.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from afmwatch.errors import AfmwatchError

LOCK_NAME = "afmwatch.lock"


class AlreadyRunning(AfmwatchError):
    """Another afmwatch service holds the state folder's lock."""

    def __init__(self, folder: Path, pid: int | None):
        self.folder = folder
        self.pid = pid
        holder = f"pid {pid}" if pid is not None else "another process"
        super().__init__(
            f"another afmwatch service ({holder}) is already running on the journal in {folder}; "
            "stop it first (one service per state folder)"
        )


class StateLock:
    """The state folder's lock; `acquire` raises AlreadyRunning when another process holds it."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise AlreadyRunning(self.folder, holder) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor drops the lock
            self._fd = None


def _read_pid(fd: int) -> int | None:
    text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None
