"""The journal: one SQLite database (WAL mode) under the state folder that records every file's state.

States of an input file, in order: seen -> settled -> processing -> acting -> done | failed.
`acting` is written, with the planned destination and the complete sidecar, *before* anything is
moved, so that a restart after a crash or power cut can finish the move exactly as planned
(`afmwatch.daemon.reconcile`). `vanished` records a file that disappeared before it was processed.
"""

from __future__ import annotations

import contextlib
import enum
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from afmwatch.config import Config
from afmwatch.errors import AfmwatchError
from afmwatch.names import clean

JOURNAL_NAME = "journal.sqlite3"
STATE_FOLDER_NAME = ".afmwatch-state"

log = structlog.get_logger("afmwatch.journal")

FULL_RETRY_SECONDS = 1.0  # after JournalFull, what could not be recorded is tried again this much later

# SQLite's messages for a state folder that cannot take a write now (disk full, I/O error, remounted
# read-only): the service pauses intake and tries again, it does not exit
_UNAVAILABLE = ("full", "disk i/o error", "unable to open", "readonly database", "read-only")


class JournalFull(AfmwatchError):
    """The journal cannot be written now (its disk is full or failing); nothing was changed."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(f"the journal cannot be written: {reason}")


class State(enum.StrEnum):
    """Where an input file is in its life, as the journal's `state` column stores it."""

    SEEN = "seen"  # found, waiting to stop changing (again, after a failed attempt)
    SETTLED = "settled"  # stopped changing, waiting for a reader
    PROCESSING = "processing"  # hashed; being read, measured and classified
    ACTING = "acting"  # the plan (destination, sidecar) is committed; being carried out
    DONE = "done"  # decided good, bad or review; sorted, sidecar written
    FAILED = "failed"  # could not be read or classified; sorted as failed, sidecar written
    VANISHED = "vanished"  # disappeared before it was sorted


OPEN_STATES = (State.SEEN, State.SETTLED, State.PROCESSING)  # no plan yet: started afresh after a restart
SORTED_STATES = (State.DONE, State.FAILED)  # has a decision and a sidecar
FINAL_STATES = (*SORTED_STATES, State.VANISHED)

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
CREATE TABLE IF NOT EXISTS sidecars (id INTEGER PRIMARY KEY, json TEXT NOT NULL);
"""
# The review page's tables. `scan_index` holds, per sorted file, the columns the page filters, sorts
# and plots by, filled by triggers from each sidecar copy as the daemon (or a correction) writes it:
# parsed once, inside the writer's own transaction, so listing 100,000 scans never parses JSON and
# no daemon code has to know the page exists. It outlives the sidecar copy (`drop_old_sidecars`).
# `reviews` records every correction by a person: the plan first (`moving`), then the result.
_INDEX_COLUMNS = """
    (SELECT state FROM files WHERE files.id = NEW.id),
    (SELECT state IN ('done', 'failed') FROM files WHERE files.id = NEW.id),
    coalesce(json_extract(NEW.json, '$.review.to'), json_extract(NEW.json, '$.decision')),
    json_extract(NEW.json, '$.decision'),
    CASE WHEN json_extract(NEW.json, '$.decision') = 'failed' THEN 'failed'
         WHEN json_extract(NEW.json, '$.duplicate_of') IS NOT NULL THEN 'duplicate'
         ELSE coalesce(json_extract(NEW.json, '$.rule.metric'), 'model') END,
    json_extract(NEW.json, '$.reasons[0]'),
    rtrim(rtrim(json_extract(NEW.json, '$.relative_path'),
                replace(json_extract(NEW.json, '$.relative_path'), '/', '')), '/'),
    json_extract(NEW.json, '$.processed_at'),
    json_extract(NEW.json, '$.probabilities.bad'),
    json_extract(NEW.json, '$.confidence'),
    coalesce(abs(json_extract(NEW.json, '$.probabilities.bad') - 0.5), 1.0),
    json_extract(NEW.json, '$.review') IS NOT NULL,
    json_extract(NEW.json, '$.quality.scar_fraction'),
    json_extract(NEW.json, '$.quality.tip_change_score'),
    json_extract(NEW.json, '$.quality.line_artefact_ratio'),
    json_extract(NEW.json, '$.quality.trace_retrace_mismatch'),
    json_object(
        'quality', json_extract(NEW.json, '$.quality'),
        'probabilities', json_extract(NEW.json, '$.probabilities'),
        'network_decision', json_extract(NEW.json, '$.network_decision'),
        'familiarity', json_extract(NEW.json, '$.familiarity'),
        'model_parts', json_extract(NEW.json, '$.model_parts'),
        'frames', json_extract(NEW.json, '$.frames'),
        'multiframe_rule', json_extract(NEW.json, '$.multiframe_rule'))
