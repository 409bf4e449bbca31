"""Classical models over the quality metrics: exported without pickle, equal to scikit-learn, usable
everywhere a network is (train, classify, evaluate, promote, --folds)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open

from afmwatch.networks.families import load_classifier
from afmwatch.networks.metrics_model import (
    BOOSTED,
    FEATURES,
    LOGISTIC,
    MetricsClassifier,
    feature_vector,
    logistic_raw,
    trees_raw,
)
from afmwatch.training.metrics_training import fit_model


def _rows(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(size=(n, len(FEATURES)))
    y = (x[:, 0] - 0.7 * x[:, 2] + 0.5 * rng.normal(size=n) > 0).astype(int)
    x[rng.random(x.shape) < 0.1] = np.nan  # metrics that did not apply (no retrace, no pixel size)
    return x, y


def test_exported_trees_predict_exactly_what_sklearn_predicts(rng):
    x, y = _rows(rng, 80)
    tensors, model = fit_model(BOOSTED, x, y)
    test, _ = _rows(rng, 300)
    np.testing.assert_allclose(trees_raw(tensors, test), model.decision_function(test), rtol=0, atol=1e-9)


def test_exported_logistic_predicts_what_sklearn_predicts(rng):
    x, y = _rows(rng, 80)
    tensors, model = fit_model(LOGISTIC, x, y)
    test, _ = _rows(rng, 100)
    filled = np.where(np.isnan(test), tensors["impute"], test)
    expected = model.decision_function((filled - tensors["mean"]) / tensors["scale"])
    np.testing.assert_allclose(logistic_raw(tensors, test), expected, atol=1e-9)


def test_feature_vector_takes_logs_of_heights_and_marks_missing_metrics():
    metrics = dict.fromkeys(FEATURES, 0.5) | {"sq": 100.0, "trace_retrace_mismatch": None, "noise_rms": 0.0}
    vector = feature_vector(metrics)
    assert vector[FEATURES.index("sq")] == pytest.approx(2.0)
    assert np.isnan(vector[FEATURES.index("trace_retrace_mismatch")])
    assert np.isfinite(vector[FEATURES.index("noise_rms")])  # log of 0 floored, not -inf
    assert vector[FEATURES.index("completeness")] == 0.5


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> Path:
    from afmwatch.synth import generate_classify_set

    folder = tmp_path_factory.mktemp("labelled")
    generate_classify_set(folder, 32, seed=4, size=64, gwy=False, previews=False)
    return folder


@pytest.mark.parametrize("arch", [LOGISTIC, BOOSTED])
def test_metrics_model_trains_saves_without_pickle_loads_and_classifies(labelled, tmp_path, arch):
    from afmwatch.cli import main

    out = tmp_path / f"{arch}.safetensors"
    assert (
        main(
            [
                "--log-level",
                "warning",
                "train",
                "--data",
                str(labelled),
                "--out",
                str(out),
                "--arch",
                arch,
                "--folds",
                "3",
            ]
        )
        == 0
    )
    with safe_open(out, "np") as handle:  # only arrays and a JSON string: nothing to unpickle
        meta = json.loads(handle.metadata()["afmwatch"])
        assert all(handle.get_tensor(k).dtype.kind in "fi" for k in handle.keys())  # noqa: SIM118 (safe_open is not a dict)
    assert meta["arch"] == arch and meta["features"] == list(FEATURES)
    report = json.loads(out.with_name(f"{arch}.report.json").read_text())
    assert report["cross_validation"]["folds"] == 3 and len(report["cross_validation"]["per_fold"]) == 3
    assert report["validation"]["count"] > 0

    classifier = load_classifier(out)
    assert isinstance(classifier, MetricsClassifier)
    assert classifier.arch == arch and len(classifier.sha256) == 64
    good = sorted((labelled / "good").glob("*.tif"))[:4]
    bad = sorted((labelled / "bad").glob("*.tif"))[:4]
    from afmwatch.readers import read_scan

    predictions = classifier.predict_scans([read_scan(p) for p in good + bad])
    assert all(p.decision in ("good", "bad", "review") for p in predictions)
    assert all(abs(sum(p.probabilities.values()) - 1) < 1e-9 for p in predictions)
    p_bad = [p.probabilities["bad"] for p in predictions]
    assert np.mean(p_bad[4:]) > np.mean(p_bad[:4])  # it learned something about the labels


def test_metrics_model_evaluates_and_is_promoted_like_a_network(labelled, tmp_path):
    from afmwatch.networks.store import active_model_path, promote
    from afmwatch.training.evaluate import evaluate_folder
    from afmwatch.training.families import train_model
    from afmwatch.training.options import TrainOptions

    out = tmp_path / "logistic.safetensors"
    train_model(labelled, out, TrainOptions(arch=LOGISTIC, val_fraction=0.25), progress=False)
    classifier = load_classifier(out)
    report = evaluate_folder(classifier, labelled)
    assert report["metrics"]["count"] == 32
    assert report["metrics"]["balanced_accuracy"] > 0.6
    assert report["model"]["arch"] == LOGISTIC
    store = tmp_path / "store"
    promote(out, store)
    assert load_classifier(active_model_path(store)).sha256 == classifier.sha256


def test_aborted_scan_looks_bad_to_a_model_that_saw_aborted_scans(tmp_path):
    """The completeness coefficient is learned: stopped scans push P(bad) up."""
    from afmwatch.scan import Scan
    from afmwatch.synth import synth_scan

    rows, labels = [], []
    for seed in range(30):
        rng = np.random.default_rng(seed)
        aborted = seed % 2 == 1
        made = synth_scan(rng, 64, surface="grains", artefacts=[("aborted", 0.9)] if aborted else [])
        scan = Scan(made.trace, made.pixel_size_nm, "Height", Path("s.tif"), "tiff", metadata=made.metadata)
        from afmwatch.quality import measure

        rows.append(feature_vector(measure(scan)))
        labels.append(int(aborted))
    tensors, _ = fit_model(LOGISTIC, np.stack(rows), np.array(labels))
    assert tensors["coef"][FEATURES.index("completeness")] < 0


@pytest.mark.slow
def test_daemon_sorts_with_a_metrics_model(labelled, tmp_path):
    import shutil

    from daemon_support import Daemon, processed_count, sorted_files, wait_until, write_config

    from afmwatch.daemon.sidecar import sidecar_path, validate
    from afmwatch.training.families import train_model
    from afmwatch.training.options import TrainOptions

    model = tmp_path / "metrics.safetensors"
    train_model(labelled, model, TrainOptions(arch=LOGISTIC), progress=False)
    config = write_config(tmp_path, model)
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    picked = [sorted((labelled / label).glob("*.tif"))[0] for label in ("good", "bad")]
    daemon = Daemon(config).wait_ready()
    try:
        for path in picked:
            shutil.copyfile(path, tmp_path / path.name)
            (tmp_path / path.name).replace(inbox / path.name)
        wait_until(lambda: processed_count(out) >= 2, what="two scans sorted")
    finally:
        assert daemon.terminate() == 0
    for sorted_file in sorted_files(out):
        sidecar = json.loads(sidecar_path(sorted_file).read_text())
        validate(sidecar)
        assert sidecar["model"]["arch"] == LOGISTIC
        assert sidecar["network_decision"] in ("good", "bad", "review")
        assert 0 <= sidecar["probabilities"]["bad"] <= 1


# --- a metric that no training scan has ----------------------------------------------------------


@pytest.mark.parametrize("arch", [LOGISTIC, BOOSTED])
def test_a_metric_missing_on_every_training_scan_is_ignored_not_fatal(rng, arch):
    """No retrace channel in any file: trace_retrace_mismatch is NaN in every row. The model trains
    on the other metrics and, at inference, a scan that does have the metric is scored the same."""
    from afmwatch.networks.metrics_model import RAW_FUNCTIONS
    from afmwatch.training.metrics import roc_auc

    x, y = _rows(rng, 60)
    missing = FEATURES.index("trace_retrace_mismatch")
    x[:, missing] = np.nan
    tensors, _ = fit_model(arch, x, y)
    raw = RAW_FUNCTIONS[arch](tensors, x)
    assert np.isfinite(raw).all()
    assert roc_auc(y == 1, raw) > 0.8  # learned from the metrics that were there
    with_retrace = x.copy()
    with_retrace[:, missing] = 1.4
    np.testing.assert_allclose(RAW_FUNCTIONS[arch](tensors, with_retrace), raw, atol=1e-12)


def test_boosted_trains_on_a_folder_without_any_retrace(tmp_path):
    from afmwatch.cli import main
    from afmwatch.synth import generate_classify_set

    folder = tmp_path / "no-retrace"
    generate_classify_set(folder, 24, seed=5, size=64, gwy=False, previews=False, retrace=False)
    out = tmp_path / "boosted.safetensors"
    assert (
        main(
            [
                "--log-level",
                "warning",
                "train",
                "--data",
                str(folder),
                "--out",
                str(out),
                "--arch",
                BOOSTED,
                "--folds",
                "3",
            ]
        )
        == 0
    )
    assert load_classifier(out).arch == BOOSTED


def test_a_metrics_model_can_see_only_the_scale_free_metrics(labelled, tmp_path):
    from afmwatch.networks.metrics_model import SCALE_FREE_FEATURES, feature_set
    from afmwatch.training.families import train_model
    from afmwatch.training.options import TrainOptions

    out = tmp_path / "scale-free.safetensors"
    train_model(labelled, out, TrainOptions(arch=LOGISTIC, metrics_features="scale-free"), progress=False)
    classifier = load_classifier(out)
    assert classifier.features == SCALE_FREE_FEATURES
    assert not {"sq", "sa", "noise_rms", "z_range", "bow", "tilt_deg"} & set(classifier.features)
    assert len(classifier.tensors["coef"]) == len(SCALE_FREE_FEATURES)
    assert feature_set("sq, scar_fraction") == ("sq", "scar_fraction")
    with pytest.raises(ValueError, match="unknown metrics roughness"):
        feature_set("roughness")


def test_compare_and_auto_cross_validate_the_metrics_model_that_is_trained(labelled, tmp_path):
    """--compare and --arch auto cross-validate a metrics model on the --metrics-features it will be
    trained on (they once used every metric, so auto reported another model's folds as its own)."""
    from dataclasses import replace

    from afmwatch.training.auto import train_auto
    from afmwatch.training.compare import cross_validate_arch
    from afmwatch.training.families import train_model
    from afmwatch.training.options import TrainOptions
    from afmwatch.training.run import check_options

    options = TrainOptions(arch=LOGISTIC, folds=3, val_fraction=0.25, metrics_features="scale-free")
    own = train_model(labelled, tmp_path / "own.safetensors", options, progress=False)["cross_validation"]
    every_metric = cross_validate_arch(labelled, replace(options, metrics_features="all"), progress=False)
    assert every_metric["out_of_fold"] != own["out_of_fold"]  # the feature set matters on these scans
    compared = cross_validate_arch(labelled, options, progress=False)
    assert compared["out_of_fold"] == own["out_of_fold"]
    assert compared["per_fold"] == own["per_fold"]
    auto = train_auto(
        labelled, tmp_path / "auto.safetensors", replace(options, arch="auto"), [LOGISTIC], progress=False
    )
    assert auto["selection"]["chosen"] == LOGISTIC
    assert auto["cross_validation"]["out_of_fold"] == own["out_of_fold"]
    assert (
        load_classifier(tmp_path / "auto.safetensors").features
        == load_classifier(tmp_path / "own.safetensors").features
    )
    with pytest.raises(ValueError, match="unknown metrics roughness"):  # refused before any candidate runs,
        check_options(TrainOptions(arch="compact", metrics_features="roughness"))  # not a failed candidate


def _logistic_metadata(name: str) -> dict:
    """The metadata a metrics-logistic file over every metric needs."""
    return {
        "name": name,
        "arch": LOGISTIC,
        "features": list(FEATURES),
        "pipeline": {"data_area": "auto", "features": list(FEATURES)},
        "class_names": ["good", "bad"],
        "temperature": 1.0,
        "review_band": [0.4, 0.6],
    }


def test_forward_limit_times_a_model_file_of_either_kind(rng, tmp_path, make_classifier_file):
    """daemon_e2e's forward limit of a metrics model file (no network module: it once raised
    AttributeError on `classifier.model`) goes through the protocol's probabilities."""
    from afmwatch.networks.metrics_model import save_metrics_model
    from benchmarks.forward_limit import classifier_forward_rate

    x, y = _rows(rng, 40)
    tensors, _ = fit_model(LOGISTIC, x, y)
    meta = _logistic_metadata("metrics")
    metrics_file = save_metrics_model(tmp_path / "metrics.safetensors", tensors, meta)
    network_file = make_classifier_file(tmp_path / "network.safetensors")
    for path in (metrics_file, network_file):
        assert classifier_forward_rate(path, 2, "cpu", 0.0, 1) > 0


# --- files with one scan direction ---------------------------------------------------------------


def test_measure_directions_is_measure_with_and_without_the_retrace(labelled):
    """One measurement gives both rows a metrics model trains on, each equal to what `measure` gives
    a file with both directions and a file with one."""
    from afmwatch.quality import measure, measure_directions
    from afmwatch.readers import read_retrace, read_scan

    scan = read_scan(sorted((labelled / "bad").glob("*.tif"))[0])
    retrace = read_retrace(scan)
    assert retrace is not None  # the synthetic sets keep the retrace beside each scan
    both, alone = measure_directions(scan, retrace)
    assert both == measure(scan, retrace)
    assert alone == measure(scan)
    assert both["trace_retrace_mismatch"] is not None and alone["trace_retrace_mismatch"] is None
    assert measure_directions(scan, None) == (measure(scan), measure(scan))


@pytest.mark.parametrize("arch", [LOGISTIC, BOOSTED])
def test_a_scan_without_retrace_is_judged_by_the_one_direction_model(rng, arch):
    """Training scans with a retrace give two models; a row without the mismatch goes to the one
    trained without it, a row with it to the main one."""
    from afmwatch.networks.metrics_model import (
        ONE_DIRECTION_PREFIX,
        RAW_FUNCTIONS,
        model_log_odds,
        one_direction_features,
    )
    from afmwatch.training.metrics_training import fit_directions

    x, y = _rows(rng, 120)
    mismatch = FEATURES.index("trace_retrace_mismatch")
    x[:, mismatch] = np.where(y == 1, 1.2, 0.2) + 0.3 * rng.normal(size=len(y))  # informative when present
    alone = x.copy()
    alone[:, mismatch] = np.nan
    tensors = fit_directions(arch, x, alone, y, FEATURES)
    one = {k[len(ONE_DIRECTION_PREFIX) :]: v for k, v in tensors.items() if k.startswith(ONE_DIRECTION_PREFIX)}
    assert one, "no one-direction model trained"
    keep = [FEATURES.index(name) for name in one_direction_features(FEATURES)]
    assert mismatch not in keep and len(keep) == len(FEATURES) - 1
    test, _ = _rows(rng, 50)
    test[:, mismatch] = 0.7
    test[::2, mismatch] = np.nan  # every other file holds one direction
    raw = model_log_odds(arch, tensors, FEATURES, test)
    np.testing.assert_allclose(raw[::2], RAW_FUNCTIONS[arch](one, test[::2][:, keep]), atol=1e-12)
    np.testing.assert_allclose(raw[1::2], RAW_FUNCTIONS[arch](tensors, test[1::2]), atol=1e-12)
    imputed = RAW_FUNCTIONS[arch](tensors, test[::2])  # what the main model alone would say
    assert not np.allclose(raw[::2], imputed)


def test_no_one_direction_model_when_no_training_scan_has_a_retrace(rng):
    from afmwatch.networks.metrics_model import has_one_direction_model
    from afmwatch.training.metrics_training import fit_directions

    x, y = _rows(rng, 60)
    x[:, FEATURES.index("trace_retrace_mismatch")] = np.nan
    assert not has_one_direction_model(fit_directions(LOGISTIC, x, x.copy(), y, FEATURES))


def test_a_trained_metrics_model_file_holds_the_one_direction_model(labelled, tmp_path):
    """`afmwatch train` on scans with a retrace writes both models, reports the one-direction model's
    coefficients and validation, and the loaded file judges a copy of a scan without its retrace
    differently from the scan with it (the mismatch is evidence only the first can use)."""
    import shutil

    from afmwatch.networks.metrics_model import ONE_DIRECTION_PREFIX, one_direction_features
    from afmwatch.readers import read_scan
    from afmwatch.training.families import train_model
    from afmwatch.training.options import TrainOptions

    out = tmp_path / "logistic.safetensors"
    report = train_model(labelled, out, TrainOptions(arch=LOGISTIC, val_fraction=0.25), progress=False)
    classifier = load_classifier(out)
    assert isinstance(classifier, MetricsClassifier)
    assert len(classifier.tensors[ONE_DIRECTION_PREFIX + "coef"]) == len(FEATURES) - 1
    assert classifier.metadata["one_direction_features"] == list(one_direction_features(FEATURES))
    assert set(report["one_direction_coefficients"]) == set(one_direction_features(FEATURES))
    assert any(note.startswith("one-direction model") for note in report["notes"])
    original = sorted((labelled / "bad").glob("*.tif"))[0]
    alone = tmp_path / "alone" / original.name  # no retrace/ folder beside it
    alone.parent.mkdir()
    shutil.copyfile(original, alone)
    with_retrace, without = classifier.predict_scans([read_scan(original), read_scan(alone)])
    assert with_retrace.probabilities["bad"] != pytest.approx(without.probabilities["bad"], abs=1e-6)


def test_a_one_direction_model_of_the_wrong_size_is_refused(rng, tmp_path):
    from afmwatch.networks.metrics_model import ONE_DIRECTION_PREFIX, save_metrics_model
    from afmwatch.networks.model_file import ModelError
    from afmwatch.training.metrics_training import fit_directions

    x, y = _rows(rng, 60)
    tensors = fit_directions(LOGISTIC, x, x.copy(), y, FEATURES)
    tensors[ONE_DIRECTION_PREFIX + "coef"] = tensors[ONE_DIRECTION_PREFIX + "coef"][:-1]
    meta = _logistic_metadata("broken")
    with pytest.raises(ModelError, match="one_direction.coefficients"):
        save_metrics_model(tmp_path / "broken.safetensors", tensors, meta)


def test_the_measure_directions_benchmark_prints_a_ratio_per_size(capsys):
    from benchmarks.measure_directions import main

    assert main(["--scans", "1", "--sizes", "64,96"]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    assert [row.split()[0] for row in rows] == ["64", "96"]
    assert all(float(row.split()[-1]) > 0 for row in rows)
