"""Training the classical models over the quality metrics (scikit-learn) and writing them as the plain
arrays that `afmwatch.networks.metrics_model` walks itself, so nothing is pickled."""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import structlog
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from afmwatch import __version__
from afmwatch.config import ReadingConfig
from afmwatch.networks.metrics_model import (
    BOOSTED,
    LOG_FEATURES,
    LOGISTIC,
    METRICS_ARCHS,
    ONE_DIRECTION_PREFIX,
    direction_columns,
    feature_set,
    feature_vector,
    has_one_direction_model,
    model_log_odds,
    one_direction_features,
    save_metrics_model,
)
from afmwatch.quality import BOTH_DIRECTIONS, measure_directions
from afmwatch.readers import read_retrace
from afmwatch.scan import Scan
from afmwatch.training.data import LabelledFile, fingerprint
from afmwatch.training.metrics import classification_metrics
from afmwatch.training.options import TrainOptions
from afmwatch.training.report import write_report
from afmwatch.training.run import (
    FitPart,
    FitResult,
    cross_validate,
    load_training_data,
    model_metadata,
    train_arrays,
    validation_files,
)

log = structlog.get_logger(__name__)


def export_logistic(model: Any, impute: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "impute": impute,
        "mean": mean,
        "scale": scale,
        "coef": model.coef_[0].astype(np.float64),
        "intercept": model.intercept_.astype(np.float64),
    }


def export_trees(model: Any) -> dict[str, np.ndarray]:
    """sklearn's HistGradientBoostingClassifier (binary) as flat node arrays; child indices are
    relative to their tree's first node."""
    nodes = [predictors[0].nodes for predictors in model._predictors]
    if any(n["is_categorical"].any() for n in nodes):
        raise ValueError("categorical splits are not exported (the metrics are all numerical)")
    offsets = np.cumsum([0] + [len(n) for n in nodes])
    cat = np.concatenate(nodes)
    return {
        "baseline": np.asarray(model._baseline_prediction, dtype=np.float64).ravel()[:1],
        "tree_offsets": offsets.astype(np.int64),
        "feature": cat["feature_idx"].astype(np.int64),
        "threshold": cat["num_threshold"].astype(np.float64),
        "left": cat["left"].astype(np.int64),
        "right": cat["right"].astype(np.int64),
        "missing_left": cat["missing_go_to_left"].astype(np.int64),
        "is_leaf": cat["is_leaf"].astype(np.int64),
        "value": cat["value"].astype(np.float64),
    }


