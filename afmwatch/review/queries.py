"""What the review page reads from the journal: scan lists, one scan, the session summary.

Lists and plots read `scan_index` (one row per sorted file, filled by the journal's triggers as each
sidecar copy is written), never the sidecar JSON: with 100,000 scans a page is one indexed query plus
one indexed count. One scan reads its sidecar file (the record beside the scan), else the journal's
copy. `index_missing` fills the index for scans sorted before the index existed.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from afmwatch.config import Config
from afmwatch.daemon.correct import UnsafePath, checked_path
from afmwatch.daemon.sidecar import preview_path, sidecar_path
from afmwatch.names import text_path
from afmwatch.quality import METRICS
from afmwatch.rules import DEFAULT_RULES, fires

LISTED_STATES = ("done", "failed")
DECISIONS = ("good", "bad", "review", "failed")
ORDERS = ("newest", "oldest", "uncertain")
MAX_LIMIT = 500
TREND_METRICS = ("scar_fraction", "tip_change_score", "line_artefact_ratio", "trace_retrace_mismatch")
TREND_SCANS = 300  # the trends plot the latest scans in arrival order


@dataclass(frozen=True)
class ScanFilter:
    """A grid or API query; every field is optional. `day_from`/`day_to` are YYYY-MM-DD (UTC),
    `reviewed` True/False/None (either)."""

    decision: str | None = None
    reason: str | None = None
    folder: str | None = None
    day_from: str | None = None
    day_to: str | None = None
    reviewed: bool | None = None

    def where(self) -> tuple[str, list[Any]]:
        clauses = ["scan_index.listed = 1"]
        params: list[Any] = []
        for column in ("decision", "reason", "folder"):
            value = getattr(self, column)
            if value is not None:
                clauses.append(f"scan_index.{column} = ?")
                params.append(value)
        if self.day_from:
            clauses.append("scan_index.processed_at >= ?")
            params.append(self.day_from)
        if self.day_to:
            clauses.append("scan_index.processed_at < ?")
            params.append((datetime.fromisoformat(self.day_to) + timedelta(days=1)).date().isoformat())
        if self.reviewed is not None:
            clauses.append("scan_index.reviewed = ?")
            params.append(int(self.reviewed))
        return " AND ".join(clauses), params


_ORDER_SQL = {
    "newest": "scan_index.id DESC",
    "oldest": "scan_index.id ASC",
    "uncertain": "scan_index.uncertainty ASC, scan_index.id DESC",  # P(bad) nearest 0.5 first: the scans a correction teaches most
}


def list_scans(
    db: sqlite3.Connection, scan_filter: ScanFilter, order: str = "newest", limit: int = 60, offset: int = 0
) -> dict[str, Any]:
    """{"total": how many match, "scans": one page of them} in the given order."""
    where, params = scan_filter.where()
    limit = max(1, min(int(limit), MAX_LIMIT))
    offset = max(0, int(offset))
    total = db.execute(f"SELECT COUNT(*) FROM scan_index WHERE {where}", params).fetchone()[0]
    # the page's ids from an index alone, then only their rows (OFFSET never reads a skipped row)
    rows = db.execute(
        "SELECT scan_index.*, files.final_path FROM "
        f"(SELECT scan_index.id FROM scan_index WHERE {where} ORDER BY {_ORDER_SQL[order]} LIMIT ? OFFSET ?) AS page "
        f"JOIN scan_index ON scan_index.id = page.id JOIN files ON files.id = page.id ORDER BY {_ORDER_SQL[order]}",
        (*params, limit, offset),
    ).fetchall()
    return {"total": int(total), "offset": offset, "limit": limit, "order": order, "scans": [_item(r) for r in rows]}


def _item(row: sqlite3.Row) -> dict[str, Any]:
    path = row["final_path"] or ""
    decision, p_bad = row["decision"], row["p_bad"]
    if decision in ("good", "bad"):
        label = decision
    else:
        label = None if p_bad is None else ("bad" if p_bad >= 0.5 else "good")
    return {
        "id": row["id"],
        "path": path,
        "name": Path(path).name,
        "folder": row["folder"],
        "decision": decision,
        "original_decision": row["original_decision"],
        "label": label,
        "confidence": row["confidence"],
        "p_bad": p_bad,
        "reason": row["reason"],
        "reasons": [row["reason_text"]] if row["reason_text"] else [],
        "reviewed": bool(row["reviewed"]),
        "processed_at": row["processed_at"],
        "preview_url": f"/files/{row['id']}/preview",
        "url": f"/scan/{row['id']}",
        "api_url": f"/api/scans/{row['id']}",
    }


def neighbours(
    db: sqlite3.Connection, scan_id: int, scan_filter: ScanFilter, order: str
) -> tuple[int | None, int | None]:
    """The ids before and after `scan_id` in the grid's order (for next / previous on one scan)."""
    where, params = scan_filter.where()
    row = db.execute("SELECT id, uncertainty FROM scan_index WHERE id = ?", (scan_id,)).fetchone()
    if row is None:
        return None, None
    if order == "uncertain":
        u = row["uncertainty"]
        after = "(uncertainty > ? OR (uncertainty = ? AND id < ?))", [u, u, scan_id], "uncertainty ASC, id DESC"
        before = "(uncertainty < ? OR (uncertainty = ? AND id > ?))", [u, u, scan_id], "uncertainty DESC, id ASC"
    elif order == "oldest":
        after = "id > ?", [scan_id], "id ASC"
        before = "id < ?", [scan_id], "id DESC"
    else:
        after = "id < ?", [scan_id], "id DESC"
        before = "id > ?", [scan_id], "id ASC"
    found = []
    for clause, extra, sort in (before, after):
        hit = db.execute(
            f"SELECT id FROM scan_index WHERE {where} AND {clause} ORDER BY {sort} LIMIT 1", (*params, *extra)
        ).fetchone()
        found.append(int(hit[0]) if hit else None)
    return found[0], found[1]


