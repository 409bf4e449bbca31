"""`afmwatch train --data OUTPUT_ROOT` after people corrected decisions: a scan counts with the label of
the folder it sits in now, whatever its sidecar says the model decided; review/, failed/, sidecars,
previews and the state folder are no training data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from loop_support import sidecar_for, train_logistic, write_scan

from afmwatch.networks.families import load_classifier
from afmwatch.training.data import collect_files


@pytest.fixture(scope="module")
def corrected_root(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """An output root as the daemon and the review page leave it, and each scan's folder label.

    Every lost-tip scan ends in bad/, every good one in good/; but the model had sorted a third of each
    the wrong way, and a person moved them (their sidecars still say the model's decision)."""
    root = tmp_path_factory.mktemp("corrected") / "output"
    rng = np.random.default_rng(7)
    labels: dict[str, str] = {}
    for i in range(24):
        lost = i % 2 == 1
        label = "bad" if lost else "good"
        scan = write_scan(root / label / "session-1", f"c{i:03d}", lost, rng, root / ".afmwatch-state" / "retrace")
        model_said = ("good" if lost else "bad") if i % 3 == 0 else label
        sidecar_for(scan, model_said, corrected_to=label if model_said != label else None)
        labels[scan.name] = label
    for i, folder in enumerate(("review", "review", "failed")):  # not labels: never training data
        scan = write_scan(root / folder, f"x{i:03d}", i % 2 == 1, rng, root / ".afmwatch-state" / "retrace")
        sidecar_for(scan, folder)
    (root / ".afmwatch-state" / "journal.sqlite3").write_bytes(b"")
    return root, labels


def test_corrected_scans_count_with_the_folder_they_were_moved_to(corrected_root):
    root, labels = corrected_root
    files, notes = collect_files(root)
    assert {f.path.name: ("good", "bad")[f.label] for f in files} == labels
    corrected = [
        f for f in files if json.loads(f.path.with_name(f.path.name + ".afmwatch.json").read_text()).get("review")
    ]
    assert len(corrected) == 8  # the sidecar says one thing, the folder another: the folder wins
    assert all(
        ("good", "bad")[f.label] != json.loads(f.path.with_name(f.path.name + ".afmwatch.json").read_text())["decision"]
        for f in corrected
    )
    assert not any(part in ("review", "failed") for f in files for part in f.path.relative_to(root).parts)
    assert not any(".afmwatch." in f.path.name for f in files)


def test_train_on_the_output_root_learns_the_corrected_labels(corrected_root, tmp_path):
    root, labels = corrected_root
    out = train_logistic(root, tmp_path / "lab.safetensors", "--folds", "3")
    report = json.loads((tmp_path / "lab.report.json").read_text())
    assert report["data"]["count"] == 24  # 12 good + 12 bad; no review, failed, sidecar or preview
    assert report["data"]["per_class"] == {"good": 12, "bad": 12}
    trained = load_classifier(out).metadata["training_data"]
    assert trained["per_class"] == {"good": 12, "bad": 12}
    # the fingerprint is the folder labels' (label, relative path, hash): the corrected labels
    from afmwatch.training.data import fingerprint

    assert trained["sha256"] == fingerprint(collect_files(root)[0], root)["sha256"]
    assert report["cross_validation"]["balanced_accuracy"]["mean"] > 0.8  # the corrected labels are learnable