def fit_model(arch: str, x: np.ndarray, y: np.ndarray, seed: int = 0) -> tuple[dict[str, np.ndarray], Any]:
    """Train one model on feature rows `x` and labels `y` (1 = bad); returns its arrays and the
    scikit-learn estimator (for tests that compare the two).

    A metric missing on every training scan (no retrace channel in any file) becomes a constant 0
    column: neither model can learn from it, and a later scan that has the metric is scored as if it
    had not (its coefficient is 0; no tree splits on it). sklearn's binner fails on an all-NaN column."""
    x = np.where(np.isnan(x).all(axis=0), 0.0, x)
    if arch == LOGISTIC:
        impute = np.nanmedian(x, axis=0)
        filled = np.where(np.isnan(x), impute, x)
        mean, scale = filled.mean(axis=0), filled.std(axis=0)
        scale = np.where(scale > 1e-12, scale, 1.0)
        model = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000)
        model.fit((filled - mean) / scale, y)
        return export_logistic(model, impute, mean, scale), model
    if arch == BOOSTED:
        model = HistGradientBoostingClassifier(
            max_iter=100,
            learning_rate=0.1,
            max_leaf_nodes=8,
            min_samples_leaf=max(2, min(20, len(y) // 10)),
            l2_regularization=1.0,
            class_weight="balanced",
            early_stopping=False,
            random_state=seed,
        )

        with threadpool_limits(1):  # OpenMP threads on a few dozen rows only wait on each other (100x slower)
            model.fit(x, y)
        return export_trees(model), model
    raise ValueError(f"unknown metrics model {arch!r} (choose {', '.join(METRICS_ARCHS)})")


def fit_directions(
    arch: str, x: np.ndarray, x_alone: np.ndarray, y: np.ndarray, features: tuple[str, ...], seed: int = 0
) -> dict[str, np.ndarray]:
    """The model on feature rows `x`, and beside it (`ONE_DIRECTION_PREFIX` arrays) one trained on the
    same scans measured without their retrace (`x_alone`, without the both-direction metrics), for files
    that hold one scan direction; none when no training scan has a both-direction metric. Both are
    logistic fits (or boosted trees) of the same labels, so the main model's temperature serves both."""
    tensors, _ = fit_model(arch, x, y, seed)
    both, keep = direction_columns(features)
    if both and not np.isnan(x[:, both]).all():
        one, _ = fit_model(arch, x_alone[:, keep], y, seed)
        tensors.update({ONE_DIRECTION_PREFIX + k: v for k, v in one.items()})
    return tensors


def scan_features_directions(scan: Scan, features: tuple[str, ...]) -> np.ndarray:
    """The scan's feature vector with its retrace, then the one without it (`measure_directions`):
    the rows both models of a metrics model train on, from one measurement."""
    both, alone = measure_directions(scan, read_retrace(scan))
    return np.concatenate([feature_vector(both, features), feature_vector(alone, features)])


def two_class_logits(log_odds: np.ndarray) -> np.ndarray:
    """Two-class logits whose softmax is the logistic of the log-odds (for temperature scaling)."""
    return np.stack([np.zeros_like(log_odds), log_odds], axis=1)


def one_direction_note(
    arch: str, tensors: dict[str, np.ndarray], features: tuple[str, ...], x_alone: np.ndarray, y: np.ndarray
) -> str | None:
    """How the one-direction model does on the validation scans measured without their retrace."""
    if not len(y) or len(set(y.tolist())) < 2 or not has_one_direction_model(tensors):
        return None
    p_bad = 1.0 / (1.0 + np.exp(-model_log_odds(arch, tensors, features, x_alone)))  # no mismatch: its model
    metrics = classification_metrics(y, p_bad)
    return (
        f"one-direction model (files without a retrace; without {', '.join(sorted(BOTH_DIRECTIONS))}): "
        f"balanced accuracy {metrics['balanced_accuracy']:.3f}, ROC AUC {metrics['roc_auc']:.3f} on the "
        "validation scans measured without their retrace"
    )


def metrics_fit_part(rows: np.ndarray, labels: np.ndarray, options: TrainOptions, features: tuple[str, ...]) -> FitPart:
    """The metrics model's fit of one split, as `training.run` calls it (no epochs; the validation
    logits from its log-odds). `rows`: `scan_features_directions` of each scan."""
    labels = np.asarray(labels, dtype=int)
    x, x_alone = rows[:, : len(features)], rows[:, len(features) :]

    def fit_part(train_idx: np.ndarray, val_idx: np.ndarray, desc: str) -> FitResult:
        assert options.arch is not None, "a metrics model is only trained under its own name"
        started = time.monotonic()
        counts = np.bincount(labels[train_idx], minlength=2)
        if (counts == 0).any():
            raise ValueError(f"the training part lacks a class (good: {counts[0]}, bad: {counts[1]} scans)")
        tensors = fit_directions(
            options.arch, x[train_idx], x_alone[train_idx], labels[train_idx], features, options.seed
        )
        raw = model_log_odds(options.arch, tensors, features, x[val_idx])
        notes = [f"scikit-learn {options.arch}"]
        note = one_direction_note(options.arch, tensors, features, x_alone[val_idx], labels[val_idx])
        notes += [note] if note else []
        return FitResult(tensors, [], None, two_class_logits(raw), seconds=time.monotonic() - started, notes=notes)

    return fit_part


def read_folder(
    data: Path, options: TrainOptions, progress: bool = True
) -> tuple[tuple[str, ...], list[LabelledFile], np.ndarray, dict[str, Any], list[dict[str, str]], FitPart]:
    """The labelled folder measured for `options.arch` on the metrics `options.metrics_features` names:
    the features, the readable files, their labels, the reading notes, the skipped files and the fit of
    one split. Training and cross-validation both start here, so they fit the same model."""
    features = feature_set(options.metrics_features)
    files, rows, labels, notes, skipped = load_training_data(
        data,
        options,
        partial(scan_features_directions, features=features),
        ReadingConfig(data_area=options.data_area),
        progress,
    )
    return features, files, labels, notes, skipped, metrics_fit_part(np.stack(rows), labels, options, features)


def cross_validate_folder(data: Path, options: TrainOptions, progress: bool = True) -> tuple[int, dict[str, Any]]:
    """K-fold cross-validation of `options.arch` on the labelled folder's quality metrics (those
    `--metrics-features` names, as training uses), no model written: the readable file count and
    `run.cross_validate`'s results, on the same folds as a network's for the same files and seed."""
    _, files, labels, _, _, fit_part = read_folder(data, options, progress)
    return len(files), cross_validate(labels, [f.sha256 for f in files], [f.group for f in files], options, fit_part)


def metrics_pipeline(features: tuple[str, ...]) -> dict[str, Any]:
    """What a metrics model sees, as its training report records it."""
    return {"features": list(features), "log10": sorted(LOG_FEATURES & set(features))}


def train_metrics_folder(
    data: str | Path,
    out: str | Path,
    options: TrainOptions,
    command: str = "",
    progress: bool = True,
    cross_validation: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`afmwatch train --arch metrics-logistic|metrics-boosted`: measure every labelled scan, train,
    write the model file and the report (same layout as a network's)."""

    if options.base_model:
        raise ValueError(f"--base-model does not apply to {options.arch}: it trains in seconds from scratch")
    data, out = Path(data), Path(out)
    features, files, labels, notes, skipped, fit_part = read_folder(data, options, progress)
    started = time.monotonic()
    hashes, groups = [f.sha256 for f in files], [f.group for f in files]
    result, report = train_arrays(
        labels, hashes, groups, options, fit_part, metrics_pipeline(features), cross_validation
    )
    tensors = result.model
    training_data = fingerprint(files, data)
    name = options.name or out.name.split(".")[0]
    metadata = model_metadata(report, name, training_data, command)
    metadata.update(
        features=list(features),
        log10_features=sorted(LOG_FEATURES & set(features)),
        pipeline={"data_area": options.data_area, "features": list(features)},
    )
    if has_one_direction_model(tensors):
        metadata["one_direction_features"] = list(one_direction_features(features))
    save_metrics_model(out, tensors, metadata)
    report.update(
        model=str(out),
        name=name,
        data={"folder": str(data), **training_data, **notes, "skipped": skipped},
        command=command,
        created=metadata["created"],
        afmwatch_version=__version__,
        training_seconds=round(time.monotonic() - started, 2),
    )
    if options.arch == LOGISTIC:
        report["coefficients"] = dict(zip(features, np.round(tensors["coef"], 4).tolist()))
        if ONE_DIRECTION_PREFIX + "coef" in tensors:
            one = np.round(tensors[ONE_DIRECTION_PREFIX + "coef"], 4).tolist()
            report["one_direction_coefficients"] = dict(zip(one_direction_features(features), one))
    report["validation_files"] = validation_files(report, files, labels, options)
    write_report(report, out)
    log.info(
        "model_saved",
        model=str(out),
        arch=options.arch,
        balanced_accuracy=(report["validation"] or {}).get("balanced_accuracy"),
    )
    return report
