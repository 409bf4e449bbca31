"""A person's correction: move a sorted scan, its sidecar and its preview to another decision folder, exactly once.

The same discipline as the daemon's own sorting (`afmwatch.daemon.act`): the plan (every source and
destination, and the complete new sidecar) is committed to the journal's `reviews` table as `moving`
*before* anything moves; the moves go through `durable.safe_move`; the journal then records the
result in one transaction (`reviews` row done, `files.decision` and `final_path`, the sidecar copy,
which updates the page's `scan_index` by trigger). After a kill -9 or a power cut at any instant,
`recover_corrections` (run by `afmwatch review` and by the daemon's start-up reconciliation) carries
the plan out again: every step is idempotent, so the scan ends in exactly one folder with one sidecar.

Moving is what makes a correction a label: `afmwatch train --data OUTPUT_ROOT` reads `good/` and `bad/`.
The sidecar keeps the daemon's `decision` and gains a `review` block (who, when, from, to, and the
earlier corrections in `history`). Every path touched lies inside the output folder, and no link is
followed. One process corrects at a time (`corrections.lock`), so two people pressing keys on the same
scan get one consistent result: the second is told what the first did (`CorrectionRefused`, 409).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import structlog

from afmwatch.daemon.act import free_destination
from afmwatch.daemon.journal import State, journal_path
from afmwatch.daemon.sidecar import iso_utc, preview_path, sidecar_bytes, sidecar_path
from afmwatch.durable import atomic_write_bytes, fsync_dir, safe_move, sha256_file
from afmwatch.errors import AfmwatchError
from afmwatch.names import path_text, text_path

log = structlog.get_logger("afmwatch.correct")

LABELS = ("good", "bad", "review")  # what a person may decide; `failed` is not a decision about the scan
LOCK_NAME = "corrections.lock"
Pause = Callable[[str], None]  # a test hook between steps: "planned", "moved", "written"


class CorrectionRefused(AfmwatchError):
    """A correction that cannot be made as asked; `status` is the HTTP status the page answers with."""

    def __init__(self, message: str, status: int = 409):
        super().__init__(message)
        self.status = status


class UnsafePath(CorrectionRefused):
    """A path from the journal that leaves the output folder or passes through a link."""

    def __init__(self, message: str):
        super().__init__(message, 403)


# -- paths ------------------------------------------------------------------------------------------
def checked_path(path: str | Path, output_root: Path) -> Path:
    """`path` (made absolute, `..` removed), if it lies inside `output_root` and neither it nor a folder
    between them is a link; else UnsafePath. The journal only holds paths the daemon made, but the
    output folder is shared with people and scripts."""
    candidate = Path(os.path.abspath(text_path(path) if isinstance(path, str) else path))
    root_real = Path(os.path.realpath(output_root))
    below = None
    for root in (Path(os.path.abspath(output_root)), root_real):
        if candidate.parent == root or root in candidate.parent.parents:
            below = candidate.parent.relative_to(root)
            break
    if below is None:
        raise UnsafePath(f"{candidate.name}: outside the output folder")
    if Path(os.path.realpath(candidate.parent)) != root_real / below:
        raise UnsafePath(f"{candidate.name}: a folder on its way is a link; afmwatch does not follow links")
    if candidate.is_symlink():
        raise UnsafePath(f"{candidate.name}: is a link; afmwatch does not follow links")
    return candidate


# -- the journal ------------------------------------------------------------------------------------
@contextlib.contextmanager
def connect(state_folder: Path) -> Iterator[sqlite3.Connection]:
    """A short-lived autocommit connection to the journal; writes use `BEGIN IMMEDIATE` and sync fully."""
    db = sqlite3.connect(journal_path(state_folder), timeout=30, isolation_level=None)
    try:
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA synchronous=FULL")
        yield db
    finally:
        db.close()


@contextlib.contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


@contextlib.contextmanager
def corrections_lock(state_folder: Path) -> Iterator[None]:
    """One correction (or recovery) at a time across processes; a killed holder releases it."""
    fd = os.open(Path(state_folder) / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _sidecar(row: sqlite3.Row, final: Path) -> dict[str, Any]:
    """The scan's sidecar: the file beside it (the record), else the journal's copy."""
    path = sidecar_path(final)
    if path.exists() and not path.is_symlink():
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    if row["sidecar"]:
        return json.loads(row["sidecar"])
    raise CorrectionRefused(f"{final.name}: its sidecar is missing", 409)


def _last_review(db: sqlite3.Connection, file_id: int) -> sqlite3.Row | None:
    return db.execute(
        "SELECT * FROM reviews WHERE file_id = ? AND state = 'done' AND undone = 0 AND undoes IS NULL "
        "ORDER BY id DESC LIMIT 1",
        (file_id,),
    ).fetchone()


def _describe(review: sqlite3.Row) -> str:
    return (
        f"{review['who']} moved it from {review['from_decision']} to {review['to_decision']} at {iso_utc(review['at'])}"
    )


# -- planning ---------------------------------------------------------------------------------------
def _plan(
    db: sqlite3.Connection,
    output_root: Path,
    file_id: int,
    to: str | None,
    who: str,
    expected_from: str | None,
    undo: bool,
) -> dict[str, Any]:
    """Check the request against the journal and return the plan."""
    row = db.execute(
        "SELECT files.*, sidecars.json AS sidecar FROM files LEFT JOIN sidecars ON sidecars.id = files.id "
        "WHERE files.id = ?",
        (file_id,),
    ).fetchone()
    if row is None:
        raise CorrectionRefused(f"no scan with id {file_id}", 404)
    moving = db.execute("SELECT * FROM reviews WHERE file_id = ? AND state = 'moving'", (file_id,)).fetchone()
    if moving is not None:
        raise CorrectionRefused(f"scan {file_id} is being corrected right now by {moving['who']}; try again")
    if row["state"] != State.DONE or row["decision"] not in LABELS:
        raise CorrectionRefused(
            f"scan {file_id} is {row['state']} ({row['decision']}): only sorted scans are corrected"
        )
    current = row["decision"]
    if expected_from is not None and expected_from != current:
        last = _last_review(db, file_id)
        by = f": {_describe(last)}" if last is not None else ""
        raise CorrectionRefused(f"scan {file_id} is no longer {expected_from}, it is {current}{by}")
    final = checked_path(row["final_path"], output_root)
    sidecar = _sidecar(row, final)
    if sidecar.get("sort") == "none":
        raise CorrectionRefused("the daemon does not sort (sort: none): there is no folder to move the scan to")
    undoes = None
    if undo:
        last = _last_review(db, file_id)
        if last is None or last["to_decision"] != current:
            raise CorrectionRefused(f"scan {file_id}: no correction to undo")
        undoes, to = int(last["id"]), last["from_decision"]
    if to not in LABELS:
        raise CorrectionRefused(f"decision must be one of {', '.join(LABELS)}, got {to!r}", 422)
    try:
        below = final.relative_to(Path(os.path.abspath(output_root)) / current)
    except ValueError:
        raise UnsafePath(f"{final.name}: not in the {current}/ folder of the output folder") from None
    now = time.time()
    # the same decision again: a person checked the scan and agrees (recorded, nothing moves)
    target = final if to == current else free_destination(Path(os.path.abspath(output_root)) / to / below)
    checked_path(target, output_root)
    review = sidecar.get("review")
    if undoes is not None:
        history = list((review or {}).get("history", []))
        restored = dict(history[-1], history=history[:-1]) if history else None
    else:
        earlier = list((review or {}).get("history", [])) + (
            [{k: v for k, v in review.items() if k != "history"}] if review else []
        )
        restored = {"who": who, "when": iso_utc(now), "from": current, "to": to, "history": earlier}
    new_sidecar = {k: v for k, v in sidecar.items() if k != "review"}
    new_sidecar["final_path"] = path_text(target)
    if "sidecar_path" in new_sidecar:
        new_sidecar["sidecar_path"] = path_text(sidecar_path(target))
    moves = [[path_text(final), path_text(target)]] if target != final else []
    old_preview = preview_path(final)
    if moves and old_preview.exists() and not old_preview.is_symlink():
        moves.append([path_text(old_preview), path_text(preview_path(target))])
        new_sidecar["preview"] = path_text(preview_path(target))
    if restored is not None:
        new_sidecar["review"] = restored
    return {
        "file_id": file_id,
        "from": current,
        "to": to,
        "who": who,
        "at": now,
        "sha256": row["sha256"],
        "final": path_text(target),
        "moves": moves,
        "old_sidecar": path_text(sidecar_path(final)),
        "sidecar": new_sidecar,
        "undoes": undoes,
    }


# -- carrying out (shared with recovery) ------------------------------------------------------------
def _matches(src: Path, dst: Path, sha256: str | None) -> bool:
    try:
        if os.path.samefile(src, dst):
            return True
        return sha256 is not None and sha256_file(dst) == sha256
    except OSError:
        return False


def carry_out(plan: dict[str, Any], output_root: Path, pause: Pause | None = None) -> None:
    """Make the folders match `plan`: scan and preview at their destinations, the new sidecar beside the
    scan, the old one gone. Safe to repeat after an interruption at any point."""
    for i, (src_name, dst_name) in enumerate(plan["moves"]):
        src, dst = checked_path(src_name, output_root), checked_path(dst_name, output_root)
        is_scan = i == 0
        if os.path.lexists(dst):
            if os.path.lexists(src):  # interrupted between link and unlink, or someone else's file
                if not _matches(src, dst, plan["sha256"] if is_scan else None):
                    raise CorrectionRefused(f"{dst} holds another file than planned; nothing more was moved")
                os.unlink(src)
                fsync_dir(src.parent)
        elif os.path.lexists(src):
            placed = safe_move(src, dst)
            if placed != dst:  # a file took the planned name between planning and moving: put it back
                safe_move(placed, src)
                raise CorrectionRefused(f"{dst.name} appeared in {dst.parent} meanwhile; try again")
        elif is_scan:
            raise CorrectionRefused(f"{src.name} vanished from {src.parent} before it could be moved")
    if pause is not None:
        pause("moved")
    new_sidecar = checked_path(sidecar_path(text_path(plan["final"])), output_root)
    atomic_write_bytes(new_sidecar, sidecar_bytes(plan["sidecar"]))
    if pause is not None:
        pause("written")
    old_sidecar = checked_path(plan["old_sidecar"], output_root)
    if old_sidecar != new_sidecar and os.path.lexists(old_sidecar):
        os.unlink(old_sidecar)
        fsync_dir(old_sidecar.parent)


def _record(db: sqlite3.Connection, review_id: int, plan: dict[str, Any]) -> None:
    """The result, in one transaction: review done (and the one it undoes marked), the file's new place."""
    with _transaction(db):
        db.execute("UPDATE reviews SET state = 'done' WHERE id = ?", (review_id,))
        if plan["undoes"] is not None:
            db.execute("UPDATE reviews SET undone = 1 WHERE id = ?", (plan["undoes"],))
        db.execute(
            "UPDATE files SET decision = ?, final_path = ?, updated_at = ? WHERE id = ?",
            (plan["to"], plan["final"], time.time(), plan["file_id"]),
        )
        db.execute(
            "INSERT INTO sidecars (id, json) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET json = excluded.json",
            (plan["file_id"], json.dumps(plan["sidecar"], sort_keys=True)),
        )