"""
# delete + insert, not INSERT OR REPLACE: inside a trigger fired by the journal's upsert, SQLite applies
# the outer statement's conflict handling, and a REPLACE there would fail on the existing row
_INDEX_INSERT = (
    "DELETE FROM scan_index WHERE id = NEW.id; INSERT INTO scan_index (id, state, listed, decision, original_decision, reason, reason_text, folder, "
    "processed_at, p_bad, confidence, uncertainty, reviewed, scar_fraction, tip_change_score, "
    f"line_artefact_ratio, trace_retrace_mismatch, judged) VALUES (NEW.id, {_INDEX_COLUMNS});"
)
_REVIEW_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS scan_index (
    id INTEGER PRIMARY KEY,
    state TEXT,
    listed INTEGER NOT NULL DEFAULT 0,
    decision TEXT,
    original_decision TEXT,
    reason TEXT,
    reason_text TEXT,
    folder TEXT,
    processed_at TEXT,
    p_bad REAL,
    confidence REAL,
    uncertainty REAL NOT NULL,
    reviewed INTEGER NOT NULL DEFAULT 0,
    scar_fraction REAL,
    tip_change_score REAL,
    line_artefact_ratio REAL,
    trace_retrace_mismatch REAL,
    judged TEXT
);
-- `listed` (sorted: done or failed) leads every index, so a page and its count are read from the index
-- alone, also deep into the list (OFFSET steps through index entries, never through the rows)
CREATE INDEX IF NOT EXISTS scan_index_newest ON scan_index(listed, id);
CREATE INDEX IF NOT EXISTS scan_index_uncertain ON scan_index(listed, uncertainty, id);
CREATE INDEX IF NOT EXISTS scan_index_decision ON scan_index(listed, decision, id);
CREATE INDEX IF NOT EXISTS scan_index_decision_uncertain ON scan_index(listed, decision, uncertainty, id);
CREATE INDEX IF NOT EXISTS scan_index_reason ON scan_index(listed, reason, id);
CREATE INDEX IF NOT EXISTS scan_index_folder ON scan_index(listed, folder, id);
CREATE INDEX IF NOT EXISTS scan_index_reviewed ON scan_index(listed, reviewed, uncertainty, id);
CREATE INDEX IF NOT EXISTS scan_index_processed ON scan_index(listed, processed_at, decision);
CREATE INDEX IF NOT EXISTS scan_index_counts ON scan_index(listed, decision, processed_at);
CREATE TRIGGER IF NOT EXISTS scan_index_on_sidecar_insert AFTER INSERT ON sidecars BEGIN {_INDEX_INSERT} END;
CREATE TRIGGER IF NOT EXISTS scan_index_on_sidecar_update AFTER UPDATE ON sidecars BEGIN {_INDEX_INSERT} END;
CREATE TRIGGER IF NOT EXISTS scan_index_on_state AFTER UPDATE OF state ON files BEGIN
    UPDATE scan_index SET state = NEW.state, listed = NEW.state IN ('done', 'failed') WHERE id = NEW.id;
END;
CREATE TABLE IF NOT EXISTS reviews (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    file_id INTEGER NOT NULL,
    who TEXT NOT NULL,
    at REAL NOT NULL,
    from_decision TEXT NOT NULL,
    to_decision TEXT NOT NULL,
    undone INTEGER NOT NULL DEFAULT 0,
    undoes INTEGER,
    state TEXT NOT NULL,
    plan TEXT NOT NULL,
    error TEXT
);
CREATE INDEX IF NOT EXISTS reviews_file ON reviews(file_id, id);
CREATE INDEX IF NOT EXISTS reviews_state ON reviews(state);
CREATE INDEX IF NOT EXISTS reviews_at ON reviews(at);
CREATE INDEX IF NOT EXISTS files_updated ON files(updated_at);
"""
# The sidecar copies live in their own table (files.sidecar is left from journals before that, and
# stays empty): deleting the old copies there frees whole pages, which new copies reuse. Emptied
# in place in `files`, the space would stay inside pages that new rows (higher ids) never use.
_MIGRATE = """
INSERT OR IGNORE INTO sidecars (id, json) SELECT id, sidecar FROM files WHERE sidecar IS NOT NULL;
UPDATE files SET sidecar = NULL WHERE sidecar IS NOT NULL;
"""
_ENTRY = (
    "SELECT files.id, path, state, size, mtime_ns, sha256, attempts, decision, final_path, sidecars.json AS sidecar, "
    "error, seen_at, updated_at FROM files LEFT JOIN sidecars ON sidecars.id = files.id"
)
_ENTRY_BEFORE_SIDECARS_TABLE = "SELECT * FROM files"  # a journal not yet opened by this version (read-only)


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
    assert base is not None, "a daemon config has a watch folder"
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
            self._db.executescript(_REVIEW_SCHEMA)
            self._db.executescript(f"BEGIN; {_MIGRATE} COMMIT;")
        self._db.row_factory = sqlite3.Row
        tables = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        self._select = _ENTRY if "sidecars" in tables else _ENTRY_BEFORE_SIDECARS_TABLE
        self._lock = threading.Lock()
        self.path = path
        self.unavailable: str | None = None  # why the last write failed (disk full ...); None once one succeeds

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """One write under the lock; a full or failing disk becomes JournalFull (rolled back, nothing
        changed), and `unavailable` says so until a write succeeds again."""
        with self._lock:
            try:
                yield
            except sqlite3.OperationalError as exc:
                if not any(part in str(exc).lower() for part in _UNAVAILABLE):
                    raise
                if self._db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self._db.execute("ROLLBACK")
                if self.unavailable is None:
                    log.error("journal_unavailable", journal=str(self.path), reason=str(exc), note="intake paused")
                self.unavailable = str(exc)
                raise JournalFull(str(exc)) from None
            if self.unavailable is not None:
                log.info("journal_available", journal=str(self.path), note="intake resumed")
                self.unavailable = None

    def _write(self, sql: str, params: tuple = ()) -> sqlite3.Cursor:
        with self._writing():
            return self._db.execute(sql, params)

    def _rows(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    # -- rows ---------------------------------------------------------------------------------
    def add(self, path: str, size: int | None, mtime_ns: int | None) -> int:
        now = time.time()
        cursor = self._write(
            "INSERT INTO files (path, state, size, mtime_ns, seen_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
            (path, State.SEEN, size, mtime_ns, now, now),
        )
        assert cursor.lastrowid is not None  # set by the INSERT
        return int(cursor.lastrowid)

    def update(self, entry_id: int, *, durable: bool = False, **fields: Any) -> None:
        """Set columns of one entry (`sidecar`: its copy), in one transaction; `durable` commits with a
        synced WAL (survives a power cut)."""
        has_sidecar = "sidecar" in fields
        sidecar = fields.pop("sidecar", None)
        fields = {name: clean(value) if isinstance(value, str) else value for name, value in fields.items()}
        fields["updated_at"] = time.time()
        columns = ", ".join(f"{name} = ?" for name in fields)
        with self._writing():
            if durable:
                self._db.execute("PRAGMA synchronous=FULL")
            try:
                self._db.execute("BEGIN")
                try:
                    self._db.execute(f"UPDATE files SET {columns} WHERE id = ?", (*fields.values(), entry_id))
                    if has_sidecar and sidecar is not None:
                        self._db.execute(
                            "INSERT INTO sidecars (id, json) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET json = excluded.json",
                            (entry_id, json.dumps(sidecar, sort_keys=True)),
                        )
                    elif has_sidecar:
                        self._db.execute("DELETE FROM sidecars WHERE id = ?", (entry_id,))
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
            finally:
                if durable:
                    self._db.execute("PRAGMA synchronous=NORMAL")

    def drop_old_sidecars(self, older_than: float) -> int:
        """Forget the sidecar copies of entries finished before `older_than` (epoch s); returns how many.
        The row stays (exactly-once and duplicate detection need its path, state and hash); the copy
        only serves a crash in the middle of sorting, and the sidecar file beside the scan is the record."""
        marks = ", ".join("?" for _ in FINAL_STATES)
        cursor = self._write(
            f"DELETE FROM sidecars WHERE id IN (SELECT id FROM files WHERE state IN ({marks}) AND updated_at < ?)",
            (*FINAL_STATES, older_than),
        )
        return cursor.rowcount

    def get(self, entry_id: int) -> Entry | None:
        rows = self._rows(f"{self._select} WHERE files.id = ?", (entry_id,))
        return _entry(rows[0]) if rows else None

    def latest(self, path: str) -> Entry | None:
        rows = self._rows(f"{self._select} WHERE path = ? ORDER BY files.id DESC LIMIT 1", (path,))
        return _entry(rows[0]) if rows else None

    def finished_with_hash(self, sha256: str, exclude_id: int) -> Entry | None:
        """The finished (done) entry with this content that was classified, other than `exclude_id`: the
        earliest that is not itself a duplicate (copies arriving together may finish in any order), else the
        earliest (its sidecar copy dropped from the journal, or every one a duplicate)."""
        entries = [
            _entry(row)
            for row in self._rows(
                f"{self._select} WHERE sha256 = ? AND state = ? AND files.id != ? ORDER BY files.id",
                (sha256, State.DONE, exclude_id),
            )
        ]
        classified = [e for e in entries if e.sidecar is not None and e.sidecar.get("duplicate_of") is None]
        chosen = classified or entries
        return chosen[0] if chosen else None

    def in_flight_with_hash(self, sha256: str, entry_id: int) -> Entry | None:
        """Another entry with this content that is being read or sorted (identical files that arrive
        together: the one that looks second waits for it, then is a duplicate like any later copy)."""
        rows = self._rows(
            f"{self._select} WHERE sha256 = ? AND state IN (?, ?) AND files.id != ? ORDER BY files.id LIMIT 1",
            (sha256, State.PROCESSING, State.ACTING, entry_id),
        )
        return _entry(rows[0]) if rows else None

    def in_states(self, states: tuple[State, ...]) -> Iterator[Entry]:
        marks = ", ".join("?" for _ in states)
        for row in self._rows(f"{self._select} WHERE state IN ({marks}) ORDER BY files.id", states):
            yield _entry(row)

    # -- health -------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        rows = self._rows("SELECT state, COUNT(*) AS n FROM files GROUP BY state")
        return {row["state"]: int(row["n"]) for row in rows}

    def decision_counts(self) -> dict[str, int]:
        rows = self._rows(
            "SELECT decision, COUNT(*) AS n FROM files WHERE state IN (?, ?) GROUP BY decision", SORTED_STATES
        )
        return {row["decision"] or "none": int(row["n"]) for row in rows}

    def finished_since(self, since: float) -> int:
        rows = self._rows(
            "SELECT COUNT(*) AS n FROM files WHERE state IN (?, ?) AND updated_at >= ?", (*SORTED_STATES, since)
        )
        return int(rows[0]["n"])

    def last_errors(self, limit: int = 5) -> list[Entry]:
        rows = self._rows(f"{self._select} WHERE error IS NOT NULL ORDER BY updated_at DESC LIMIT ?", (limit,))
        return [_entry(row) for row in rows]

    def set_service(self, values: dict[str, Any]) -> None:
        with self._writing():
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
