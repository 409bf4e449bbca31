"""Training: metrics by hand, leak-free splits, calibration, the loop, the options and the report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from afmwatch.networks.families import load_classifier
from afmwatch.networks.pipeline import finish, make_pipeline, prepare
from afmwatch.scan import Scan
from afmwatch.training import train as train_module
from afmwatch.training.calibration import choose_review_band, fit_temperature, softmax
from afmwatch.training.data import collect_files, fingerprint, group_name
from afmwatch.training.metrics import (
    balanced_accuracy,
    bootstrap_interval,
    classification_metrics,
    confusion_matrix,
    per_class,
    roc_auc,
)
from afmwatch.training.options import TrainOptions
from afmwatch.training.splits import kfold_splits, validation_split
from afmwatch.training.train import train_network_arrays

# --- metrics against a hand-computed confusion matrix --------------------------------------------


def test_metrics_agree_with_a_hand_computed_confusion_matrix():
    # 6 good (label 0) and 4 bad (label 1); predictions by P(bad) > 0.5
    true = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
    p_bad = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.4, 0.9, 0.8, 0.45, 0.65])
    # predicted:       0    0    0    1    1    0    1    1    0     1
    # good: 4 right, 2 called bad; bad: 3 right, 1 called good
    matrix = confusion_matrix(true, (p_bad > 0.5).astype(int))
    assert matrix.tolist() == [[4, 2], [1, 3]]
    precision, recall = per_class(matrix)
    assert precision == [pytest.approx(4 / 5), pytest.approx(3 / 5)]
    assert recall == [pytest.approx(4 / 6), pytest.approx(3 / 4)]
    assert balanced_accuracy(matrix) == pytest.approx((4 / 6 + 3 / 4) / 2)
    # AUC by counting pairs: bad scores 0.9, 0.8, 0.45, 0.65 against the 6 good ones
    wins = sum((b > g) + 0.5 * (b == g) for b in p_bad[true == 1] for g in p_bad[true == 0])
    assert roc_auc(true == 1, p_bad) == pytest.approx(wins / 24)
    assert wins == 6 + 6 + 4 + 5
    metrics = classification_metrics(true, p_bad)
    assert metrics["accuracy"] == pytest.approx(0.7)
    assert metrics["recall"] == {"good": pytest.approx(4 / 6), "bad": pytest.approx(0.75)}
    assert metrics["confusion_matrix"] == [[4, 2], [1, 3]]


def test_roc_auc_counts_ties_as_half_and_is_undefined_for_one_class():
    assert roc_auc(np.array([True, False]), np.array([0.5, 0.5])) == pytest.approx(0.5)
    assert roc_auc(np.array([True, True]), np.array([0.1, 0.9])) is None
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(5)
    labels, scores = rng.integers(0, 2, 200), rng.integers(0, 10, 200) / 10  # many ties
    assert roc_auc(labels == 1, scores) == pytest.approx(roc_auc_score(labels, scores))


def test_bootstrap_interval_brackets_the_estimate():
    rng = np.random.default_rng(0)
    true = np.repeat([0, 1], 50)
    p_bad = np.clip(true * 0.6 + rng.normal(0.2, 0.25, 100), 0, 1)
    low, high = bootstrap_interval(true, p_bad, resamples=300)
    estimate = classification_metrics(true, p_bad)["balanced_accuracy"]
    assert low <= estimate <= high and high - low < 0.3


# --- splits --------------------------------------------------------------------------------------


def test_identical_files_and_groups_never_straddle_a_split():
    rng = np.random.default_rng(1)
    n = 60
    labels = rng.integers(0, 2, n)
    hashes = [f"h{i}" for i in range(n)]
    hashes[5] = hashes[17] = hashes[33] = "same-content"
    groups = [f"sample{i % 7}" if i % 3 == 0 else None for i in range(n)]
    for seed in range(5):
        train_idx, val_idx = validation_split(labels, hashes, groups, 0.25, seed)
        assert sorted(np.r_[train_idx, val_idx].tolist()) == list(range(n))
        side = {i: "val" if i in set(val_idx.tolist()) else "train" for i in range(n)}
        assert len({side[5], side[17], side[33]}) == 1
        for g in {g for g in groups if g}:
            assert len({side[i] for i in range(n) if groups[i] == g}) == 1
        for folds in (kfold_splits(labels, hashes, groups, 4, seed),):
            seen = np.concatenate([v for _, v in folds])
            assert sorted(seen.tolist()) == list(range(n))  # validated exactly once
            for train, val in folds:
                assert not ({hashes[i] for i in train} & {hashes[i] for i in val})
                assert not ({groups[i] for i in train} & {groups[i] for i in val}) - {None}


def test_validation_split_is_stratified():
    labels = np.array([0] * 80 + [1] * 20)
    train_idx, val_idx = validation_split(labels, [str(i) for i in range(100)], [None] * 100, 0.25, 3)
    assert np.bincount(labels[val_idx]).tolist() == [20, 5]
    for _, val in kfold_splits(labels, [str(i) for i in range(100)], [None] * 100, 5, 0):
        assert np.bincount(labels[val]).tolist() == [16, 4]


def test_group_by_takes_the_first_group_or_the_whole_match():
    assert group_name(Path("STO-12_scan003.nid"), r"^([A-Za-z]+-\d+)_") == "STO-12"
    assert group_name(Path("STO-12_scan003.nid"), r"STO-\d+") == "STO-12"
    assert group_name(Path("other.nid"), r"STO-\d+") is None


# --- calibration ---------------------------------------------------------------------------------


def test_temperature_scaling_recovers_the_true_temperature():
    rng = np.random.default_rng(2)
    true_logits = rng.normal(0, 2, (4000, 2))
    labels = np.array([rng.random() < p for p in softmax(true_logits)[:, 1]], dtype=int)
    assert fit_temperature(true_logits * 3, labels) == pytest.approx(3, rel=0.15)  # overconfident by 3
    separable = np.array([[2.0, -2.0], [-2.0, 2.0]])
    assert fit_temperature(separable, np.array([0, 1])) >= 1.0  # no mistakes: never sharpened


def test_review_band_catches_the_validation_mistakes_within_its_cap():
    labels = np.array([0] * 10 + [1] * 10)
    p_bad = np.r_[np.linspace(0.0, 0.3, 9), 0.62, np.linspace(0.7, 1.0, 9), 0.42]
    low, high = choose_review_band(p_bad, labels)
    assert low <= 0.42 and high >= 0.62
    assert np.mean((p_bad >= low) & (p_bad <= high)) <= 0.2
    assert choose_review_band(np.r_[np.zeros(10), np.ones(10)], labels) == (0.4, 0.6)  # the minimum width


# --- the training loop ---------------------------------------------------------------------------


def _toy_set(n: int, seed: int, size: int = 40) -> tuple[list[np.ndarray], np.ndarray]:
    """Bumpy surfaces; the bad half carries scars (raised segments of rows)."""
    rng = np.random.default_rng(seed)
    spec = make_pipeline(1, "standardise", resize=size, crop=32)
    y, x = np.mgrid[0:size, 0:size]
    arrays, labels = [], np.arange(n) % 2
    for label in labels:
        z = sum(np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 18) for cx, cy in rng.uniform(0, size, (8, 2)))
        z = z + rng.normal(0, 0.05, z.shape)
        if label:
            for row in rng.choice(size, 4, replace=False):
                start = rng.integers(0, size // 2)
                z[row, start : start + size // 3] += rng.uniform(1, 2)
        scan = Scan(height=z, pixel_size_nm=1.0, channel="Height", path=Path("toy"), format="tiff")
        arrays.append(prepare(scan, spec))
    return arrays, labels


TINY = dict(
    arch="compact", epochs=8, batch_size=8, image_size=32, resize=40, lr=3e-3, device="cpu", threads=1, scheduler="none"
)


def test_training_lowers_the_loss_and_beats_chance_on_held_out_scans():
    arrays, labels = _toy_set(48, seed=0)
    options = TrainOptions(**TINY)
    spec = train_module.make_spec(options, None)
    model, report = train_network_arrays(
        arrays, labels, [str(i) for i in range(48)], [None] * 48, options, spec, progress=False
    )
    losses = [h["train_loss"] for h in report["history"]]
    assert losses[-1] < 0.8 * losses[0]
    held_out, held_labels = _toy_set(40, seed=99)
    batch = torch.stack([finish(a, spec) for a in held_out])  # centre crop, as at inference
    with torch.inference_mode():
        predicted = model(batch).argmax(1).numpy()
    assert classification_metrics(held_labels, predicted.astype(float))["balanced_accuracy"] >= 0.75
    assert report["temperature"] > 0 and 0 <= report["review_band"][0] <= 0.5 <= report["review_band"][1] <= 1


def test_cosine_schedule_lowers_the_learning_rate_along_a_half_cosine_over_all_epochs():
    arrays, labels = _toy_set(16, seed=2)
    options = TrainOptions(**dict(TINY, epochs=4, scheduler="cosine"))
    spec = train_module.make_spec(options, None)
    _, report = train_network_arrays(
        arrays, labels, [str(i) for i in range(16)], [None] * 16, options, spec, progress=False
    )
    rates = [h["lr"] for h in report["history"]]
    expected = [options.lr * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(4)]  # 1, 0.85, 0.5, 0.15 x lr
    assert rates == pytest.approx(expected)


def test_ctrl_c_keeps_the_best_model_so_far(monkeypatch):
    arrays, labels = _toy_set(24, seed=1)
    options = TrainOptions(**dict(TINY, epochs=10, scheduler="step"))
    spec = train_module.make_spec(options, None)
    real = train_module._make_scheduler

    class StopAtEpoch3:
        def __init__(self, optimizer, opts):
            self.inner, self.epoch = real(optimizer, opts), 0

        def step(self):
            self.epoch += 1
            if self.epoch == 3:
                raise KeyboardInterrupt
            self.inner.step()

    monkeypatch.setattr(train_module, "_make_scheduler", StopAtEpoch3)
    model, report = train_network_arrays(
        arrays, labels, [str(i) for i in range(24)], [None] * 24, options, spec, progress=False
    )
    assert report["interrupted"] is True
    assert len(report["history"]) == 3 and report["best_epoch"] in (1, 2, 3)


# --- the folder, the options, the report ---------------------------------------------------------


@pytest.fixture(scope="module")
def synth_folder(tmp_path_factory) -> Path:
    from afmwatch.synth.sets import generate_classify_set
    from afmwatch.writers import write_tiff

    out = tmp_path_factory.mktemp("synth") / "set"
    generate_classify_set(out, 24, seed=7, size=64, gwy=True, previews=True, retrace=False)
    # what an operator's sorted folder also holds: sidecars, previews, review/ and failed/
    first = sorted((out / "good").iterdir())[0]
    (out / "good" / "sub").mkdir()
    (out / "good" / "sub" / "copy-of-first.tif").write_bytes(first.read_bytes())  # identical file
    (out / "good" / f"{first.stem}.afmwatch.json").write_text("{}")
    write_tiff(out / "bad" / f"{first.stem}.denoised.tiff", np.zeros((64, 64), np.float32), 10.0)  # daemon output
    (out / "review").mkdir()
    (out / "review" / "unsure.tif").write_bytes(first.read_bytes())
    (out / "bad" / "broken.tif").write_bytes(b"II*\x00 not really a tiff")
    return out


def test_collect_ignores_review_failed_sidecars_and_extra_formats(synth_folder):
    files, notes = collect_files(synth_folder)
    names = [f.path.name for f in files]
    assert "unsure.tif" not in names and not any(".afmwatch." in n or ".denoised" in n for n in names)
    assert all(f.path.parent.name in ("good", "bad", "sub") for f in files)
    assert len([n for n in names if n.endswith(".tif")]) == len(names)  # .gwy/.png of the same scan: once
    copies = [f for f in files if f.path.name == "copy-of-first.tif"]
    assert copies and sum(f.sha256 == copies[0].sha256 for f in files) == 2
    print_ = fingerprint(files, synth_folder)
    assert print_["count"] == len(files) and print_ == fingerprint(list(reversed(files)), synth_folder)


def _run_train(argv: list[str]) -> int:
    from afmwatch.cli import main

    return main(["--log-level", "warning", "train", *argv])


def test_every_training_option_is_accepted_and_recorded(synth_folder, tmp_path):
    first = tmp_path / "first.safetensors"
    argv = [
        "--data",
        str(synth_folder),
        "--out",
        str(first),
        "--arch",
        "convnet",
        "--optimizer",
        "sgd",
        "--lr",
        "0.01",
        "--momentum",
        "0.8",
        "--weight-decay",
        "0.0001",
        "--batch-size",
        "6",
        "--epochs",
        "2",
        "--scheduler",
        "plateau",
        "--val-fraction",
        "0.3",
        "--folds",
        "2",
        "--group-by",
        r"s7-000(\d)",
        "--seed",
        "3",
        "--device",
        "cpu",
        "--image-size",
        "32",
        "--resize",
        "36",
        "--normalise",
        "standardise",
        "--data-area",
        "whole",
        "--jitter",
        "0.05",
        "--review-band",
        "0.3",
        "0.7",
        "--name",
        "lab-test",
        "--threads",
        "2",
    ]
    assert _run_train(argv) == 0
    report = json.loads((tmp_path / "first.report.json").read_text())
    expected = dict(
        arch="convnet",
        optimizer="sgd",
        lr=0.01,
        momentum=0.8,
        weight_decay=0.0001,
        batch_size=6,
        epochs=2,
        scheduler="plateau",
        val_fraction=0.3,
        folds=2,
        group_by=r"s7-000(\d)",
        seed=3,
        device="cpu",
        image_size=32,
        resize=36,
        normalise="standardise",
        data_area="whole",
        jitter=0.05,
        review_band=[0.3, 0.7],
        name="lab-test",
        threads=2,
    )
    assert {k: report["options"][k] for k in expected} == expected
    assert report["pipeline"]["normalise"] == "standardise" and report["pipeline"]["crop"] == 32
    assert len(report["cross_validation"]["per_fold"]) == 2
    assert report["data"]["skipped"][0]["path"].endswith("broken.tif")
    for kind in ("curves", "confusion", "roc"):
        assert Path(report["files"][kind]).stat().st_size > 1000
    classifier = load_classifier(first)
    meta = classifier.metadata
    assert classifier.name == "lab-test" and classifier.review_band == (0.3, 0.7)
    assert meta["training_data"]["count"] == report["data"]["count"] and len(meta["training_data"]["sha256"]) == 64
    assert meta["command"].startswith("afmwatch train --data") and meta["created"] and meta["afmwatch_version"]
    assert meta["metrics"]["validation"]["balanced_accuracy"] is not None
    assert meta["metrics"]["cross_validation"]["folds"] == 2

    second = tmp_path / "second.safetensors"
    assert (
        _run_train(
            [
                "--data",
                str(synth_folder),
                "--out",
                str(second),
                "--base-model",
                str(first),
                "--optimizer",
                "adam",
                "--scheduler",
                "step",
                "--epochs",
                "1",
                "--batch-size",
                "6",
                "--device",
                "auto",
                "--threads",
                "2",
            ]
        )
        == 0
    )
    continued = json.loads((tmp_path / "second.report.json").read_text())
    assert continued["options"]["arch"] == "convnet" and continued["options"]["base_model"] == str(first)
    assert continued["weights_origin"].startswith("continued from base model")
    assert continued["pipeline"]["crop"] == 32  # the base model's pipeline


def test_resnet_without_imagenet_weights_says_it_trained_from_scratch(synth_folder, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "empty-hub"))
    out = tmp_path / "r.safetensors"
    assert (
        _run_train(
            [
                "--data",
                str(synth_folder),
                "--out",
                str(out),
                "--arch",
                "resnet18-features",
                "--epochs",
                "1",
                "--batch-size",
                "8",
                "--image-size",
                "32",
                "--resize",
                "32",
            ]
        )
        == 0
    )
    report = json.loads((tmp_path / "r.report.json").read_text())
    assert "trained from scratch" in report["weights_origin"]


def test_bad_training_folder_gives_a_clear_error(tmp_path, capsys):
    assert _run_train(["--data", str(tmp_path), "--out", str(tmp_path / "m.safetensors")]) == 1
    assert "good/" in capsys.readouterr().err


def test_options_out_of_range_are_refused_before_reading(tmp_path, capsys):
    assert (
        _run_train(
            [
                "--data",
                str(tmp_path),
                "--out",
                str(tmp_path / "m.safetensors"),
                "--epochs",
                "0",
                "--folds",
                "1",
                "--val-fraction",
                "1.5",
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert "--epochs" in err and "--folds" in err and "--val-fraction" in err


def test_compare_cross_validates_other_architectures_on_the_same_folds(synth_folder, tmp_path, capsys):
    from afmwatch.training.splits import kfold_splits

    out = tmp_path / "cmp.safetensors"
    assert (
        _run_train(
            [
                "--data",
                str(synth_folder),
                "--out",
                str(out),
                "--arch",
                "convnet",
                "--epochs",
                "1",
                "--batch-size",
                "8",
                "--image-size",
                "32",
                "--resize",
                "32",
                "--folds",
                "2",
                "--compare",
                "metrics-logistic,convnet",
            ]
        )
        == 0
    )
    report = json.loads((tmp_path / "cmp.report.json").read_text())
    comparison = report["comparison"]
    assert list(comparison) == ["convnet", "metrics-logistic"]  # the run's own arch once, first
    assert comparison["convnet"]["balanced_accuracy"] == report["cross_validation"]["balanced_accuracy"]
    own, other = comparison["convnet"], comparison["metrics-logistic"]
    assert own["count"] == other["count"] == report["data"]["count"] and other["folds"] == 2
    assert 0.0 <= other["balanced_accuracy"]["mean"] <= 1.0
    assert "metrics-logistic" in capsys.readouterr().out
    # the folds depend on the files only, so both architectures were validated on the same scans
    files, _ = collect_files(synth_folder)
    labels = np.array([f.label for f in files])
    args = (labels, [f.sha256 for f in files], [f.group for f in files], 2, 0)
    assert [v.tolist() for _, v in kfold_splits(*args)] == [v.tolist() for _, v in kfold_splits(*args)]


def test_compare_without_folds_is_refused(synth_folder, tmp_path, capsys):
    assert (
        _run_train(
            [
                "--data",
                str(synth_folder),
                "--out",
                str(tmp_path / "m.safetensors"),
                "--arch",
                "compact",
                "--compare",
                "metrics-logistic",
            ]
        )
        == 1
    )
    assert "--folds" in capsys.readouterr().err


# --- train --arch auto: the family chosen by cross-validation ------------------------------------


def _retrace_decides(root: Path, n: int, seed: int, shuffle_labels: bool = False) -> Path:
    """Scans whose label only the retrace tells: a bad scan's retrace is another surface (the tip lost
    the sample), a good one's is its trace. The traces, all a network sees, look alike in both classes;
    the metrics models see trace_retrace_mismatch. `shuffle_labels`: labels at random instead."""
    from afmwatch.synth import synth_scan
    from afmwatch.writers import write_tiff

    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 2) if shuffle_labels else np.arange(n) % 2
    for i in range(n):
        made = synth_scan(rng, 64, surface="grains", artefacts=[])
        other = synth_scan(rng, 64, surface="grains", artefacts=[]).trace
        lost = i % 2 == 1
        retrace = other if lost else made.trace + rng.normal(0, 0.002 * np.nanstd(made.trace), made.trace.shape)
        label, name = ("good", "bad")[labels[i]], f"r{i:03d}"
        write_tiff(
            root / label / f"{name}.tif",
            made.trace,
            made.pixel_size_nm,
            metadata={"retrace_file": f"../retrace/{label}/{name}.tif"},
        )
        write_tiff(root / "retrace" / label / f"{name}.tif", retrace, made.pixel_size_nm, channel="Height retrace")
    return root


@pytest.fixture(scope="module")
def retrace_folder(tmp_path_factory) -> Path:
    return _retrace_decides(tmp_path_factory.mktemp("retrace") / "set", 30, seed=2)


FAST_NETS = ["--epochs", "2", "--batch-size", "8", "--image-size", "32", "--resize", "32", "--threads", "2"]


def test_auto_is_the_default_and_chooses_the_family_that_wins(retrace_folder, tmp_path, capsys):
    out = tmp_path / "auto.safetensors"
    assert (
        _run_train(
            ["--data", str(retrace_folder), "--out", str(out), *FAST_NETS, "--compare", "compact,metrics-logistic"]
        )
        == 0
    )  # no --arch, no --folds: auto, 5 folds
    report = json.loads((tmp_path / "auto.report.json").read_text())
    selection, comparison = report["selection"], report["comparison"]
    assert selection["chosen"] == selection["best"] == "metrics-logistic" == report["options"]["arch"]
    assert list(comparison) == ["metrics-logistic", "compact"]  # simplest first
    logistic, compact = (comparison[a]["balanced_accuracy"]["mean"] for a in ("metrics-logistic", "compact"))
    assert logistic >= 0.9 and logistic > compact + selection["tolerance"]  # a clear win, not a tie-break
    assert all(comparison[a]["folds"] == 5 and comparison[a]["count"] == 30 for a in comparison)
    assert report["options"]["folds"] == 5 and report["cross_validation"]["folds"] == 5
    # the chosen family's cross-validation is the one the comparison measured (reused, not rerun)
    assert report["cross_validation"]["balanced_accuracy"] == comparison["metrics-logistic"]["balanced_accuracy"]
    assert "highest mean balanced accuracy" in selection["reason"] and "one standard error" in selection["rule"]
    assert report["chance_level"]["at_chance"] is False
    printed = capsys.readouterr()
    assert "<- chosen" in printed.out and "chosen:   metrics-logistic" in printed.out
    assert "WARNING" not in printed.err
    classifier = load_classifier(out)
    assert classifier.arch == "metrics-logistic"
    assert classifier.metadata["metrics"]["cross_validation"]["folds"] == 5


def test_auto_trains_a_chosen_network_and_passes_over_a_candidate_that_fails(synth_folder, tmp_path, capsys):
    bogus = tmp_path / "not-resnet.pth"
    bogus.write_bytes(b"not a state dict")
    out = tmp_path / "net.safetensors"
    assert (
        _run_train(
            [
                "--data",
                str(synth_folder),
                "--out",
                str(out),
                "--arch",
                "auto",
                "--folds",
                "2",
                *FAST_NETS,
                "--compare",
                "compact,resnet18-features",
                "--pretrained",
                str(bogus),
            ]
        )
        == 0
    )
    report = json.loads((tmp_path / "net.report.json").read_text())
    assert report["selection"]["chosen"] == "compact" == report["options"]["arch"]
    assert report["options"]["pretrained"] is None  # ImageNet weights go to the ResNets only
    assert "error" in report["comparison"]["resnet18-features"]
    assert report["cross_validation"]["folds"] == 2 and len(report["cross_validation"]["per_fold"]) == 2
    assert report["history"] and Path(report["files"]["curves"]).is_file()  # trained as --arch compact would
    assert "resnet18-features    failed:" in capsys.readouterr().out
    assert load_classifier(out).arch == "compact"


def test_auto_prefers_the_simpler_family_within_one_standard_error():
    from afmwatch.training.auto import choose_architecture

    def cv(mean: float, std: float) -> dict:
        return {"count": 60, "folds": 5, "balanced_accuracy": {"mean": mean, "std": std}}

    near = choose_architecture(
        {"compact": cv(0.90, 0.10), "metrics-boosted": cv(0.87, 0.05), "metrics-logistic": cv(0.80, 0.05)}
    )
    assert near["best"] == "compact" and near["chosen"] == "metrics-boosted"  # 0.03 < 0.10 / sqrt(5)
    assert "simpler" in near["reason"] and "compact" in near["reason"]
    clear = choose_architecture(
        {
            "compact": cv(0.95, 0.02),
            "metrics-logistic": cv(0.85, 0.05),
            "convnet": {"error": "the training part lacks a class"},
        }
    )
    assert clear["chosen"] == "compact" and clear["tolerance"] == pytest.approx(0.02)  # the floor
    with pytest.raises(ValueError, match="lacks a class"):
        choose_architecture({"compact": {"error": "the training part lacks a class"}})


def test_default_arch_is_auto_for_small_folders_only(retrace_folder, monkeypatch):
    from afmwatch.training import auto

    assert auto.default_arch(retrace_folder, TrainOptions()) == "auto"
    assert auto.default_arch(retrace_folder, TrainOptions(arch="convnet")) == "convnet"
    assert auto.default_arch(retrace_folder, TrainOptions(base_model="lab.safetensors")) is None
    monkeypatch.setattr(auto, "AUTO_MAX_SCANS", 30)
    assert auto.default_arch(retrace_folder, TrainOptions()) == "compact"
    assert "resnet18-finetune" not in auto.auto_candidates(TrainOptions())  # nothing to start them from
    assert auto.auto_candidates(TrainOptions(pretrained="r.pth"))[-2:] == ["resnet18-features", "resnet18-finetune"]


# --- a model no better than chance ----------------------------------------------------------------


def test_a_run_at_chance_level_warns_loudly(tmp_path, capsys):
    folder = _retrace_decides(tmp_path / "random", 30, seed=4, shuffle_labels=True)
    out = tmp_path / "coin.safetensors"
    assert _run_train(["--data", str(folder), "--out", str(out), "--arch", "metrics-logistic", "--folds", "3"]) == 0
    report = json.loads((tmp_path / "coin.report.json").read_text())
    chance = report["chance_level"]
    assert chance["at_chance"] is True and chance["measured_on"] == "cross-validation"
    assert chance["balanced_accuracy"] < 0.6 or chance["interval_95"][0] <= 0.5
    err = capsys.readouterr().err
    assert "WARNING: this model is no better than chance" in err
    assert "training_at_chance" in err  # the structlog event
    assert load_classifier(out).metadata["metrics"]["at_chance"] is True


# --- models promote --data: never a worse model ---------------------------------------------------


def test_promote_with_data_refuses_a_worse_model_unless_forced(retrace_folder, tmp_path, capsys, make_classifier_file):
    from afmwatch.cli import main

    good = tmp_path / "good.safetensors"
    assert _run_train(["--data", str(retrace_folder), "--out", str(good), "--arch", "metrics-logistic"]) == 0
    coin = make_classifier_file(tmp_path / "coin.safetensors", arch="convnet")  # untrained
    store_folder = tmp_path / "store"

    def promote(*argv: str) -> int:
        return main(["--log-level", "warning", "models", "--model-folder", str(store_folder), "promote", *argv])

    active = store_folder / "active.safetensors"
    assert promote(str(coin)) == 0  # no --data: as before, whatever it measures
    capsys.readouterr()
    assert promote(str(good), "--data", str(retrace_folder)) == 0  # better than the active one
    out = capsys.readouterr().out
    assert "good: balanced accuracy" in out and "active coin: balanced accuracy" in out
    assert active.read_bytes() == good.read_bytes()

    assert promote(str(coin), "--data", str(retrace_folder)) == 1
    err = capsys.readouterr().err
    assert "coin.safetensors: balanced accuracy" in err and "worse than the active model's, good" in err
    assert "--force" in err
    assert active.read_bytes() == good.read_bytes()  # refused: the good model stays

    assert promote(str(coin), "--data", str(retrace_folder), "--force") == 0
    assert "--force: promoting coin although it measures worse than good" in capsys.readouterr().err
    assert active.read_bytes() == coin.read_bytes()


def test_every_kind_of_model_loads_trains_and_cross_validates_through_one_registry():
    from afmwatch.networks.architectures import ARCHITECTURES
    from afmwatch.networks.families import KIND_OF, MODEL_KINDS
    from afmwatch.networks.metrics_model import METRICS_ARCHS
    from afmwatch.training.families import FAMILIES, TRAINERS

    assert set(TRAINERS) == set(MODEL_KINDS)  # every kind that loads trains, and only those
    names = [arch for kind in MODEL_KINDS.values() for arch in kind.architectures]
    assert len(names) == len(set(names)) == len(KIND_OF)  # every architecture name belongs to one kind
    assert set(KIND_OF) == set(ARCHITECTURES) | set(METRICS_ARCHS)
    assert set(FAMILIES) == set(KIND_OF)  # and every one is trainable
    for name, family in FAMILIES.items():
        assert family.name == name and family.kind == KIND_OF[name].name
        assert family.fit is TRAINERS[family.kind].fit and family.cross_validate is TRAINERS[family.kind].cross_validate
