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

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import structlog
import torch

from afmwatch.config import ReadingConfig
from afmwatch.networks.model_file import ModelError, file_sha256, save_model_file
from afmwatch.networks.prediction import CLASS_NAMES, Prediction, to_predictions
from afmwatch.quality import BOTH_DIRECTIONS, METRICS, measure
from afmwatch.readers import read_retrace
from afmwatch.scan import Scan

log = structlog.get_logger(__name__)

LOGISTIC, BOOSTED = "metrics-logistic", "metrics-boosted"
METRICS_ARCHS = (LOGISTIC, BOOSTED)

# The metrics the models see (counts of lines say nothing about quality once completeness is known).
FEATURES: tuple[str, ...] = (
    "completeness",
    "line_artefact_ratio",
    "scar_fraction",
    "streak_fraction",
    "saturation_fraction",
    "constant_run_fraction",
    "noise_rms",
    "signal_to_noise",
    "tilt_deg",
    "bow",
    "trace_retrace_mismatch",
    "sq",
    "sa",
    "skewness",
    "z_range",
    "tip_change_score",
    "sharpness_change",
    "line_break",
    "line_break_band",
)
# Only ratios, fractions and scores: what a model trained on synthetic scans of every scale can carry to
# another instrument (absolute heights, noise in nm, tilt and bow say more about the sample and the setup
# than about the scan's quality). The shipped default uses these; a lab training on its own scans may
# keep them all.
SCALE_FREE_FEATURES: tuple[str, ...] = (
    "completeness",
    "line_artefact_ratio",
    "scar_fraction",
    "streak_fraction",
    "saturation_fraction",
    "constant_run_fraction",
    "signal_to_noise",
    "trace_retrace_mismatch",
    "skewness",
    "tip_change_score",
    "sharpness_change",
    "line_break",
    "line_break_band",
)
FEATURE_SETS = {"all": FEATURES, "scale-free": SCALE_FREE_FEATURES}
# A model trained with the both-direction metrics (`quality.BOTH_DIRECTIONS`) and given the median in
# their place judges a file that holds one direction with a part of its evidence missing, so a metrics
# model also holds a second model trained without them (`ONE_DIRECTION_PREFIX` arrays) for those files.
ONE_DIRECTION_PREFIX = "one_direction."


def feature_set(name: str) -> tuple[str, ...]:
    """The metrics a model sees: a named set ("all", "scale-free") or a comma-separated list."""
    if name in FEATURE_SETS:
        return FEATURE_SETS[name]
    chosen = tuple(part.strip() for part in name.split(",") if part.strip())
    unknown = [f for f in chosen if f not in METRICS]
    if unknown or not chosen:
        raise ValueError(
            f"--metrics-features {name!r}: unknown metrics {', '.join(unknown) or '(none given)'} "
            f"(give all, scale-free or metric names: {', '.join(METRICS)})"
        )
    return chosen


# Heights and ratios span decades from one sample to the next: the models see their log10.
LOG_FEATURES = frozenset(
    {"line_artefact_ratio", "noise_rms", "signal_to_noise", "bow", "sq", "sa", "z_range", "sharpness_change"}
)
LOG_FLOOR = 1e-4

LOGISTIC_TENSORS = ("impute", "mean", "scale", "coef", "intercept")
TREE_TENSORS = ("baseline", "tree_offsets", "feature", "threshold", "left", "right", "missing_left", "is_leaf", "value")


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
    return feature_vector(measure(scan, read_retrace(scan)), features)


def direction_columns(features: tuple[str, ...]) -> tuple[list[int], list[int]]:
    """Indices into `features` of the both-direction metrics, and of the rest (what a model for files
    with one scan direction sees)."""
    both = [i for i, name in enumerate(features) if name in BOTH_DIRECTIONS]
    return both, [i for i in range(len(features)) if i not in both]


def one_direction_features(features: tuple[str, ...]) -> tuple[str, ...]:
    """The features a model for files with one scan direction sees."""
    return tuple(features[i] for i in direction_columns(features)[1])


def has_one_direction_model(tensors: dict[str, Any]) -> bool:
    return any(name.startswith(ONE_DIRECTION_PREFIX) for name in tensors)


