"""`afmwatch evaluate` on a synthetic set: decisions per fault, per surface and by how faults show."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from afmwatch.cli import main
from afmwatch.training.synthetic_breakdown import FAINT, PLAIN, SEEN, fault_visibility, synthetic_breakdown


def _entry(name: str, label: str, kind: str, artefacts: list[dict]) -> dict:
    return {
        "name": name,
        "label": label,
        "tiff": f"{label}/{name}.tif",
        "surface": {"kind": kind},
        "artefacts": artefacts,
    }


def _row(folder: Path, entry: dict, decision: str, label: str) -> dict:
    return {"path": str(folder / entry["tiff"]), "true": entry["label"], "decision": decision, "label": label}


def _tip(visibility: float | None, severity: float = 0.7) -> dict:
    record = {"name": "tip_change", "severity": severity, "stage": "tip"}
    return record if visibility is None else {**record, "visibility": visibility}


def test_decisions_are_counted_per_fault_surface_and_visibility(tmp_path):
    entries = [
        _entry("a", "bad", "fibres", [_tip(1.2)]),  # faint: under 3 noise RMS
        _entry("b", "bad", "grains", [_tip(40.0)]),  # seen
        _entry("c", "bad", "grid", [_tip(0.5), {"name": "scars", "severity": 0.9, "stage": "scan"}]),  # plain
        _entry("d", "good", "fibres", [_tip(None, severity=0.05)]),
        _entry("e", "good", "grains", []),
    ]
    manifest = {"generator": "afmwatch.synth", "kind": "classify", "files": entries}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    rows = [
        _row(tmp_path, entries[0], "good", "good"),
        _row(tmp_path, entries[1], "review", "bad"),
        _row(tmp_path, entries[2], "bad", "bad"),
        _row(tmp_path, entries[3], "review", "bad"),
        _row(tmp_path, entries[4], "good", "good"),
        {"path": str(tmp_path / "good" / "not-in-manifest.tif"), "true": "good", "decision": "good", "label": "good"},
    ]
    report = synthetic_breakdown(rows, tmp_path)
    assert report is not None and report["files_in_manifest"] == 5
    assert report["bad_by_fault"]["tip_change"] == {"good": 1, "review": 1, "bad": 0, "n": 2, "labelled_wrong": 1}
    assert report["bad_by_fault"]["scars"]["n"] == 1  # the most severe fault names the scan
    assert report["good_by_surface"]["fibres"] == {"good": 0, "review": 1, "bad": 0, "n": 1, "labelled_wrong": 1}
    assert {name: c["n"] for name, c in report["bad_by_visibility"].items()} == {PLAIN: 1, SEEN: 1, FAINT: 1}
    assert report["bad_by_visibility"][FAINT]["labelled_wrong"] == 1


def test_visibility_is_unknown_for_good_scans_and_manifests_written_before_it():
    assert fault_visibility(_entry("g", "good", "fibres", [_tip(None, severity=0.05)])) is None
    assert fault_visibility(_entry("old", "bad", "fibres", [_tip(None)])) is None
    assert fault_visibility(_entry("s", "bad", "fibres", [_tip(3.0)])) == SEEN


def test_folders_without_a_synthetic_manifest_get_no_breakdown(tmp_path):
    assert synthetic_breakdown([], tmp_path) is None
    (tmp_path / "manifest.json").write_text("{not json")
    assert synthetic_breakdown([], tmp_path) is None
    (tmp_path / "manifest.json").write_text(json.dumps({"generator": "someone else", "files": []}))
    assert synthetic_breakdown([], tmp_path) is None


def test_evaluate_prints_the_breakdown_of_a_synthetic_set_and_none_for_other_folders(
    tmp_path, make_classifier_file, capsys
):
    from afmwatch.synth.sets import generate_classify_set

    data = tmp_path / "set"
    generate_classify_set(data, 12, seed=11, size=64, gwy=False, previews=False, retrace=False)
    model = make_classifier_file(tmp_path / "m.safetensors", arch="compact", crop=32)
    assert main(["evaluate", "--model", str(model), "--data", str(data), "--out", str(tmp_path / "e")]) == 0
    out = capsys.readouterr().out
    assert "synthetic set (manifest.json)" in out and "bad scans by the fault that ruined them" in out
    report = json.loads((tmp_path / "e" / "evaluation.json").read_text())["synthetic"]
    assert report["files_in_manifest"] == 12
    assert sum(c["n"] for c in report["bad_by_fault"].values()) == 6
    assert sum(c["n"] for c in report["good_by_surface"].values()) == 6
    assert sum(c["n"] for c in report["bad_by_visibility"].values()) == 6

    plain = tmp_path / "plain"
    for label in ("good", "bad"):
        shutil.copytree(data / label, plain / label)
    assert main(["evaluate", "--model", str(model), "--data", str(plain), "--out", str(tmp_path / "p")]) == 0
    assert "synthetic set" not in capsys.readouterr().out
    assert json.loads((tmp_path / "p" / "evaluation.json").read_text())["synthetic"] is None