def _fail(db: sqlite3.Connection, review_id: int, error: str) -> None:
    with _transaction(db):
        db.execute("UPDATE reviews SET state = 'failed', error = ? WHERE id = ?", (error, review_id))


def correct(
    state_folder: Path,
    output_root: Path,
    file_id: int,
    to: str | None,
    who: str,
    *,
    expected_from: str | None = None,
    undo: bool = False,
    pause: Pause | None = None,
) -> dict[str, Any]:
    """Move scan `file_id` to decision `to` (or undo its last correction) for `who`; returns
    {"changed", "from", "to", "review_id"}. The decision it already has is recorded as a check (nothing
    moves, `changed` false). Raises CorrectionRefused with a message for the person."""
    who = (who or "unknown").strip()[:100] or "unknown"
    with corrections_lock(state_folder), connect(state_folder) as db:
        with _transaction(db):
            plan = _plan(db, output_root, file_id, to, who, expected_from, undo)
            cursor = db.execute(
                "INSERT INTO reviews (file_id, who, at, from_decision, to_decision, undoes, state, plan) "
                "VALUES (?, ?, ?, ?, ?, ?, 'moving', ?)",
                (file_id, who, plan["at"], plan["from"], plan["to"], plan["undoes"], json.dumps(plan)),
            )
            review_id = int(cursor.lastrowid or 0)
        if pause is not None:
            pause("planned")
        try:
            carry_out(plan, output_root, pause)
        except CorrectionRefused as exc:
            _fail(db, review_id, str(exc))
            raise
        _record(db, review_id, plan)
    log.info("scan_corrected", file_id=file_id, who=who, source=plan["from"], to=plan["to"], undo=undo)
    return {"changed": bool(plan["moves"]), "from": plan["from"], "to": plan["to"], "review_id": review_id}


def recover_corrections(state_folder: Path, output_root: Path) -> dict[str, int]:
    """Finish every correction a crash interrupted (`moving`), exactly as planned; returns counts."""
    counts = {"finished": 0, "failed": 0}
    if not journal_path(state_folder).exists():
        return counts
    with corrections_lock(state_folder), connect(state_folder) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "reviews" not in tables:
            return counts
        for row in db.execute("SELECT id, plan FROM reviews WHERE state = 'moving' ORDER BY id").fetchall():
            plan = json.loads(row["plan"])
            try:
                carry_out(plan, output_root)
            except CorrectionRefused as exc:
                _fail(db, row["id"], str(exc))
                counts["failed"] += 1
                log.warning("correction_abandoned", file_id=plan["file_id"], reason=str(exc))
                continue
            _record(db, row["id"], plan)
            counts["finished"] += 1
            log.info("correction_finished", file_id=plan["file_id"], to=plan["to"])
    return counts
