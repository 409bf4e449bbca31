"""Classical classifiers over the quality metrics: a logistic regression and gradient-boosted trees.

Labs often have a few dozen labelled scans; a handful of physical measurements (completeness, scars,
clipping, noise, roughness) and a linear model can beat a network there, and every weight is readable.
They are trained with scikit-learn and saved in the same safetensors model file as the networks, with
nothing pickled: the logistic regression as its imputation values, scaling and coefficients, the
boosted model as arrays of tree nodes (feature, threshold, children, missing-value direction, leaf
value) that `predict` walks itself. `load_classifier` hands these files here, so `classify`,
`evaluate`, `promote` and the daemon use them like any network.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import structlog
import torch

from afmwatch import __version__
from afmwatch.config import ReadingConfig
from afmwatch.networks.classifier import CLASS_NAMES, Prediction, to_predictions
from afmwatch.networks.model_file import ModelError, file_sha256, save_model_file
from afmwatch.quality import load_retrace, measure
from afmwatch.scan import Scan

log = structlog.get_logger(__name__)

LOGISTIC, BOOSTED = "metrics-logistic", "metrics-boosted"
METRICS_ARCHS = (LOGISTIC, BOOSTED)

# The metrics the models see (counts of lines say nothing about quality once completeness is known).
FEATURES: tuple[str, ...] = (
    "completeness", "line_artefact_ratio", "scar_fraction", "streak_fraction", "saturation_fraction",
    "constant_run_fraction", "noise_rms", "signal_to_noise", "tilt_deg", "bow", "trace_retrace_mismatch",
    "sq", "sa", "skewness", "z_range", "tip_change_score", "sharpness_change",
)
# Heights and ratios span decades from one sample to the next: the models see their log10.
LOG_FEATURES = frozenset(
    {"line_artefact_ratio", "noise_rms", "signal_to_noise", "bow", "sq", "sa", "z_range", "sharpness_change"}
)
LOG_FLOOR = 1e-4

LOGISTIC_TENSORS = ("impute", "mean", "scale", "coef", "intercept")
TREE_TENSORS = ("baseline", "tree_offsets", "feature", "threshold", "left", "right", "missing_left", "is_leaf",
                "value")


def feature_vector(metrics: dict[str, Any], features: tuple[str, ...] = FEATURES) -> np.ndarray:
    """The model input for one scan's metrics: float64, NaN where a metric does not apply."""
    values = []
    for name in features:
        value = metrics.get(name)
        if value is None or not np.isfinite(value):
            values.append(np.nan)
        elif name in LOG_FEATURES:
            values.append(float(np.log10(max(float(value), LOG_FLOOR))))
        else:
            values.append(float(value))
    return np.asarray(values, dtype=np.float64)


def scan_features(scan: Scan, features: tuple[str, ...] = FEATURES) -> np.ndarray:
    """Measure a scan (with its retrace when the file has one) and return its feature vector."""
    return feature_vector(measure(scan, load_retrace(scan)), features)


# --- the two models as plain arrays ---------------------------------------------------------------


