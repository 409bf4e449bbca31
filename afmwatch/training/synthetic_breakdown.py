"""Where a model fails on a synthetic set: its decisions per fault, per surface, and on the faults by how far
they show above the noise.

Read from the set's `manifest.json` (`afmwatch synth classify` writes it), so any synthetic folder that
`afmwatch evaluate` judges reports it; a folder of real scans has no such manifest and gets none. A bad
scan counts under the artefact that ruined it (its most severe), a good one under its surface kind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from afmwatch.synth.scans import BAD_SEVERITY
from afmwatch.synth.sets import read_manifest
from afmwatch.synth.visibility import SURFACE_DEPENDENT_STAGES, VISIBLE_NOISE_MULTIPLE

DECISIONS = ("good", "review", "bad")
# how a bad scan's faults show: one adds heights of its own (scars, clipping, line noise, ...), or all
# depend on the surface under them and show at VISIBLE_NOISE_MULTIPLE noise RMS or more, or all stay below
PLAIN, SEEN, FAINT = "adds heights of its own", "surface-dependent, seen", "surface-dependent, faint"


def synthetic_entries(folder: Path) -> dict[str, dict[str, Any]] | None:
    """A classification set's manifest entries by resolved trace path, or None where `folder` holds no
    afmwatch classification set's manifest (or an unreadable one)."""
    manifest = read_manifest(folder)
    entries = manifest.get("files") if manifest else None
    if manifest is None or manifest.get("kind") != "classify" or not isinstance(entries, list):
        return None
    return {
        str((folder / entry["tiff"]).resolve()): entry
        for entry in entries
        if isinstance(entry, dict) and isinstance(entry.get("tiff"), str)
    }


def fault_visibility(entry: dict[str, Any]) -> str | None:
    """PLAIN, SEEN or FAINT for a bad scan's rejectable faults; None for a good scan or a manifest
    written before visibility was recorded."""
    faults = [a for a in entry.get("artefacts", []) if a.get("severity", 0.0) >= BAD_SEVERITY[0]]
    if entry.get("label") != "bad" or not faults:
        return None
    if any(a.get("stage") not in SURFACE_DEPENDENT_STAGES for a in faults):
        return PLAIN
    shown = [a.get("visibility") for a in faults]
    if any(value is None for value in shown):
        return None
    return SEEN if max(shown) >= VISIBLE_NOISE_MULTIPLE else FAINT


def _group(entry: dict[str, Any]) -> str:
    if entry.get("label") == "bad" and entry.get("artefacts"):
        return max(entry["artefacts"], key=lambda a: a.get("severity", 0.0))["name"]
    return entry.get("surface", {}).get("kind", "unknown")


def _count(rows: list[dict[str, Any]]) -> dict[str, int]:
    counts = {d: sum(1 for r in rows if r["decision"] == d) for d in DECISIONS}
    counts["n"] = len(rows)
    counts["labelled_wrong"] = sum(1 for r in rows if r["label"] != r["true"])
    return counts


def synthetic_breakdown(rows: list[dict[str, Any]], folder: str | Path) -> dict[str, Any] | None:
    """Decisions (`evaluate_folder`'s file rows) counted per fault of the bad scans, per surface of the
    good ones, and per `fault_visibility`; None where `folder` is not a synthetic set."""
    entries = synthetic_entries(Path(folder))
    if entries is None:
        return None
    matched = [(row, entries[key]) for row in rows if (key := str(Path(row["path"]).resolve())) in entries]
    groups: dict[str, dict[str, list[dict[str, Any]]]] = {"bad": {}, "good": {}, "visibility": {}}
    for row, entry in matched:
        truth = "bad" if entry.get("label") == "bad" else "good"
        groups[truth].setdefault(_group(entry), []).append(row)
        shown = fault_visibility(entry)
        if shown is not None:
            groups["visibility"].setdefault(shown, []).append(row)
    return {
        "files_in_manifest": len(matched),
        "bad_by_fault": {name: _count(rs) for name, rs in sorted(groups["bad"].items())},
        "good_by_surface": {name: _count(rs) for name, rs in sorted(groups["good"].items())},
        "bad_by_visibility": {
            name: _count(groups["visibility"][name]) for name in (PLAIN, SEEN, FAINT) if name in groups["visibility"]
        },
        "visible_at_noise_rms": VISIBLE_NOISE_MULTIPLE,
    }
