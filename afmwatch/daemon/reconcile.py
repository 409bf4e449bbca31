"""Start-up reconciliation: bring the journal and the folders back into agreement after a crash.

Runs before the watcher starts. A file whose plan was committed (`acting`) is finished exactly as
planned, after checking by hash that what is on disk is what was planned; temp files of interrupted
atomic writes are removed; open entries whose file has gone are recorded as vanished. Files that
were still being read simply stay in the watch folder and are found again by the folder scan. A plan
that cannot be carried out now (output folder full or read-only, no permission) stays `acting` and is
tried again while the service runs (`afmwatch.daemon.retry`), never a failure at every start.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import structlog

from afmwatch.config import Config
from afmwatch.daemon.act import ActError, carry_out, final_state
from afmwatch.daemon.correct import recover_corrections
from afmwatch.daemon.journal import OPEN_STATES, Journal, State
from afmwatch.daemon.sidecar import preview_path
from afmwatch.names import text_path

log = structlog.get_logger("afmwatch.reconcile")

# `.NAME.XXXXXXXX.part`: what durable.atomic_write and safe_move leave behind when killed mid-write
TEMP_FILE = re.compile(r"^\..+\.[a-z0-9_]{8}\.part$")
SIDECAR_TEMP_FILE = re.compile(r"^\..+\.afmwatch\.(json|png)\.[a-z0-9_]{8}\.part$")


def remove_temp_files(folder: Path, pattern: re.Pattern = TEMP_FILE) -> int:
    removed = 0
    if not folder.is_dir():
        return 0
    for root, _, files in os.walk(folder):
        for name in files:
            if pattern.match(name):
                Path(root, name).unlink(missing_ok=True)
                removed += 1
    return removed


def reconcile(journal: Journal, config: Config) -> dict[str, int]:
    """Finish or undo what a crash interrupted; returns counts of what was done."""
    counts = {"temp_files_removed": 0, "finished": 0, "vanished": 0, "waiting": 0, "corrections_finished": 0}
    if config.output_root is not None:
        counts["temp_files_removed"] += remove_temp_files(config.output_root)
    if config.sort == "none" and config.watch_folder is not None:  # sidecars live beside the originals
        counts["temp_files_removed"] += remove_temp_files(config.watch_folder, SIDECAR_TEMP_FILE)
    for entry in list(journal.in_states((State.ACTING,))):
        sidecar = entry.sidecar or {}
        try:
            written = carry_out(sidecar, verify=True)
        except ActError as exc:
            final = text_path(sidecar.get("final_path", ""))
            if sidecar.get("sort") != "none" and not final.exists():
                preview_path(final).unlink(missing_ok=True)  # a preview for a scan that never arrived there
            journal.update(entry.id, state=State.VANISHED, error=f"{exc}; processed again if it is still there")
            counts["vanished"] += 1
            log.warning("reconcile_replanned", file=entry.path, reason=str(exc))
            continue
        except Exception as exc:  # full, read-only, no permission (or a bug): never a failure at every start
            counts["waiting"] += 1
            log.warning("reconcile_waiting", file=entry.path, error=str(exc), note="tried again while the service runs")
            continue
        journal.update(
            entry.id, state=final_state(written["decision"]), final_path=written["final_path"], sidecar=written
        )
        counts["finished"] += 1
        log.info("reconcile_finished", file=entry.path, decision=written["decision"], to=written["final_path"])
    if config.output_root is not None:  # a person's correction that a crash interrupted (the review page)
        corrected = recover_corrections(journal.path.parent, config.output_root)
        counts["corrections_finished"] = corrected["finished"]
    for entry in list(journal.in_states(OPEN_STATES)):
        if not os.path.lexists(text_path(entry.path)):
            journal.update(entry.id, state=State.VANISHED, error="the file disappeared before it was processed")
            counts["vanished"] += 1
    if any(counts.values()):
        log.info("reconciled", **counts)
    return counts
