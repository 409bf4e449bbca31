"""Alerts: the conditions an operator must hear about at once, computed from the journal alone.

A broken tip (`bad_in_a_row` scans in a row decided bad), a file that failed (within the last
`failure_window_minutes`), and a stall (files waiting while nothing has been finished for
`stall_minutes`). Both the daemon (`alert_monitor`: log, Prometheus, notifications) and the review
page (its banner, `GET /api/alerts`) call `active_alerts` on the same journal, so they always agree.
Every query uses an index of the `files` table (its id or its state), so a check costs milliseconds
with 100,000 rows.
"""

from __future__ import annotations

import enum
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from afmwatch.config import AlertsConfig


class AlertKind(enum.StrEnum):
    BAD_IN_A_ROW = "bad_in_a_row"
    FILE_FAILED = "file_failed"
    STALL = "stall"


ALERT_KINDS = tuple(AlertKind)
RECENT_FINISHED = 200  # the stall check reads the newest finished rows only (finish order follows arrival)


@dataclass(frozen=True)
class Alert:
    """One active alert: what, since when (epoch s), in words, and the figures behind it."""

    kind: AlertKind
    since: float
    message: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "since": datetime.fromtimestamp(self.since, timezone.utc).isoformat(timespec="seconds"),
            "message": self.message,
            "details": self.details,
        }


def _bad_in_a_row(db: sqlite3.Connection, limit: int) -> Alert | None:
    """The newest sorted scans (arrival order) are all bad, at least `limit` of them."""
    if limit <= 0:
        return None
    row = db.execute("SELECT MAX(id) FROM files WHERE state = 'done' AND coalesce(decision, '') != 'bad'").fetchone()
    last_not_bad = row[0] or 0
    count, first_id, newest_id = db.execute(
        "SELECT COUNT(*), MIN(id), MAX(id) FROM files WHERE state = 'done' AND id > ?", (last_not_bad,)
    ).fetchone()
    if count < limit:
        return None
    first = db.execute("SELECT updated_at FROM files WHERE id = ?", (first_id,)).fetchone()
    newest = db.execute("SELECT path, final_path FROM files WHERE id = ?", (newest_id,)).fetchone()
    return Alert(
        AlertKind.BAD_IN_A_ROW,
        float(first[0]),
        f"{count} scans in a row decided bad: the tip is probably broken (latest: {Path(newest[0]).name})",
        {"count": count, "limit": limit, "latest": newest[1] or newest[0], "first_id": first_id},
    )


def _failures(db: sqlite3.Connection, window_s: float, now: float) -> Alert | None:
    """A file failed within the window; the alert lasts `window_s` after the latest failure."""
    count, first_at = db.execute(
        "SELECT COUNT(*), MIN(updated_at) FROM files WHERE state = 'failed' AND updated_at >= ?", (now - window_s,)
    ).fetchone()
    if not count:
        return None
    latest = db.execute(
        "SELECT path, final_path, error FROM files WHERE state = 'failed' ORDER BY id DESC LIMIT 1"
    ).fetchone()
    name = Path(latest[0]).name
    minutes = window_s / 60
    return Alert(
        AlertKind.FILE_FAILED,
        float(first_at),
        f"{count} file{'s' if count != 1 else ''} failed in the last {minutes:g} minutes "
        f"(latest: {name}: {latest[2] or 'could not be processed'})",
        {"count": count, "window_minutes": minutes, "latest": latest[1] or latest[0], "error": latest[2]},
    )


def _stall(db: sqlite3.Connection, stall_s: float, now: float) -> Alert | None:
    """Files have waited longer than `stall_s` and nothing has been finished for as long."""
    if stall_s <= 0:
        return None
    waiting, oldest = db.execute(
        "SELECT COUNT(*), MIN(seen_at) FROM files WHERE state IN ('seen', 'settled', 'processing')"
    ).fetchone()
    if not waiting or oldest > now - stall_s:
        return None
    (last_finished,) = db.execute(
        "SELECT MAX(updated_at) FROM (SELECT updated_at FROM files "
        "WHERE state IN ('done', 'failed', 'vanished') ORDER BY id DESC LIMIT ?)",
        (RECENT_FINISHED,),
    ).fetchone()
    if last_finished is not None and last_finished > now - stall_s:
        return None
    since = max(oldest, last_finished or oldest) + stall_s
    idle = (
        "nothing finished yet"
        if last_finished is None
        else f"nothing finished for {(now - last_finished) / 60:.0f} min"
    )
    return Alert(
        AlertKind.STALL,
        float(since),
        f"{waiting} file{'s' if waiting != 1 else ''} waiting and {idle}: is the daemon running?",
        {"waiting": waiting, "oldest_waiting_since": oldest, "last_finished_at": last_finished},
    )


def active_alerts(db: sqlite3.Connection, settings: AlertsConfig, now: float | None = None) -> list[Alert]:
    """Every alert whose condition holds in the journal `db` now (a connection to the journal file)."""
    now = time.time() if now is None else now
    found = [
        _bad_in_a_row(db, settings.bad_in_a_row),
        _failures(db, settings.failure_window_minutes * 60, now) if settings.failures else None,
        _stall(db, settings.stall_minutes * 60, now),
    ]
    return [alert for alert in found if alert is not None]
