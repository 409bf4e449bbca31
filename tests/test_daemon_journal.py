"""The journal over months: old sidecar copies are dropped, their space is reused, nothing else is lost."""

from __future__ import annotations

import os
import sqlite3
import time

from afmwatch.daemon.journal import Journal, journal_path

SIDECAR = {
    "decision": "good",
    "label": "good",
    "confidence": 0.97,
    "quality": {f"metric_{i}": i * 0.1 for i in range(40)},
    "timings_ms": {f"stage_{i}": 1.5 for i in range(10)},
    "reasons": ["x" * 200],
}  # about 2 KB, like a real one


def _sort(journal: Journal, n: int, start: int) -> None:
    """n scans through the daemon's states, each with its sidecar copy, as the service writes them."""
    for i in range(start, start + n):
        entry = journal.add(f"/srv/afm/export/session/scan_{i:06d}.nid", 2_000_000, 10**18 + i)
        journal.update(entry, state="processing", sha256=f"{i:064x}", size=2_000_000)
        journal.update(
            entry,
            durable=True,
            state="acting",
            final_path=f"/srv/afm/sorted/good/scan_{i:06d}.nid",
            sidecar=SIDECAR,
            decision="good",
        )
        journal.update(entry, state="done", sidecar=SIDECAR)


def _size(journal: Journal) -> int:
    journal._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return os.path.getsize(journal.path)


def test_old_sidecar_copies_are_dropped_but_not_the_scans(tmp_path):
    journal = Journal(tmp_path / "state")
    old = journal.add("/watch/old.tif", 10, 1)
    journal.update(old, state="done", sidecar={"decision": "good"}, sha256="aa", decision="good")
    moving = journal.add("/watch/moving.tif", 10, 1)
    journal.update(moving, state="acting", sidecar={"decision": "bad"}, decision="bad")
    cutoff = time.time()
    time.sleep(0.02)
    new = journal.add("/watch/new.tif", 10, 1)
    journal.update(new, state="done", sidecar={"decision": "bad"}, sha256="bb", decision="bad")
    assert journal.drop_old_sidecars(cutoff) == 1
    assert journal.get(old).sidecar is None and journal.get(old).state == "done"
    assert journal.get(moving).sidecar == {"decision": "bad"}  # a move in flight keeps its plan
    assert journal.get(new).sidecar == {"decision": "bad"}
    assert journal.finished_with_hash("aa", new).id == old  # duplicates of old scans are still known
    assert journal.latest("/watch/old.tif").id == old
    journal.close()


def test_a_journal_whose_copies_are_dropped_as_they_age_grows_by_the_row_not_the_copy(tmp_path):
    journal = Journal(tmp_path / "state")
    _sort(journal, 600, 0)
    kept = _size(journal) / 600
    before, n = _size(journal), 600
    for _ in range(12):  # steady state: new scans arrive, the oldest copies are dropped
        _sort(journal, 100, n)
        n += 100
        journal.drop_old_sidecars(time.time() + 1)
    grown = (_size(journal) - before) / 1200
    assert (
        kept > 2000 and grown < 0.25 * kept
    )  # measured: 2.4 KB a scan with these copies; 0.4 KB once they are dropped
    journal.close()


def test_a_journal_from_before_the_sidecars_table_keeps_its_copies(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    legacy = sqlite3.connect(journal_path(state))
    legacy.executescript("""
        CREATE TABLE files (id INTEGER PRIMARY KEY AUTOINCREMENT, path TEXT NOT NULL, state TEXT NOT NULL,
            size INTEGER, mtime_ns INTEGER, sha256 TEXT, attempts INTEGER NOT NULL DEFAULT 0, decision TEXT,
            final_path TEXT, sidecar TEXT, error TEXT, seen_at REAL NOT NULL, updated_at REAL NOT NULL);
        CREATE TABLE service (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO files (path, state, decision, final_path, sidecar, seen_at, updated_at)
            VALUES ('/w/a.tif', 'acting', 'bad', '/s/bad/a.tif', '{"decision": "bad", "sort": "move"}', 1, 1);
    """)
    legacy.commit()
    before = Journal(state, readonly=True)  # `afmwatch status` on a journal the service has not opened yet
    assert before.get(1).sidecar == {"decision": "bad", "sort": "move"}
    before.close()
    legacy.close()
    journal = Journal(state)
    assert journal.get(1).sidecar == {"decision": "bad", "sort": "move"}  # moved to the sidecars table
    assert journal._db.execute("SELECT sidecar FROM files WHERE id = 1").fetchone()[0] is None
    journal.close()


def test_states_and_decisions_are_stored_as_the_same_words(tmp_path):
    """`State` and `Decision` are names for the journal's and the sidecars' words, which stay as they were."""
    from afmwatch.daemon.journal import State
    from afmwatch.daemon.sidecar import sidecar_bytes
    from afmwatch.verdict import Decision

    assert list(State) == ["seen", "settled", "processing", "acting", "done", "failed", "vanished"]
    assert list(Decision) == ["good", "bad", "review", "failed"]
    journal = Journal(tmp_path)
    entry = journal.add("/w/a.tif", 1, 1)
    journal.update(entry, state=State.DONE, decision=Decision.REVIEW, sidecar={"decision": Decision.REVIEW})
    row = journal._db.execute("SELECT state, typeof(state), decision, typeof(decision) FROM files").fetchone()
    assert tuple(row) == ("done", "text", "review", "text")
    assert journal.decision_counts() == {"review": 1} and journal.counts() == {"done": 1}
    assert sidecar_bytes({"decision": Decision.BAD}) == sidecar_bytes({"decision": "bad"})
    journal.close()