def one_direction_tensors(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The arrays of the model for files with one scan direction (empty when the file has none)."""
    return {k[len(ONE_DIRECTION_PREFIX) :]: v for k, v in tensors.items() if k.startswith(ONE_DIRECTION_PREFIX)}


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


def one_direction_rows(features: tuple[str, ...], x: np.ndarray) -> np.ndarray:
    """True for the feature rows (in `features` order) that lack a both-direction metric: their file
    holds one scan direction."""
    both, _ = direction_columns(features)
    return np.isnan(x[:, both]).any(axis=1) if both else np.zeros(len(x), dtype=bool)


def model_log_odds(arch: str, tensors: dict[str, np.ndarray], features: tuple[str, ...], x: np.ndarray) -> np.ndarray:
    """Log-odds of "bad" for feature rows `x` (in `features` order). A row without a both-direction
    metric (its file holds one scan direction) is judged by the one-direction model when the file has
    one, else by the main model with the training median in the metric's place."""
    raw = RAW_FUNCTIONS[arch](tensors, x)
    one = one_direction_tensors(tensors)
    alone = one_direction_rows(features, x)
    if one and alone.any():
        raw[alone] = RAW_FUNCTIONS[arch](one, x[alone][:, direction_columns(features)[1]])
    return raw


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
        return model_log_odds(self.arch, self.tensors, self.features, x)

    def probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        """Temperature-scaled (N, 2) probabilities of good and bad."""
        p_bad = 1.0 / (1.0 + np.exp(-self.log_odds(batch) / self.temperature))
        return torch.from_numpy(np.stack([1 - p_bad, p_bad], axis=1))

    def predict(self, batch: torch.Tensor, metrics: list[dict[str, Any] | None] | None = None) -> list[Prediction]:
        """Predictions from feature vectors (`metrics` is accepted for the Classifier interface: the
        batch already holds them)."""
        probabilities = self.probabilities(batch)
        parts = [{"metrics model": float(p)} for p in probabilities[:, 1].tolist()]
        return to_predictions(probabilities, CLASS_NAMES, self.review_band, parts)

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
    unknown = [f for f in meta["features"] if f not in METRICS]
    if unknown:
        raise ModelError(path, f"model uses metrics this afmwatch does not measure: {', '.join(unknown)}")
    needed = LOGISTIC_TENSORS if meta["arch"] == LOGISTIC else TREE_TENSORS
    parts = [("", tensors, tuple(meta["features"]))]
    if has_one_direction_model(tensors):
        parts.append((ONE_DIRECTION_PREFIX, one_direction_tensors(tensors), one_direction_features(meta["features"])))
    for prefix, arrays, features in parts:
        absent = [prefix + k for k in needed if k not in arrays]
        if absent:
            raise ModelError(path, f"{meta['arch']} model file lacks arrays: {', '.join(absent)}")
        if meta["arch"] == LOGISTIC and len(arrays["coef"]) != len(features):
            raise ModelError(path, f"{len(arrays['coef'])} {prefix}coefficients for {len(features)} features")
    if tuple(meta["class_names"]) != CLASS_NAMES:
        raise ModelError(path, f"class names {meta['class_names']!r}; afmwatch classifiers have {CLASS_NAMES}")


def load_metrics_classifier(
    path: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any], device: str = "cpu"
) -> MetricsClassifier:
    """The classifier for a metrics model file already read by `load_model_file` (on the CPU whatever
    `device` says: see `MetricsClassifier.to`)."""
    path = Path(path)
    arrays = {k: v.numpy() for k, v in tensors.items()}
    check_metrics_metadata(meta, arrays, path)
    return MetricsClassifier(path, arrays, meta, file_sha256(path))


def save_metrics_model(path: str | Path, tensors: dict[str, np.ndarray], metadata: dict[str, Any]) -> Path:
    """Write the arrays and metadata as an afmwatch model file (safetensors + JSON; nothing pickled)."""
    check_metrics_metadata(metadata, tensors, path)
    return save_model_file(path, {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in tensors.items()}, metadata)
