"""`afmwatch models diff`: the scans whose decision would change with another model, none moved."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from loop_support import labelled_folder, snapshot, train_logistic

from afmwatch.cli import main


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """A metrics model trained on the right labels, one trained on every label swapped, and the scans."""
    root = tmp_path_factory.mktemp("diff")
    right = labelled_folder(root / "right", n=20, seed=3)
    wrong = labelled_folder(root / "wrong", n=20, seed=3, swap=True)
    return {
        "right": train_logistic(right, root / "right.safetensors"),
        "wrong": train_logistic(wrong, root / "wrong.safetensors"),
        "data": right,
    }


def _classify(model: Path, data: Path, capsys) -> dict[str, str]:
    scans = [str(data / "good"), str(data / "bad")]  # not the hidden .retrace folder
    assert main(["--log-level", "warning", "classify", "--json", "--model", str(model), *scans]) in (0, 1)
    return {row["path"]: row["decision"] for row in json.loads(capsys.readouterr().out)}


def test_diff_lists_exactly_the_scans_whose_decision_changes_and_moves_nothing(models, capsys):
    data = models["data"]
    before = snapshot(data)
    argv = ["--log-level", "warning", "models", "diff", str(models["wrong"]), "--against", str(models["right"])]
    assert main([*argv, "--data", str(data), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert snapshot(data) == before  # nothing moved, nothing written

    right, wrong = _classify(models["right"], data, capsys), _classify(models["wrong"], data, capsys)
    expected = {path for path in right if right[path] != wrong[path]}
    assert expected, "the swapped model should decide some scans differently"
    assert {c["path"] for c in report["changes"]} == expected
    assert report["scans"] == 20 and report["changed"] == len(expected)
    for change in report["changes"]:
        assert (change["before"], change["after"]) == (right[change["path"]], wrong[change["path"]])
        assert change["folder"] == Path(change["path"]).parent.name  # the folder it sits in: its label
        assert change["reason_before"] and change["reason_after"]
    assert sum(report["counts"].values()) == report["changed"]
    assert report["new"]["name"] == "wrong" and report["against"]["name"] == "right"

    assert main([*argv, "--data", str(data)]) == 0  # the readable listing
    out = capsys.readouterr().out
    assert f"{len(expected)} of 20 scans would change decision with wrong instead of right" in out
    assert "nothing was moved" in out


def test_diff_against_the_active_model_of_the_store(models, tmp_path, capsys):
    store_folder = tmp_path / "store"
    assert (
        main(["--log-level", "warning", "models", "--model-folder", str(store_folder), "promote", str(models["right"])])
        == 0
    )
    capsys.readouterr()
    same = ["--log-level", "warning", "models", "--model-folder", str(store_folder), "diff", "right", "--json"]
    assert main([*same, "--data", str(models["data"])]) == 0  # a model against itself: no change
    report = json.loads(capsys.readouterr().out)
    assert report["changed"] == 0 and report["changes"] == [] and report["scans"] == 20
    other = ["--log-level", "warning", "models", "--model-folder", str(store_folder), "diff", str(models["wrong"])]
    assert main([*other, "--data", str(models["data"]), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["changed"] > 0 and report["against"]["name"] == "right"


def test_diff_skips_sidecars_previews_and_the_state_folder(models, tmp_path):
    from afmwatch.training.model_diff import scan_files

    data = models["data"]
    assert len(scan_files(data)) == 20  # the hidden .retrace folder is not judged
    (data / "good" / "x.tif.afmwatch.png").write_bytes(b"")
    (data / ".afmwatch-state").mkdir(exist_ok=True)
    (data / ".afmwatch-state" / "y.tif").write_bytes(b"")
    try:
        assert len(scan_files(data)) == 20
    finally:
        (data / "good" / "x.tif.afmwatch.png").unlink()
        (data / ".afmwatch-state" / "y.tif").unlink()
