"""Sorting again, while the service runs, what could not be sorted: the retrier.

A scan whose plan is committed (`acting`) but could not be carried out waits in `SortWaiting`
(put there by an act thread, or at start for every `acting` entry reconcile could not finish).
When it is due, the retrier runs the same idempotent `carry_out` (checking by hash that the scan is
still what was planned). A full or read-only folder is waited out however long it lasts, probed by
one scan at a time; once it clears, everything waiting is sorted within `max_backoff_seconds`. A
cause of the scan's own (no permission, ...) is tried `sort_retry.max_attempts` times, then the
scan is recorded as failed where it is: never left in `acting`.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import structlog

from afmwatch.daemon.act import ActError, carry_out, final_state
from afmwatch.daemon.journal import Entry, JournalFull, State
from afmwatch.daemon.runtime import Runtime
from afmwatch.daemon.settle import Settler
from afmwatch.daemon.sidecar import preview_path, sidecar_path
from afmwatch.daemon.stage import Stage
from afmwatch.daemon.waiting import Waiting, cause_of
from afmwatch.durable import sha256_file
from afmwatch.names import path_text, text_path
from afmwatch.verdict import Decision

log = structlog.get_logger("afmwatch.retry")

TICK_SECONDS = 0.25


class SortRetrier(Stage):
    """One thread: carries out the waiting plans when they are due (`runtime.sort_waiting`)."""

    stall_seconds = 300.0  # one carry_out (a copy across file systems, verified) takes seconds

    def __init__(self, runtime: Runtime, settler: Settler):
        super().__init__(runtime, "afmwatch-retry")
        self.settler = settler
        self._stop = threading.Event()

    def start(self) -> None:
        """Every `acting` entry left at start (reconcile could not finish it) waits here; tried at once."""
        for entry in self.runtime.journal.in_states((State.ACTING,)):
            self.postponed(entry.id, entry.path, RuntimeError(entry.error or "not finished at start"), first=True)
        super().start()

    def stop(self, deadline: float) -> None:
        """End now: what still waits is `acting` in the journal and is tried again at the next start."""
        self._stop.set()
        self.runtime.sort_waiting.wake.set()

    def postponed(self, entry_id: int, path: str, exc: BaseException, *, first: bool = False) -> Waiting:
        """Record that sorting this entry failed with `exc`; it waits for its next try."""
        config = self.runtime.config
        cause, lasting = ("not finished at start", False) if first else cause_of(exc, config)
        waiting = self.runtime.sort_waiting.add(entry_id, path, cause, lasting, str(exc), config.sort_retry)
        if first:
            waiting.next_at = 0.0
        return waiting

    def run(self) -> None:
        waiting = self.runtime.sort_waiting
        while not self._stop.is_set():
            self.beat()
            blocked: dict[str, float] = {}  # a folder condition found this round: cause -> when to look again
            for item in waiting.due():
                if self._stop.is_set():
                    return
                if item.lasting and item.cause in blocked:
                    waiting.postpone(item, blocked[item.cause])
                    continue
                self.beat()
                try:
                    self.attempt(item)
                except Exception:  # a bug here costs this scan one try, not the retrier
                    log.exception("sort_retry_failed", file=item.path)
                    self.postponed(item.entry_id, item.path, RuntimeError("unexpected error while sorting again"))
                after = waiting.counts()
                if item.entry_id in waiting and item.lasting and item.cause in after:
                    blocked[item.cause] = item.next_at
            waiting.wake.wait(TICK_SECONDS)
            waiting.wake.clear()

    def attempt(self, item: Waiting) -> None:
        """Carry the plan out once; on failure it waits again, or after the cap fails in place."""
        journal, waiting = self.runtime.journal, self.runtime.sort_waiting
        try:
            entry = journal.get(item.entry_id)
        except JournalFull as exc:
            self.postponed(item.entry_id, item.path, exc)
            return
        if entry is None or entry.state != State.ACTING or not entry.sidecar:
            waiting.remove(item.entry_id)
            return
        try:
            written = carry_out(entry.sidecar, verify=True)
            journal.update(
                entry.id, state=final_state(written["decision"]), final_path=written["final_path"], sidecar=written
            )
        except ActError as exc:  # the original changed or vanished, or another file took the name
            self._replan(entry, str(exc))
            return
        except Exception as exc:  # OSError (full, read-only, permission), JournalFull, or a bug
            cause, lasting = cause_of(exc, self.runtime.config)
            if not lasting and item.attempts >= self.runtime.config.sort_retry.max_attempts:
                self._fail_in_place(entry, item, cause, exc)
                return
            again = self.postponed(entry.id, entry.path, exc)
            if again.attempts == 2 or cause != item.cause:
                log.warning("sort_waiting", file=entry.path, cause=cause, error=str(exc), attempts=again.attempts)
            return
        waiting.remove(entry.id)
        self.runtime.metrics.count(written["decision"])
        log.info(
            "scan_sorted",
            file=entry.path,
            decision=written["decision"],
            to=written["final_path"],
            retried=item.attempts,
            waited_s=round(time.time() - item.since, 1),
        )

    def _replan(self, entry: Entry, reason: str) -> None:
        """The plan no longer fits what is on disk: forget it; the scan, if still there, is read again."""
        sidecar = entry.sidecar or {}
        final = text_path(sidecar.get("final_path", ""))
        if sidecar.get("sort") != "none" and not final.exists():
            preview_path(final).unlink(missing_ok=True)  # a preview for a scan that never arrived there
        self.runtime.journal.update(
            entry.id, state=State.VANISHED, error=f"{reason}; processed again if it is still there"
        )
        self.runtime.sort_waiting.remove(entry.id)
        log.warning("sort_replanned", file=entry.path, reason=reason)
        self.settler.touch(text_path(entry.path))

    def _fail_in_place(self, entry: Entry, item: Waiting, cause: str, exc: BaseException) -> None:
        """Tried `max_attempts` times: the scan stays where it is now, recorded as failed with the reason.
        A copy (or link) already made at the destination is removed, so the scan is in one place only."""
        sidecar: dict[str, Any] = entry.sidecar or {}
        original = text_path(sidecar.get("original_path", entry.path))
        final = text_path(sidecar.get("final_path", ""))
        where = original
        if sidecar.get("sort") != "none" and final != original:
            if original.exists() and final.exists() and _same_content(original, final, sidecar.get("sha256")):
                final.unlink(missing_ok=True)
            if not final.exists():
                preview_path(final).unlink(missing_ok=True)
                sidecar_path(final).unlink(missing_ok=True)
            elif not original.exists():
                where = final  # it was moved; only its sidecar could not be written
        reason = f"{cause} ({exc}); tried {item.attempts} times; the scan stays in {where.parent}"
        self.runtime.journal.update(
            entry.id, state=State.FAILED, decision=Decision.FAILED, final_path=path_text(where), error=reason
        )
        self.runtime.sort_waiting.remove(entry.id)
        self.runtime.metrics.count(Decision.FAILED)
        log.error("scan_failed_in_place", file=entry.path, reason=reason)


def _same_content(original: Path, final: Path, sha256: str | None) -> bool:
    try:
        if os.path.samefile(original, final):
            return True
        return sha256 is not None and sha256_file(final) == sha256 == sha256_file(original)
    except OSError:
        return False
