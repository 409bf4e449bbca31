"""The review page with 100,000 scans in the journal: how long its list pages and API answers take.

Fills a journal with N sorted scans the way the daemon records them (a `files` row and a sidecar copy
each; the journal's triggers fill `scan_index`), then asks the app for each page several times in
process (Starlette's test client: the whole HTTP stack without the network) and reports the median
and the slowest answer. The issue's target: list pages well under a second.

    python -m benchmarks.review_pages [--quick] [--scans 100000] [--repeat 5]
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from benchmarks.common import fmt, parser, report, table, work_folder

REASONS = ("model", "scar_fraction", "tip_change_score", "line_artefact_ratio", "trace_retrace_mismatch")
PAGES = (
    ("grid page (HTML), newest first", "/grid"),
    ("grid page (HTML), least certain first, not yet checked", "/grid?order=uncertain&reviewed=no"),
    ("API list, newest, first page", "/api/scans?limit=60"),
    ("API list, newest, offset 50,000", "/api/scans?limit=60&offset=50000"),
    ("API list, newest, offset 99,900", "/api/scans?limit=60&offset=99900"),
    ("API list, least certain first", "/api/scans?order=uncertain&limit=60"),
    ("API list, least certain, offset 50,000", "/api/scans?order=uncertain&limit=60&offset=50000"),
    ("API list, bad only", "/api/scans?decision=bad&limit=60"),
    ("API list, bad, least certain first", "/api/scans?decision=bad&order=uncertain&limit=60"),
    ("API list, decided by the scar rule", "/api/scans?reason=scar_fraction&limit=60"),
    ("API list, one subfolder", "/api/scans?folder=sample-07&limit=60"),
    ("API list, one day", "/api/scans?from={day}&to={day}&limit=60"),
    ("API one scan", "/api/scans/{middle}"),
    ("one scan page (HTML)", "/scan/{middle}"),
    ("API summary (counts, per hour, trends)", "/api/summary"),
    ("overview page (HTML)", "/"),
)


def fill(site: Path, n: int, seed: int = 1) -> Path:
    """A config and a journal with `n` sorted scans (no scan files: the pages read the journal)."""
    from afmwatch.daemon.journal import Journal
    from afmwatch.daemon.sidecar import iso_utc
    from afmwatch.quality import METRICS

    out, state = site / "out", site / "state"
    (site / "inbox").mkdir(parents=True)
    config = site / "config.yaml"
    config.write_text(
        yaml.safe_dump({"watch_folder": str(site / "inbox"), "output_root": str(out), "state_folder": str(state)})
    )
    Journal(state).close()
    rng = np.random.default_rng(seed)
    start = time.time() - n * 6.0  # one scan every 6 s, ending now
    journal = Journal(state)
    db = journal._db  # one transaction for the whole fill (the daemon commits one per file)
    db.execute("BEGIN")
    for i in range(n):
        p_bad = float(rng.uniform(0, 1))
        decision = "bad" if p_bad > 0.7 else "good" if p_bad < 0.3 else "review"
        reason = REASONS[int(rng.integers(0, len(REASONS)))] if decision != "good" else "model"
        sub = f"sample-{int(rng.integers(0, 40)):02d}"
        name = f"scan{i:06d}.nid"
        final = out / decision / sub / name
        at = start + i * 6.0
        quality: dict[str, Any] = dict.fromkeys(METRICS)  # every metric, as `quality.measure` returns them
        quality.update(completeness=1.0, lines_set=256, lines_acquired=256, lines_missing=0)
        quality.update(
            zip(
                ("scar_fraction", "tip_change_score", "line_artefact_ratio", "trace_retrace_mismatch", "z_range"),
                (float(v) for v in rng.uniform(0, 1, size=5) * (0.3, 20, 8, 2, 50)),
            )
        )
        sidecar = {
            "schema_version": 2,
            "original_path": str(site / "inbox" / sub / name),
            "final_path": str(final),
            "relative_path": f"{sub}/{name}",
            "sort": "move",
            "sha256": f"{i:064x}",
            "size_bytes": 1_000_000,
            "format": "nid",
            "channel": "Z-Axis",
            "units": "nm",
            "shape": [256, 256],
            "pixel_size_nm": 9.8,
            "decision": decision,
            "label": "bad" if p_bad >= 0.5 else "good",
            "confidence": max(p_bad, 1 - p_bad),
            "probabilities": {"good": 1 - p_bad, "bad": p_bad},
            "network_decision": decision,
            "rule": None
            if reason == "model"
            else {"metric": reason, "op": ">", "threshold": 1.0, "decision": decision},
            "reasons": [f"{reason}: {decision}, P(bad) {p_bad:.2f}"],
            "quality": quality,
            "duplicate_of": None,
            "preview": str(final) + ".afmwatch.png",
            "errors": [],
            "processed_at": iso_utc(at),
            "seen_at": iso_utc(at - 3),
        }
        cursor = db.execute(
            "INSERT INTO files (path, state, size, mtime_ns, sha256, attempts, decision, final_path, seen_at, updated_at) "
            "VALUES (?, 'done', 1000000, 0, ?, 1, ?, ?, ?, ?)",
            (sidecar["original_path"], sidecar["sha256"], decision, str(final), at - 3, at),
        )
        db.execute("INSERT INTO sidecars (id, json) VALUES (?, ?)", (cursor.lastrowid, json.dumps(sidecar)))
    db.execute("COMMIT")
    journal.close()
    return config


def time_pages(config: Path, n: int, repeat: int) -> list[dict[str, Any]]:
    from starlette.testclient import TestClient

    from afmwatch.review.app import create_app
    from afmwatch.review.context import ReviewContext
    from afmwatch.review.security import Guard

    ctx = ReviewContext.open(config, token="x" * 32)
    client = TestClient(
        create_app(ctx, Guard.for_server(ctx.token, "127.0.0.1", 8787)), base_url="http://127.0.0.1:8787"
    )
    day = time.strftime("%Y-%m-%d", time.gmtime(time.time() - n * 3.0))
    rows = []
    for label, url in PAGES:
        url = url.format(day=day, middle=n // 2)
        seconds = []
        for _ in range(repeat):
            started = time.perf_counter()
            response = client.get(url)
            seconds.append(time.perf_counter() - started)
            assert response.status_code == 200, (url, response.status_code, response.text[:200])
        total = response.json().get("total") if url.startswith("/api/scans?") else None
        rows.append(
            {
                "page": label,
                "url": url,
                "median_ms": 1000 * statistics.median(seconds),
                "max_ms": 1000 * max(seconds),
                "total": total,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--scans", type=int, default=100_000, help="sorted scans in the journal (default 100,000)")
    p.add_argument("--repeat", type=int, default=5, help="requests per page (default 5)")
    args = p.parse_args(argv)
    n = 2_000 if args.quick else args.scans
    from afmwatch.log import configure_logging

    configure_logging("warning")
    with work_folder(args, "review-pages") as work:
        started = time.perf_counter()
        config = fill(work / "site", n)
        fill_s = time.perf_counter() - started
        size_mb = (work / "site" / "state" / "journal.sqlite3").stat().st_size / 1e6
        from afmwatch.review.context import ReviewContext
        from afmwatch.review.whatif import rules_in_force, what_if

        rows = time_pages(config, n, args.repeat)
        ctx = ReviewContext.open(config, token="x" * 32)
        with ctx.connect() as db:
            started = time.perf_counter()
            what_if(db, ctx.config, rules_in_force(ctx.config))
            whatif_s = time.perf_counter() - started
    body = (
        f"{n:,} sorted scans in the journal (filled in {fill_s:.0f} s, one transaction; journal {size_mb:.0f} MB). "
        f"Each page requested {args.repeat} times in process through the whole app (security middleware, SQLite, "
        "templates), without the network. Lists read `scan_index` (indexed columns, LIMIT/OFFSET on an index); "
        "a count of what matches comes with every list.\n\n"
        + table(
            ["page", "median ms", "slowest ms", "matching"],
            [
                [r["page"], fmt(r["median_ms"]), fmt(r["max_ms"]), f"{r['total']:,}" if r["total"] is not None else ""]
                for r in rows
            ],
        )
        + f"\n\nRules what-if over all {n:,} scans (`verdict.decide` twice per scan, not a list page): {whatif_s:.1f} s."
    )
    return report(
        args,
        "review",
        "python -m benchmarks.review_pages",
        "Review page: 100,000 scans",
        body,
        {"scans": n, "pages": rows, "whatif_s": whatif_s, "fill_s": fill_s},
    )


if __name__ == "__main__":
    sys.exit(main())