def logistic_raw(tensors: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Log-odds of "bad" for rows of features: missing values imputed, standardised, linear."""
    x = np.where(np.isnan(x), tensors["impute"], x)
    return ((x - tensors["mean"]) / tensors["scale"]) @ tensors["coef"] + tensors["intercept"][0]


def trees_raw(tensors: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Log-odds of "bad": the baseline plus each tree's leaf value, walking every tree as sklearn's
    HistGradientBoosting does (x <= threshold goes left; a missing value goes where training sent it)."""
    offsets = tensors["tree_offsets"]
    feature, threshold = tensors["feature"], tensors["threshold"]
    left, right, missing_left = tensors["left"], tensors["right"], tensors["missing_left"].astype(bool)
    is_leaf, value = tensors["is_leaf"].astype(bool), tensors["value"]
    rows = np.arange(len(x))
    total = np.full(len(x), float(tensors["baseline"][0]))
    for start in offsets[:-1]:
        node = np.full(len(x), start, dtype=np.int64)
        active = ~is_leaf[node]
        while active.any():
            n = node[active]
            v = x[rows[active], feature[n]]
            go_left = np.where(np.isnan(v), missing_left[n], v <= threshold[n])
            node[active] = start + np.where(go_left, left[n], right[n])
            active = ~is_leaf[node]
        total += value[node]
    return total


RAW_FUNCTIONS = {LOGISTIC: logistic_raw, BOOSTED: trees_raw}


def export_logistic(model: Any, impute: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> dict[str, np.ndarray]:
    return {"impute": impute, "mean": mean, "scale": scale, "coef": model.coef_[0].astype(np.float64),
            "intercept": model.intercept_.astype(np.float64)}


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
        from sklearn.linear_model import LogisticRegression

        impute = np.nanmedian(x, axis=0)
        filled = np.where(np.isnan(x), impute, x)
        mean, scale = filled.mean(axis=0), filled.std(axis=0)
        scale = np.where(scale > 1e-12, scale, 1.0)
        model = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000)
        model.fit((filled - mean) / scale, y)
        return export_logistic(model, impute, mean, scale), model
    if arch == BOOSTED:
        from sklearn.ensemble import HistGradientBoostingClassifier

        model = HistGradientBoostingClassifier(
            max_iter=100, learning_rate=0.1, max_leaf_nodes=8, min_samples_leaf=max(2, min(20, len(y) // 10)),
            l2_regularization=1.0, class_weight="balanced", early_stopping=False, random_state=seed,
        )
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):  # OpenMP threads on a few dozen rows only wait on each other (100x slower)
            model.fit(x, y)
        return export_trees(model), model
    raise ValueError(f"unknown metrics model {arch!r} (choose {', '.join(METRICS_ARCHS)})")


# --- the Classifier interface ----------------------------------------------------------------------


class MetricsClassifier:
    """A metrics model loaded for inference, with the networks' Classifier interface."""

    def __init__(self, path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, Any], sha256: str):
        self.path = path
        self.tensors = tensors
        self.metadata = metadata
        self.sha256 = sha256
        self.name: str = metadata["name"]
        self.arch: str = metadata["arch"]
        self.features: tuple[str, ...] = tuple(metadata["features"])
        self.pipeline: dict[str, Any] = metadata["pipeline"]
        self.class_names: tuple[str, ...] = tuple(metadata["class_names"])
        self.temperature = float(metadata["temperature"])
        self.review_band: tuple[float, float] = (float(metadata["review_band"][0]), float(metadata["review_band"][1]))
        self.device = torch.device("cpu")  # a few multiply-adds per scan: the CPU is the right place

    def __repr__(self) -> str:
        return f"MetricsClassifier({self.name!r}, arch={self.arch}, file={self.path.name})"

    def preprocess(self, scan: Scan) -> torch.Tensor:
        """The scan's quality metrics as the model's feature vector (float64, NaN where missing)."""
        return torch.from_numpy(scan_features(scan, self.features))

    def preprocess_task(self) -> tuple[Callable[[Scan, Any], np.ndarray], Any]:
        """`preprocess` as a picklable function and argument (see Classifier.preprocess_task)."""
        return scan_features, self.features

    def reading_config(self, reading: ReadingConfig | None = None) -> ReadingConfig:
        return reading or ReadingConfig()

    def log_odds(self, batch: torch.Tensor) -> np.ndarray:
        x = batch.detach().cpu().numpy().astype(np.float64).reshape(len(batch), -1)
        return RAW_FUNCTIONS[self.arch](self.tensors, x)

    def probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        """Temperature-scaled (N, 2) probabilities of good and bad."""
        p_bad = 1.0 / (1.0 + np.exp(-self.log_odds(batch) / self.temperature))
        return torch.from_numpy(np.stack([1 - p_bad, p_bad], axis=1))

    def predict(self, batch: torch.Tensor, metrics: list[dict[str, Any] | None] | None = None) -> list[Prediction]:
        """Predictions from feature vectors (`metrics` is accepted for the Classifier interface: the
        batch already holds them)."""
        p_bad = self.probabilities(batch)[:, 1].tolist()
        parts = [{"metrics model": float(p)} for p in p_bad]
        return to_predictions(self.probabilities(batch), CLASS_NAMES, self.review_band, parts)

    def predict_scans(self, scans: list[Scan]) -> list[Prediction]:
        if not scans:
            return []
        return self.predict(torch.stack([self.preprocess(scan) for scan in scans]))

    def to(self, device: str | torch.device) -> MetricsClassifier:
        return self  # runs on the CPU whatever the device: nothing here is worth a GPU transfer


def check_metrics_metadata(meta: dict[str, Any], tensors: dict[str, np.ndarray], path: str | Path) -> None:
    missing = [k for k in ("name", "arch", "features", "class_names", "temperature", "review_band") if k not in meta]
    if missing:
        raise ModelError(path, f"not a metrics model: metadata lacks {', '.join(missing)}")
    from afmwatch.quality import METRICS

    unknown = [f for f in meta["features"] if f not in METRICS]
    if unknown:
        raise ModelError(path, f"model uses metrics this afmwatch does not measure: {', '.join(unknown)}")
    needed = LOGISTIC_TENSORS if meta["arch"] == LOGISTIC else TREE_TENSORS
    absent = [k for k in needed if k not in tensors]
    if absent:
        raise ModelError(path, f"{meta['arch']} model file lacks arrays: {', '.join(absent)}")
    if meta["arch"] == LOGISTIC and len(tensors["coef"]) != len(meta["features"]):
        raise ModelError(path, f"{len(tensors['coef'])} coefficients for {len(meta['features'])} features")
    if tuple(meta["class_names"]) != CLASS_NAMES:
        raise ModelError(path, f"class names {meta['class_names']!r}; afmwatch classifiers have {CLASS_NAMES}")


def load_metrics_classifier(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> MetricsClassifier:
    """The classifier for a metrics model file already read by `load_model_file`."""
    path = Path(path)
    arrays = {k: v.numpy() for k, v in tensors.items()}
    check_metrics_metadata(meta, arrays, path)
    return MetricsClassifier(path, arrays, meta, file_sha256(path))


def save_metrics_model(path: str | Path, tensors: dict[str, np.ndarray], metadata: dict[str, Any]) -> Path:
    """Write the arrays and metadata as an afmwatch model file (safetensors + JSON; nothing pickled)."""
    check_metrics_metadata(metadata, tensors, path)
    return save_model_file(path, {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in tensors.items()}, metadata)


# --- training ----------------------------------------------------------------------------------


def _fit_and_score(arch: str, x: np.ndarray, y: np.ndarray, train_idx: np.ndarray, val_idx: np.ndarray,
                   seed: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Train on `train_idx`; return the arrays and the validation log-odds."""
    counts = np.bincount(y[train_idx], minlength=2)
    if (counts == 0).any():
        raise ValueError(f"the training part lacks a class (good: {counts[0]}, bad: {counts[1]} scans)")
    tensors, _ = fit_model(arch, x[train_idx], y[train_idx], seed)
    return tensors, RAW_FUNCTIONS[arch](tensors, x[val_idx])


def _logits(log_odds: np.ndarray) -> np.ndarray:
    """Two-class logits whose softmax is the logistic of the log-odds (for temperature scaling)."""
    return np.stack([np.zeros_like(log_odds), log_odds], axis=1)


def cross_validate_metrics(x: np.ndarray, labels: np.ndarray, hashes: list[str], groups: list[str | None],
                           options: Any) -> dict[str, Any]:
    """K-fold cross-validation of `options.arch` on feature rows `x`, on the same folds (and through the
    same code) as a network trained on the same files with the same seed."""
    from afmwatch.training.train import cross_validate_folds

    labels = np.asarray(labels, dtype=int)

    def fit_fold(k: int, train_idx: np.ndarray, val_idx: np.ndarray) -> tuple[np.ndarray, None]:
        _, raw = _fit_and_score(options.arch, x, labels, train_idx, val_idx, options.seed)
        return _logits(raw), None

    return cross_validate_folds(labels, hashes, groups, options.folds, options.seed, fit_fold)


def train_metrics_arrays(x: np.ndarray, labels: np.ndarray, hashes: list[str], groups: list[str | None],
                         options: Any, cross_validation: dict[str, Any] | None = None,
                         ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Cross-validation (when asked, unless `cross_validation` already holds it for these folds), then
    the final model on the stratified validation split, its temperature and review band."""
    from afmwatch.training.calibration import DEFAULT_REVIEW_BAND, choose_review_band, fit_temperature, softmax
    from afmwatch.training.metrics import classification_metrics
    from afmwatch.training.splits import validation_split
    from afmwatch.training.train import chance_level

    labels = np.asarray(labels, dtype=int)
    report: dict[str, Any] = {"options": asdict(options), "class_names": list(CLASS_NAMES),
                              "pipeline": {"features": list(FEATURES), "log10": sorted(LOG_FEATURES)}}
    if cross_validation is not None:  # already run on these folds (`train --arch auto` chose with it)
        report["cross_validation"] = cross_validation
    elif options.folds and options.folds >= 2:
        report["cross_validation"] = cross_validate_metrics(x, labels, hashes, groups, options)
    if options.val_fraction > 0:
        train_idx, val_idx = validation_split(labels, hashes, groups, options.val_fraction, options.seed)
    else:
        train_idx, val_idx = np.arange(len(labels)), np.arange(0)
    tensors, raw = _fit_and_score(options.arch, x, labels, train_idx, val_idx, options.seed)
    notes = []
    if len(val_idx):
        temperature = fit_temperature(_logits(raw), labels[val_idx])
        p_bad = softmax(_logits(raw), temperature)[:, 1]
        band = tuple(options.review_band) if options.review_band else choose_review_band(p_bad, labels[val_idx])
        validation = classification_metrics(labels[val_idx], p_bad)
        validation.update(p_bad=p_bad.round(6).tolist(), labels=labels[val_idx].tolist(),
                          review_fraction=float(np.mean((p_bad >= band[0]) & (p_bad <= band[1]))))
    else:
        temperature, band, validation = 1.0, tuple(options.review_band or DEFAULT_REVIEW_BAND), None
        notes.append("no validation split (--val-fraction 0): temperature 1, default review band")
    report.update(
        split={"train": len(train_idx), "validation": len(val_idx),
               "train_per_class": np.bincount(labels[train_idx], minlength=2).tolist(),
               "validation_per_class": np.bincount(labels[val_idx], minlength=2).tolist()},
        history=[], best_epoch=None, interrupted=False, weights_origin=f"scikit-learn {options.arch}",
        notes=notes, temperature=temperature, review_band=list(band), validation=validation, device="cpu",
    )
    report["chance_level"] = chance_level(report, options.seed)
    return tensors, report


def train_metrics_folder(data: str | Path, out: str | Path, options: Any, command: str = "",
                         progress: bool = True, cross_validation: dict[str, Any] | None = None) -> dict[str, Any]:
    """`afmwatch train --arch metrics-logistic|metrics-boosted`: measure every labelled scan, train,
    write the model file and the report (same layout as a network's)."""
    from afmwatch.training.data import fingerprint
    from afmwatch.training.report import write_report
    from afmwatch.training.train import _validation_files, load_training_data, model_metadata

    if options.base_model:
        raise ValueError(f"--base-model does not apply to {options.arch}: it trains in seconds from scratch")
    data, out = Path(data), Path(out)
    files, rows, labels, notes, skipped = load_training_data(
        data, options, scan_features, ReadingConfig(data_area=options.data_area), progress)
    started = time.monotonic()
    tensors, report = train_metrics_arrays(np.stack(rows), labels, [f.sha256 for f in files],
                                           [f.group for f in files], options, cross_validation)
    training_data = fingerprint(files, data)
    name = options.name or out.name.split(".")[0]
    metadata = model_metadata(report, name, training_data, command)
    metadata.update(features=list(FEATURES), log10_features=sorted(LOG_FEATURES),
                    pipeline={"data_area": options.data_area, "features": list(FEATURES)})
    save_metrics_model(out, tensors, metadata)
    report.update(model=str(out), name=name, data={"folder": str(data), **training_data, **notes, "skipped": skipped},
                  command=command, created=metadata["created"], afmwatch_version=__version__,
                  training_seconds=round(time.monotonic() - started, 2))
    if options.arch == LOGISTIC:
        report["coefficients"] = dict(zip(FEATURES, np.round(tensors["coef"], 4).tolist()))
    report["validation_files"] = _validation_files(report, files, labels, options)
    write_report(report, out)
    log.info("model_saved", model=str(out), arch=options.arch,
             balanced_accuracy=(report["validation"] or {}).get("balanced_accuracy"))
    return report
