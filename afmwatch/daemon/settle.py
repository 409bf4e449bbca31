"""Settling: a file is handed on only when it has stopped changing.

The watcher (and the start-up folder scan) only `touch` paths. The settler thread stats every
pending path a few times per `settle_seconds`; a file whose size and mtime have not changed for
`settle_seconds` is ready and goes to the bounded read queue (a full queue blocks the settler:
back-pressure instead of unbounded memory). A file that the reader could not parse while it may
still have been growing comes back through `retry` and has to settle again after a backoff.
"""

from __future__ import annotations

import os
import stat as stat_mode
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from afmwatch.daemon.identity import NotRegularFile, kind, open_below
from afmwatch.daemon.journal import FULL_RETRY_SECONDS, OPEN_STATES, SORTED_STATES, JournalFull, State
from afmwatch.daemon.runtime import Runtime
from afmwatch.daemon.stage import Stage
from afmwatch.names import path_text
from afmwatch.readers import is_complete

log = structlog.get_logger("afmwatch.settle")


@dataclass
class Arrival:
    """One input file on its way through the daemon (mutable: it collects its history)."""

    path: Path
    entry_id: int
    seen_at: float
    size: int | None = None
    mtime_ns: int | None = None
    stable_since: float = 0.0
    settled_at: float | None = None
    attempts: int = 0
    not_before: float = 0.0
    errors: list[str] = field(default_factory=list)
    incomplete_since: float | None = None  # its structure said incomplete from then on (monotonic)
    incomplete: str | None = None  # set once it stayed incomplete past settle.incomplete_seconds: fails