def facets(db: sqlite3.Connection) -> dict[str, list[str]]:
    """The values the grid's filters offer: reasons (deciding rule, `model`, `failed`...) and folders."""
    out = {}
    for column in ("reason", "folder"):
        rows = db.execute(f"SELECT DISTINCT {column} FROM scan_index WHERE {column} IS NOT NULL ORDER BY {column}")
        out[column] = [r[0] for r in rows.fetchall()][:500]
    return out


# -- one scan ---------------------------------------------------------------------------------------
def load_sidecar(row: sqlite3.Row, output_root: Path) -> dict[str, Any] | None:
    """The sidecar beside the scan (the record), else the journal's copy, else None."""
    if row["final_path"]:
        try:
            path = checked_path(sidecar_path(text_path(row["final_path"])), output_root)
        except UnsafePath:
            path = None
        if path is not None and path.is_file():
            with open(path, encoding="utf-8") as handle:
                return json.load(handle)
    return json.loads(row["sidecar"]) if row["sidecar"] else None


def thresholds(metrics: dict[str, Any], config: Config) -> list[dict[str, Any]]:
    """Every quality metric of the scan beside the rules that judge it (and whether each fired)."""
    rules = DEFAULT_RULES if config.rules is None else config.rules
    out = []
    for name, value in metrics.items():
        info = METRICS.get(name)
        on_metric = [
            {"op": r.op, "threshold": r.threshold, "decision": r.decision, "fired": fires(r, metrics)}
            for r in rules
            if r.metric == name
        ]
        out.append(
            {
                "metric": name,
                "value": value,
                "unit": info.units if info else "",
                "rules": on_metric,
                "about": info.description if info else "",
            }
        )
    out.sort(key=lambda m: (not m["rules"], m["metric"]))
    return out


