"""The journal: one SQLite database (WAL mode) under the state folder that records every file's state.

States of an input file, in order: seen -> settled -> processing -> acting -> done | failed.
`acting` is written, with the planned destination and the complete sidecar, *before* anything is
moved, so that a restart after a crash or power cut can finish the move exactly as planned
(`afmwatch.daemon.reconcile`). `vanished` records a file that disappeared before it was processed.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from afmwatch.config import Config

JOURNAL_NAME = "journal.sqlite3"
STATE_FOLDER_NAME = ".afmwatch-state"
OPEN_STATES = ("seen", "settled", "processing")
FINAL_STATES = ("done", "failed", "vanished")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL,
    state TEXT NOT NULL,
    size INTEGER,
    mtime_ns INTEGER,
    sha256 TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    decision TEXT,
    final_path TEXT,
    sidecar TEXT,
    error TEXT,
    seen_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS files_path ON files(path);
CREATE INDEX IF NOT EXISTS files_sha ON files(sha256);
CREATE INDEX IF NOT EXISTS files_state ON files(state);
CREATE TABLE IF NOT EXISTS service (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class Entry:
    """One row of the journal: one arrival of one input file."""

    id: int
    path: str
    state: str
    size: int | None
    mtime_ns: int | None
    sha256: str | None
    attempts: int
    decision: str | None
    final_path: str | None
    sidecar: dict[str, Any] | None
    error: str | None
    seen_at: float
    updated_at: float


def state_folder(config: Config) -> Path:
    """The journal's folder: `state_folder`, else `.afmwatch-state` in the output folder."""
    if config.state_folder is not None:
        return config.state_folder
    base = config.output_root if config.output_root is not None else config.watch_folder
    return base / STATE_FOLDER_NAME


def journal_path(state_folder: Path) -> Path:
    return Path(state_folder) / JOURNAL_NAME


class Journal:
    """Thread-safe access to the journal; every write is one committed, fsynced transaction."""

    def __init__(self, state_folder: Path, *, readonly: bool = False):
        path = journal_path(state_folder)
        if readonly:
            self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False, timeout=10)
        else:
            Path(state_folder).mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, timeout=30, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            # Only `acting` must survive a power cut (it is committed before anything moves): those
            # commits are FULL (the WAL is synced, with every earlier commit). A lost later state is
            # redone from the `acting` plan; a lost earlier one leaves the file in the watch folder.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        self.path = path

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _write(self, sql: str, params: tuple = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, params)

    def _rows(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    # -- rows ---------------------------------------------------------------------------------
    def add(self, path: str, size: int | None, mtime_ns: int | None) -> int:
        now = time.time()
        cursor = self._write(
            "INSERT INTO files (path, state, size, mtime_ns, seen_at, updated_at) VALUES (?, 'seen', ?, ?, ?, ?)",
            (path, size, mtime_ns, now, now),
        )
        return int(cursor.lastrowid)

    def update(self, entry_id: int, *, durable: bool = False, **fields: Any) -> None:
        """Set columns of one entry; `durable` commits with a synced WAL (survives a power cut)."""
        if "sidecar" in fields and fields["sidecar"] is not None:
            fields["sidecar"] = json.dumps(fields["sidecar"], sort_keys=True)
        fields["updated_at"] = time.time()
        columns = ", ".join(f"{name} = ?" for name in fields)
        with self._lock:
            if durable:
                self._db.execute("PRAGMA synchronous=FULL")
            try:
                self._db.execute(f"UPDATE files SET {columns} WHERE id = ?", (*fields.values(), entry_id))
            finally:
                if durable:
                    self._db.execute("PRAGMA synchronous=NORMAL")

    def get(self, entry_id: int) -> Entry | None:
        rows = self._rows("SELECT * FROM files WHERE id = ?", (entry_id,))
        return _entry(rows[0]) if rows else None

    def latest(self, path: str) -> Entry | None:
        rows = self._rows("SELECT * FROM files WHERE path = ? ORDER BY id DESC LIMIT 1", (path,))
        return _entry(rows[0]) if rows else None

    def finished_with_hash(self, sha256: str, exclude_id: int) -> Entry | None:
        """The earliest finished (done) entry with this content, other than `exclude_id`."""
        rows = self._rows(
            "SELECT * FROM files WHERE sha256 = ? AND state = 'done' AND id != ? ORDER BY id LIMIT 1",
            (sha256, exclude_id),
        )
        return _entry(rows[0]) if rows else None

    def in_states(self, states: tuple[str, ...]) -> Iterator[Entry]:
        marks = ", ".join("?" for _ in states)
        for row in self._rows(f"SELECT * FROM files WHERE state IN ({marks}) ORDER BY id", states):
            yield _entry(row)

    # -- health -------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        rows = self._rows("SELECT state, COUNT(*) AS n FROM files GROUP BY state")
        return {row["state"]: int(row["n"]) for row in rows}

    def decision_counts(self) -> dict[str, int]:
        rows = self._rows("SELECT decision, COUNT(*) AS n FROM files WHERE state IN ('done', 'failed') GROUP BY decision")
        return {row["decision"] or "none": int(row["n"]) for row in rows}

    def finished_since(self, since: float) -> int:
        rows = self._rows("SELECT COUNT(*) AS n FROM files WHERE state IN ('done', 'failed') AND updated_at >= ?", (since,))
        return int(rows[0]["n"])

    def last_errors(self, limit: int = 5) -> list[Entry]:
        rows = self._rows(
            "SELECT * FROM files WHERE error IS NOT NULL ORDER BY updated_at DESC LIMIT ?", (limit,)
        )
        return [_entry(row) for row in rows]

    def set_service(self, values: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute("BEGIN")
            for key, value in values.items():
                self._db.execute(
                    "INSERT INTO service (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (key, json.dumps(value)),
                )
            self._db.execute("COMMIT")

    def service(self) -> dict[str, Any]:
        return {row["key"]: json.loads(row["value"]) for row in self._rows("SELECT key, value FROM service")}


def _entry(row: sqlite3.Row) -> Entry:
    data = dict(row)
    data["sidecar"] = json.loads(data["sidecar"]) if data["sidecar"] else None
    return Entry(**data)