class Settler(Stage):
    """Owns the set of paths that are waiting to stop changing; one thread, no file reading. It admits
    a path only when the journal says it needs processing, and hands a settled file to the read queue."""

    stall_seconds = 120.0  # its loop only stats files: two minutes without coming round is a hung file system

    def __init__(self, runtime: Runtime):
        super().__init__(runtime, "afmwatch-settle")
        self._lock = threading.Lock()
        self._touched: set[Path] = set()
        self._waiting: dict[Path, Arrival] = {}
        self._busy: set[Path] = set()  # handed on, not yet finished
        self._changed_while_busy: set[Path] = set()
        self._stop = threading.Event()
        self._wake = threading.Event()

    # -- called from other threads --------------------------------------------------------------
    def touch(self, path: Path) -> None:
        """Record that `path` appeared or changed (cheap: safe to call from the watchdog handler)."""
        with self._lock:
            self._touched.add(path)
        self._wake.set()

    def retry(self, arrival: Arrival, backoff_seconds: float) -> None:
        """The file could not be parsed yet: let it settle again after `backoff_seconds`."""
        arrival.not_before = time.monotonic() + backoff_seconds
        arrival.size = arrival.mtime_ns = None
        with self._lock:
            self._busy.discard(arrival.path)
            self._waiting[arrival.path] = arrival

    def finished(self, path: Path) -> None:
        """The file has left the pipeline (sorted, failed or vanished)."""
        with self._lock:
            self._busy.discard(path)
            if path in self._changed_while_busy:  # copy/none: it changed while we read it; look again
                self._changed_while_busy.discard(path)
                self._touched.add(path)

    def changed(self, arrival: Arrival, backoff_seconds: float = 0.0) -> None:
        """The file changed after it settled (rewritten, replaced): it settles again, from its journal
        entry, and is classified as what it is then."""
        log.info(
            "scan_changed", file=str(arrival.path), note="changed after it settled; waiting for it to settle again"
        )
        self.runtime.journal.update(arrival.entry_id, state=State.SEEN)
        self.retry(arrival, backoff_seconds)

    def not_regular(self, arrival: Arrival, what: str) -> None:
        """The path now names a link, FIFO, device, socket or folder: ignored, never read or followed."""
        log.warning("not_a_regular_file", file=str(arrival.path), kind=what, note="ignored; not read, not followed")
        self.runtime.journal.update(
            arrival.entry_id, state=State.VANISHED, error=f"replaced by {what}, not a regular file; ignored"
        )
        self.finished(arrival.path)

    def vanished(self, arrival: Arrival) -> None:
        """The file disappeared before it was processed."""
        log.info("scan_vanished", file=str(arrival.path))
        self.runtime.journal.update(
            arrival.entry_id, state=State.VANISHED, error="the file disappeared before it was processed"
        )
        self.finished(arrival.path)

    def stop(self, deadline: float) -> None:
        self._stop.set()
        self._wake.set()

    def pending(self) -> int:
        with self._lock:
            return len(self._waiting) + len(self._touched)

    # -- the thread -------------------------------------------------------------------------------
    def run(self) -> None:
        tick = max(0.02, min(0.25, self.runtime.config.settle.settle_seconds / 4))
        while not self._stop.is_set():
            self.beat()
            try:
                self._take_touched()
                self._check_waiting()
            except JournalFull:  # intake paused (the journal logs it); tried again after a pause
                self._wake.wait(FULL_RETRY_SECONDS)
            self._wake.wait(tick)
            self._wake.clear()

    def _take_touched(self) -> None:
        with self._lock:
            touched, self._touched = self._touched, set()
            self._changed_while_busy |= touched & self._busy
            touched -= self._busy
            touched -= set(self._waiting)
        for path in sorted(touched):
            try:
                stat = os.lstat(path)
            except OSError:
                continue  # gone again before we looked (a temp file renamed away): nothing to do
            if not stat_mode.S_ISREG(stat.st_mode):  # a FIFO, device, socket, link or folder: never read
                if not stat_mode.S_ISDIR(stat.st_mode):
                    log.info("not_a_regular_file", file=str(path), kind=kind(stat.st_mode), note="ignored")
                continue
            try:
                entry_id = self._admit(path, stat)
            except JournalFull:  # intake pauses: this path and the rest wait until the journal takes a write
                with self._lock:
                    self._touched |= {p for p in touched if p >= path}
                raise
            except Exception:  # costs this path (logged with the traceback), not the settle thread
                log.exception("settle_failed", file=str(path))
                continue
            if entry_id is None:
                continue
            now = time.monotonic()
            arrival = Arrival(path=path, entry_id=entry_id, seen_at=time.time(), stable_since=now)
            arrival.size, arrival.mtime_ns = stat.st_size, stat.st_mtime_ns
            with self._lock:
                self._waiting[path] = arrival

    def _check_waiting(self) -> None:
        now = time.monotonic()
        with self._lock:
            candidates = [a for a in self._waiting.values() if a.not_before <= now]
        for arrival in candidates:
            if self._stop.is_set():
                return
            try:
                stat = os.lstat(arrival.path)
            except FileNotFoundError:
                with self._lock:
                    self._waiting.pop(arrival.path, None)
                self.vanished(arrival)
                continue
            except OSError as exc:
                log.warning("stat_failed", file=str(arrival.path), error=str(exc))
                continue
            if not stat_mode.S_ISREG(stat.st_mode):  # swapped for a FIFO, device, link or folder
                with self._lock:
                    self._waiting.pop(arrival.path, None)
                self.not_regular(arrival, kind(stat.st_mode))
                continue
            signature = (stat.st_size, stat.st_mtime_ns)
            if signature != (arrival.size, arrival.mtime_ns):
                arrival.size, arrival.mtime_ns = signature
                arrival.stable_since = now
                continue
            if now - arrival.stable_since < self.runtime.config.settle.settle_seconds:
                continue
            if self._incomplete(arrival, now):
                continue
            arrival.settled_at = time.time()
            arrival.attempts += 1
            with self._lock:
                self._waiting.pop(arrival.path, None)
                self._busy.add(arrival.path)
            self._ready(arrival)  # blocks while the read queue is full

    def _incomplete(self, arrival: Arrival, now: float) -> bool:
        """Whether the file's own structure says it is not all there yet (`FileFormat.complete`): then
        it keeps waiting, however long it has been quiet, until `settle.incomplete_seconds` have
        passed; after that it goes on and fails as truncated."""
        if self._structure_complete(arrival.path) is not False:
            if arrival.incomplete_since is not None:
                log.info("scan_complete", file=str(arrival.path), note="its structure now says complete")
            arrival.incomplete_since = None
            return False
        limit = self.runtime.config.settle.incomplete_seconds
        if arrival.incomplete_since is None:
            arrival.incomplete_since = now
            log.info(
                "scan_incomplete",
                file=str(arrival.path),
                note="quiet, but its structure says data is missing; waiting for the rest",
                gives_up_after_s=limit,
            )
            self.runtime.journal.update(
                arrival.entry_id, error="waiting: the file's structure says it is incomplete (still being written?)"
            )
        if now - arrival.incomplete_since < limit:
            arrival.stable_since = now  # looked at again after another settle time
            return True
        arrival.incomplete = (
            f"the file is truncated: its structure says data is missing, and it stayed so for {limit:g} s"
        )
        return False

    def _structure_complete(self, path: Path) -> bool | None:
        """The format's completeness check on the file, opened as the readers open it (never a FIFO or a
        link); None when the format has no such check or the file cannot be opened now."""
        watch_folder = self.runtime.config.watch_folder
        assert watch_folder is not None  # the service does not start without one
        try:
            fd, _ = open_below(watch_folder, path)
        except (NotRegularFile, OSError):
            return None
        with os.fdopen(fd, "rb") as handle:
            return is_complete(path, handle)

    def _admit(self, path: Path, stat: os.stat_result) -> int | None:
        """A journal entry for a file that needs processing, or None if it was processed already."""
        journal = self.runtime.journal
        text = path_text(path)  # any bytes the file system allows, as valid text
        latest = journal.latest(text)
        if latest is not None:
            if latest.state in OPEN_STATES:  # interrupted before it was sorted: same entry, fresh start
                journal.update(
                    latest.id, state=State.SEEN, size=stat.st_size, mtime_ns=stat.st_mtime_ns, attempts=0, error=None
                )
                return latest.id
            if latest.state == State.ACTING:
                return None  # being sorted right now
            unchanged = latest.size == stat.st_size and latest.mtime_ns == stat.st_mtime_ns
            left_in_place = self.runtime.config.sort != "move" or latest.final_path in (None, text)
            if latest.state in SORTED_STATES and unchanged and left_in_place:
                return None  # copy/none keep the original where it is: processed already
        return journal.add(text, stat.st_size, stat.st_mtime_ns)

    def _ready(self, arrival: Arrival) -> None:
        try:
            self.runtime.journal.update(
                arrival.entry_id, state=State.SETTLED, size=arrival.size, mtime_ns=arrival.mtime_ns
            )
        except JournalFull:  # it settles again once the journal takes a write; not an attempt
            arrival.attempts -= 1
            self.retry(arrival, FULL_RETRY_SECONDS)
            raise
        self.hand_on(self.runtime.read_queue, arrival)