def get_scan(db: sqlite3.Connection, scan_id: int, output_root: Path, config: Config) -> dict[str, Any] | None:
    """One scan for the page and `GET /api/scans/{id}`: the list item, the sidecar, metrics beside the
    rules, the corrections people made."""
    row = db.execute(
        "SELECT files.id, files.path, files.state, files.final_path, files.sha256, files.size, files.error, "
        "sidecars.json AS sidecar FROM files LEFT JOIN sidecars ON sidecars.id = files.id WHERE files.id = ?",
        (scan_id,),
    ).fetchone()
    indexed = db.execute(
        "SELECT scan_index.*, files.final_path FROM scan_index JOIN files ON files.id = scan_index.id "
        "WHERE scan_index.id = ?",
        (scan_id,),
    ).fetchone()
    if row is None or indexed is None or row["state"] not in LISTED_STATES:
        return None
    sidecar = load_sidecar(row, output_root) or {}
    reviews = [
        {
            "id": r["id"],
            "who": r["who"],
            "at": r["at"],
            "from": r["from_decision"],
            "to": r["to_decision"],
            "undone": bool(r["undone"]),
            "undoes": r["undoes"],
            "state": r["state"],
        }
        for r in db.execute("SELECT * FROM reviews WHERE file_id = ? ORDER BY id", (scan_id,)).fetchall()
    ]
    item = _item(indexed)
    final = text_path(row["final_path"] or "")
    item.update(
        {
            "reasons": sidecar.get("reasons", item["reasons"]),
            "probabilities": sidecar.get("probabilities"),
            "model_parts": sidecar.get("model_parts"),
            "network_decision": sidecar.get("network_decision"),
            "familiarity": sidecar.get("familiarity"),
            "rule": sidecar.get("rule"),
            "model": sidecar.get("model"),
            "review": sidecar.get("review"),
            "metrics": thresholds(sidecar.get("quality") or {}, config),
            "z_range_nm": (sidecar.get("quality") or {}).get("z_range"),
            "file": {
                "original_path": sidecar.get("original_path", row["path"]),
                "final_path": row["final_path"],  # as text (`names.path_text`): any bytes, valid JSON
                "relative_path": sidecar.get("relative_path"),
                "format": sidecar.get("format"),
                "channel": sidecar.get("channel"),
                "units": sidecar.get("units"),
                "shape": sidecar.get("shape"),
                "pixel_size_nm": sidecar.get("pixel_size_nm"),
                "size_bytes": sidecar.get("size_bytes", row["size"]),
                "sha256": sidecar.get("sha256", row["sha256"]),
                "seen_at": sidecar.get("seen_at"),
                "processed_at": sidecar.get("processed_at"),
                "errors": sidecar.get("errors", []),
            },
            "has_preview": preview_path(final).is_file(),
            "sidecar_url": f"/files/{scan_id}/sidecar",
            "original_url": f"/files/{scan_id}/original",
            "corrections": reviews,
        }
    )
    return item


