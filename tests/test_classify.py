"""`afmwatch classify` and `afmwatch evaluate`: batches, clear errors, every real sample, the default model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from afmwatch.cli import main
from afmwatch.judge import judge_paths
from afmwatch.networks import classifier as classifier_module
from afmwatch.networks.families import load_classifier
from afmwatch.networks.store import default_model_path
from afmwatch.readers import is_supported, read_scan
from afmwatch.scan import ScanError

KEYS = {
    "path",
    "label",
    "decision",
    "confidence",
    "probabilities",
    "network_decision",
    "model_parts",
    "familiarity",
    "rule",
    "reasons",
    "frames",
    "multiframe_rule",
    "quality",
    "error",
}


def sample_files(samples: Path) -> list[Path]:
    return sorted(p for p in samples.rglob("*") if p.is_file() and is_supported(p))


def test_shipped_default_model_loads_and_is_small():
    path = default_model_path()
    assert path.exists(), "models/default-classifier.safetensors is missing (make default-model)"
    classifier = load_classifier(path)
    assert classifier.class_names == ("good", "bad") and classifier.review_band[0] < 0.5 < classifier.review_band[1]
    total = sum(p.stat().st_size for p in path.parent.iterdir() if p.is_file())
    assert total <= 25 * 1024 * 1024
    assert (path.parent / "README.md").exists()


def test_every_shared_sample_classifies_or_gives_a_clear_error(samples, capsys):
    files = sample_files(samples)
    assert len(files) >= 15
    assert main(["classify", "--json", *map(str, files)]) in (0, 1)
    rows = json.loads(capsys.readouterr().out)
    assert [row["path"] for row in rows] == [str(f) for f in files]
    for row, path in zip(rows, files):
        assert set(row) == KEYS
        try:
            read_scan(path)
        except ScanError as exc:
            assert row["error"] and row["decision"] == "failed", path  # as the daemon sorts it
            assert row["reasons"] == [f"could not be processed: {row['error']}"]
            assert exc.reason in row["error"]
            continue
        assert row["error"] is None, f"{path.name} reads but does not classify: {row['error']}"
        assert row["decision"] in ("good", "bad", "review") and row["label"] in ("good", "bad")
        assert row["probabilities"]["good"] + row["probabilities"]["bad"] == pytest.approx(1.0, abs=1e-5)
        if row["frames"] is None:  # a multi-frame file's confidence is the mean over its agreeing frames
            assert row["confidence"] == row["probabilities"][row["label"]]
        assert row["reasons"] and all(isinstance(reason, str) and reason for reason in row["reasons"])
    assert any(row["error"] for row in rows if row["path"].endswith("thermal.nid"))  # a spectrum, not an image


def test_files_are_classified_in_batches_and_an_unreadable_one_does_not_stop_the_others(
    tmp_path, samples, make_classifier_file, monkeypatch
):
    model = load_classifier(make_classifier_file(tmp_path / "m.safetensors", arch="compact", crop=32))
    junk = tmp_path / "junk.nid"
    junk.write_bytes(b"this is not a Nanosurf file")
    paths = [
        samples / "nid" / "sapphire.nid",
        junk,
        samples / "gwy" / "test.gwy",
        samples / "png" / "minicircle_colorbar_afmhot.png",
        tmp_path / "missing.ibw",
    ]
    batch_sizes = []
    real_predict = classifier_module.Classifier.predict

    def counting_predict(self, batch, metrics=None):
        batch_sizes.append(len(batch))
        return real_predict(self, batch, metrics)

    monkeypatch.setattr(classifier_module.Classifier, "predict", counting_predict)
    results = list(judge_paths(model, paths, batch_size=8))
    assert batch_sizes == [3]  # one forward pass for the three readable files
    assert [r.path for r in results] == paths
    assert [r.error is None for r in results] == [True, False, True, True, False]
    assert all(r.verdict is not None and r.quality is not None for r in results if r.error is None)


def test_classify_text_output_and_exit_status(tmp_path, samples, make_classifier_file, capsys):
    model = make_classifier_file(tmp_path / "m.safetensors")
    good = samples / "wsxm" / "sample_0.top"
    assert main(["classify", "--model", str(model), str(good)]) == 0
    out = capsys.readouterr().out
    assert "sample_0.top" in out and "P(bad)" in out
    assert main(["classify", "--model", str(model), str(good), str(tmp_path / "nope.nid")]) == 1
    assert main(["classify", "--model", str(tmp_path / "absent.safetensors"), str(good)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_evaluate_reports_metrics_interval_and_plots(tmp_path, make_classifier_file, capsys):
    from afmwatch.synth.sets import generate_classify_set

    data = tmp_path / "set"
    generate_classify_set(data, 12, seed=11, size=64, gwy=False, previews=False, retrace=False)
    model = make_classifier_file(tmp_path / "m.safetensors", arch="compact", crop=32)
    out = tmp_path / "evaluation"
    assert main(["evaluate", "--model", str(model), "--data", str(data), "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    metrics = report["metrics"]
    assert metrics["count"] == 12 and sum(map(sum, metrics["confusion_matrix"])) == 12
    assert report["data"]["per_class"] == {"good": 6, "bad": 6}
    assert len(metrics["balanced_accuracy_95ci"]) == 2
    assert sum(report["decisions"][k] for k in ("good", "bad", "review")) == 12
    assert {row["true"] for row in report["files"]} == {"good", "bad"}
    for name in ("evaluation.json", "confusion.png", "roc.png"):
        assert (out / name).stat().st_size > 100


def test_evaluate_counts_the_files_that_hold_one_scan_direction(tmp_path, make_classifier_file, capsys):
    """A lab sees how many of its files were judged without a trace/retrace comparison."""
    import shutil

    from afmwatch.synth.sets import generate_classify_set

    data = tmp_path / "set"
    generate_classify_set(data, 8, seed=12, size=64, gwy=False, previews=False)
    for path in sorted((data / "retrace" / "good").glob("*.tif"))[:3]:
        path.unlink()  # three good scans lose their retrace
    shutil.rmtree(data / "retrace" / "bad", ignore_errors=True)  # and every bad one
    model = make_classifier_file(tmp_path / "m.safetensors", arch="compact", crop=32)
    assert main(["evaluate", "--model", str(model), "--data", str(data), "--out", str(tmp_path / "e")]) == 0
    assert "files with one scan direction (no trace/retrace comparison): 7 of 8" in capsys.readouterr().out
    report = json.loads((tmp_path / "e" / "evaluation.json").read_text())
    assert report["decisions"]["one_direction"] == 7
    assert [row["one_direction"] for row in report["files"] if row["true"] == "good"].count(False) == 1


def test_evaluate_says_when_only_one_class_was_given(tmp_path, make_classifier_file, capsys):
    """A lab that checks only its good scans must not read their recall as a balanced accuracy."""
    import shutil

    from afmwatch.synth.sets import generate_classify_set

    data = tmp_path / "set"
    generate_classify_set(data, 8, seed=12, size=64, gwy=False, previews=False, retrace=False)
    model = make_classifier_file(tmp_path / "m.safetensors", arch="compact", crop=32)
    assert main(["evaluate", "--model", str(model), "--data", str(data), "--out", str(tmp_path / "both")]) == 0
    assert "scans given: the balanced accuracy is their recall" not in capsys.readouterr().out
    shutil.rmtree(data / "bad")
    (data / "bad").mkdir()  # the folder layout kept, no bad scans in it
    assert main(["evaluate", "--model", str(model), "--data", str(data), "--out", str(tmp_path / "good")]) == 0
    assert "only good scans given: the balanced accuracy is their recall" in capsys.readouterr().out


def test_evaluate_compares_several_models_on_the_same_scans(tmp_path, make_classifier_file, capsys):
    from afmwatch.synth.sets import generate_classify_set

    data = tmp_path / "set"
    generate_classify_set(data, 8, seed=12, size=64, gwy=False, previews=False, retrace=False)
    first = make_classifier_file(tmp_path / "first.safetensors", arch="compact", crop=32)
    second = make_classifier_file(tmp_path / "second.safetensors", arch="convnet", crop=32)
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(first),
                "--compare",
                str(second),
                "--data",
                str(data),
                "--out",
                str(tmp_path / "ev"),
                "--json",
            ]
        )
        == 0
    )
    rows = json.loads(capsys.readouterr().out)["comparison"]
    assert [r["arch"] for r in rows] == ["compact", "convnet"]
    assert all(r["count"] == 8 for r in rows)
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(first),
                "--compare",
                str(second),
                "--data",
                str(data),
                "--out",
                str(tmp_path / "ev2"),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "on the same scans" in text and "convnet" in text
