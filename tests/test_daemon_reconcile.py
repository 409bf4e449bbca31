"""Reconciliation after a crash, state by state: each interrupted plan is finished exactly once."""

from __future__ import annotations

import json
import os
from pathlib import Path

from daemon_support import scan_bytes_file, sha256

from afmwatch.config import config_from_dict
from afmwatch.daemon.journal import Journal
from afmwatch.daemon.reconcile import reconcile
from afmwatch.daemon.sidecar import preview_path, sidecar_bytes, sidecar_path


def _setup(tmp_path: Path, sort: str = "move"):
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    config = config_from_dict({"watch_folder": str(inbox), "output_root": str(out), "sort": sort})
    return config, Journal(tmp_path / "state"), inbox, out


def _plan(journal: Journal, original: Path, final: Path, sort: str = "move") -> tuple[int, dict]:
    """What the act stage commits before it moves anything (state `acting`)."""
    digest = sha256(original)
    entry = journal.add(str(original), original.stat().st_size, original.stat().st_mtime_ns)
    sidecar = {
        "original_path": str(original),
        "final_path": str(final),
        "sort": sort,
        "sha256": digest,
        "decision": final.parent.name,
        "errors": [],
    }
    journal.update(entry, state="acting", sha256=digest, final_path=str(final), sidecar=sidecar, durable=True)
    return entry, sidecar


def test_interrupted_moves_are_finished_exactly_as_planned(tmp_path):
    config, journal, inbox, out = _setup(tmp_path)
    (out / "good").mkdir(parents=True)
    # 1. killed between link and unlink: the scan is in both places (one inode)
    linked = scan_bytes_file(inbox / "linked.tif", 1)
    e1, s1 = _plan(journal, linked, out / "good" / "linked.tif")
    os.link(linked, out / "good" / "linked.tif")
    # 2. killed before the move
    waiting = scan_bytes_file(inbox / "waiting.tif", 2)
    e2, s2 = _plan(journal, waiting, out / "good" / "waiting.tif")
    digest2 = sha256(waiting)
    # 3. killed after the move, before the sidecar (a half-written sidecar temp file is left)
    moved = scan_bytes_file(inbox / "moved.tif", 3)
    e3, s3 = _plan(journal, moved, out / "good" / "moved.tif")
    os.replace(moved, out / "good" / "moved.tif")
    temp = out / "good" / ".moved.tif.afmwatch.json.ab12cd_9.part"
    temp.write_text("{")
    # 4. the original changed after the plan was made: not moved, processed again as a new arrival
    changed = scan_bytes_file(inbox / "changed.tif", 4)
    e4, s4 = _plan(journal, changed, out / "good" / "changed.tif")
    preview_path(out / "good" / "changed.tif").write_bytes(b"\x89PNG")
    scan_bytes_file(inbox / "changed.tif", 44)
    # 5. an entry still being read when the daemon died, whose file was then deleted
    gone = journal.add(str(inbox / "gone.tif"), 10, 10)
    journal.update(gone, state="processing")

    counts = reconcile(journal, config)

    assert counts == {"temp_files_removed": 1, "finished": 3, "vanished": 2, "waiting": 0, "corrections_finished": 0}
    for entry, sidecar in ((e1, s1), (e2, s2), (e3, s3)):
        final = Path(sidecar["final_path"])
        assert not Path(sidecar["original_path"]).exists() and sha256(final) == sidecar["sha256"]
        assert sidecar_path(final).read_bytes() == sidecar_bytes(sidecar)
        assert journal.get(entry).state == "done"
    assert digest2 == s2["sha256"] and not temp.exists()
    assert (inbox / "changed.tif").exists() and not (out / "good" / "changed.tif").exists()
    assert not preview_path(out / "good" / "changed.tif").exists()  # no orphan preview
    assert journal.get(e4).state == "vanished" and journal.get(gone).state == "vanished"
    assert reconcile(journal, config) == {
        "temp_files_removed": 0,
        "finished": 0,
        "vanished": 0,
        "waiting": 0,
        "corrections_finished": 0,
    }


def test_copy_mode_keeps_the_original_when_finishing(tmp_path):
    config, journal, inbox, out = _setup(tmp_path, sort="copy")
    (out / "bad").mkdir(parents=True)
    scan = scan_bytes_file(inbox / "kept.tif", 5)
    entry, sidecar = _plan(journal, scan, out / "bad" / "kept.tif", sort="copy")
    (out / "bad" / "kept.tif").write_bytes(scan.read_bytes())  # the copy was complete, no sidecar yet
    reconcile(journal, config)
    assert scan.exists() and sha256(out / "bad" / "kept.tif") == sidecar["sha256"]
    assert json.loads(sidecar_path(out / "bad" / "kept.tif").read_text()) == sidecar
    assert journal.get(entry).state == "done"
