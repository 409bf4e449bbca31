"""Scans waiting to be sorted again, and why.

An act thread whose committed plan (`acting`) could not be carried out (output folder full or
read-only, no permission, the journal full) puts the scan here and goes on with the next; the
retrier (`afmwatch.daemon.retry`) carries the plan out when it is due. `afmwatch status`, the log,
systemd's STATUS line and the `afmwatch_sort_waiting` gauge count them by cause.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from afmwatch.config import Config, SortRetryConfig
from afmwatch.daemon.journal import JournalFull

JOURNAL_FULL = "journal disk full"


def cause_of(exc: BaseException, config: Config) -> tuple[str, bool]:
    """Why sorting failed, in words, and whether it is a condition of a whole folder that is waited
    out however long it lasts (full, read-only) rather than a cause of this scan's own (counted)."""
    if isinstance(exc, JournalFull):
        return JOURNAL_FULL, True
    if not isinstance(exc, OSError):
        return f"unexpected error ({type(exc).__name__}: {exc})", False
    folder = "output folder" if config.sort != "none" else "watch folder"  # sort: none writes sidecars there
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"{folder} full", True
    if exc.errno == errno.EROFS:
        if config.sort != "none" and config.output_root is not None and not _read_only(config.output_root):
            folder = "watch folder"  # the scan cannot leave it
        return f"{folder} read-only", True
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "no permission to move the scan or write its sidecar", False
    if exc.errno in (errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
        return "name clash at the destination", False
    return f"cannot sort ({exc.strerror or exc})", False


def _read_only(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


@dataclass
class Waiting:
    """One scan whose plan waits to be carried out."""

    entry_id: int
    path: str
    cause: str
    lasting: bool  # a folder condition: waited out, not counted against max_attempts
    error: str
    attempts: int = 1
    since: float = 0.0  # time.time() of the first failure
    next_at: float = 0.0  # time.monotonic()


class SortWaiting:
    """The scans waiting to be sorted again (thread-safe): act threads add, the retrier takes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[int, Waiting] = {}
        self.wake = threading.Event()  # set when a scan is added: the retrier looks at once

    def add(self, entry_id: int, path: str, cause: str, lasting: bool, error: str, retry: SortRetryConfig) -> Waiting:
        """A scan failed to sort (again): it waits, with a backoff that doubles per attempt."""
        with self._lock:
            waiting = self._waiting.get(entry_id)
            if waiting is None:
                waiting = self._waiting[entry_id] = Waiting(entry_id, path, cause, lasting, error, since=time.time())
            else:
                waiting.attempts += 1
                waiting.cause, waiting.lasting, waiting.error = cause, lasting, error
            waiting.next_at = time.monotonic() + backoff(waiting.attempts, retry)
        self.wake.set()
        return waiting

    def due(self) -> list[Waiting]:
        now = time.monotonic()
        with self._lock:
            return sorted((w for w in self._waiting.values() if w.next_at <= now), key=lambda w: w.entry_id)

    def postpone(self, waiting: Waiting, until: float) -> None:
        """Wait until `until` (time.monotonic()) without an attempt: another scan just found the same
        folder condition, no need to try each of them."""
        with self._lock:
            waiting.next_at = max(waiting.next_at, until)

    def remove(self, entry_id: int) -> None:
        with self._lock:
            self._waiting.pop(entry_id, None)

    def __contains__(self, entry_id: int) -> bool:
        with self._lock:
            return entry_id in self._waiting

    def counts(self) -> dict[str, int]:
        """How many scans wait, by cause."""
        counts: dict[str, int] = {}
        with self._lock:
            for waiting in self._waiting.values():
                counts[waiting.cause] = counts.get(waiting.cause, 0) + 1
        return counts

    def describe(self) -> str:
        """'output folder full: 49 scans waiting', one part per cause; '' when nothing waits."""
        parts = []
        for cause, n in sorted(self.counts().items(), key=lambda item: -item[1]):
            parts.append(f"{cause}: {n} scan{'s' if n != 1 else ''} waiting")
        return "; ".join(parts)


def backoff(attempts: int, retry: SortRetryConfig) -> float:
    """Seconds before the next try after `attempts` failed ones: doubling, at most max_backoff_seconds."""
    return min(retry.max_backoff_seconds, retry.backoff_seconds * 2 ** max(0, attempts - 1))