# -- the session ------------------------------------------------------------------------------------
def _utc_iso(epoch: float) -> str:
    """The sidecars' `processed_at` form (UTC), without the fraction: compares as text."""
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def summary(db: sqlite3.Connection, now: float | None = None, hours: int = 24) -> dict[str, Any]:
    """Counts per decision today / last 7 days / all, scans and share bad per hour, trends per scan."""
    now = time.time() if now is None else now
    local_midnight = datetime.fromtimestamp(now).replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    states = "listed = 1"
    counts = {}
    for name, since in (("today", local_midnight), ("7 days", now - 7 * 86400), ("all", None)):
        clause, params = states, []
        if since is not None:
            clause += " AND processed_at >= ?"
            params.append(_utc_iso(since))
        grouped = db.execute(f"SELECT decision, COUNT(*) FROM scan_index WHERE {clause} GROUP BY decision", params)
        found = {r[0]: int(r[1]) for r in grouped.fetchall()}
        counts[name] = {d: found.get(d, 0) for d in DECISIONS} | {"total": sum(found.values())}
    start_hour = int(now // 3600 - hours + 1) * 3600
    rows = db.execute(
        "SELECT substr(processed_at, 1, 13) AS hour, COUNT(*) AS n, SUM(decision = 'bad') AS bad "
        f"FROM scan_index WHERE {states} AND processed_at >= ? "
        "GROUP BY hour",
        (_utc_iso(start_hour),),
    ).fetchall()
    by_hour = {r["hour"]: r for r in rows}
    per_hour = []
    for h in range(hours):
        epoch = start_hour + h * 3600
        key = _utc_iso(epoch)[:13]
        hit = by_hour.get(key)
        n = int(hit["n"]) if hit else 0
        bad = int(hit["bad"] or 0) if hit else 0
        per_hour.append(
            {
                "hour": datetime.fromtimestamp(epoch).strftime("%H:00"),
                "start": epoch,
                "scans": n,
                "bad": bad,
                "share_bad": (bad / n) if n else None,
            }
        )
    trend_rows = db.execute(
        f"SELECT id, decision, {', '.join(TREND_METRICS)} FROM scan_index WHERE {states} ORDER BY id DESC LIMIT ?",
        (TREND_SCANS,),
    ).fetchall()[::-1]
    trends = {
        "ids": [r["id"] for r in trend_rows],
        "decisions": [r["decision"] for r in trend_rows],
        **{m: [r[m] for r in trend_rows] for m in TREND_METRICS},
    }
    reviewed_today = db.execute("SELECT COUNT(*) FROM reviews WHERE state = 'done' AND at >= ?", (local_midnight,))
    reviewed_all = db.execute("SELECT COUNT(*) FROM scan_index WHERE listed = 1 AND reviewed = 1")
    return {
        "counts": counts,
        "per_hour": per_hour,
        "trends": trends,
        "corrections_today": int(reviewed_today.fetchone()[0]),
        "reviewed_scans": int(reviewed_all.fetchone()[0]),
        "generated_at": now,
    }


def failures(db: sqlite3.Connection, limit: int = 20, since: float = 0.0) -> list[dict[str, Any]]:
    """The latest files that failed or hit an error since `since` (epoch s), from the journal."""
    rows = db.execute(
        "SELECT id, path, state, error, updated_at FROM files WHERE (error IS NOT NULL OR state = 'failed') "
        "AND updated_at >= ? ORDER BY updated_at DESC LIMIT ?",
        (since, limit),
    ).fetchall()
    return [
        {"id": r["id"], "file": r["path"], "state": r["state"], "error": r["error"], "at": r["updated_at"]}
        for r in rows
    ]


# -- filling the index for scans sorted before it existed -------------------------------------------
def index_missing(db: sqlite3.Connection, output_root: Path) -> int:
    """Index every sorted file the index lacks (journals from before the review page); returns how many.
    A sidecar copy is rewritten in place (the trigger indexes it); without a copy, the sidecar file is
    read and copied into the journal."""
    missing = "SELECT files.id FROM files LEFT JOIN scan_index ON scan_index.id = files.id " + (
        f"WHERE scan_index.id IS NULL AND files.state IN ({', '.join('?' for _ in LISTED_STATES)})"
    )
    db.execute("BEGIN IMMEDIATE")
    try:
        touched = db.execute(f"UPDATE sidecars SET json = json WHERE id IN ({missing})", LISTED_STATES).rowcount
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    rows = db.execute(
        f"SELECT files.id, files.final_path, NULL AS sidecar FROM files WHERE files.id IN ({missing})", LISTED_STATES
    ).fetchall()
    for row in rows:
        sidecar = load_sidecar(row, output_root)
        if sidecar is None:
            continue
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT OR IGNORE INTO sidecars (id, json) VALUES (?, ?)", (row["id"], json.dumps(sidecar)))
        db.execute("COMMIT")
        touched += 1
    return touched
