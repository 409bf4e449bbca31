"""A training run, whatever the model family: the options checked, the labelled files read, K-fold
cross-validation, the stratified validation split, the final fit, its temperature and review band, the
chance-level check and the model file's metadata. A family (`training.families`) brings only its fit
of one split (a `FitPart`): the networks' PyTorch loop (`training.train`) or the metrics models'
scikit-learn fit (`training.metrics_training`), so every family is split, cross-validated and
reported alike."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from afmwatch import __version__
from afmwatch.config import ReadingConfig
from afmwatch.networks.metrics_model import feature_set
from afmwatch.networks.prediction import CLASS_NAMES
from afmwatch.training.calibration import DEFAULT_REVIEW_BAND, choose_review_band, fit_temperature, softmax
from afmwatch.training.data import LabelledFile, collect_files, load_prepared
from afmwatch.training.metrics import bootstrap_interval, classification_metrics
from afmwatch.training.options import TrainOptions
from afmwatch.training.splits import kfold_splits, validation_split

log = structlog.get_logger(__name__)


@dataclass
class FitResult:
    """One fit of a family on one split: the trained model (a network, or a metrics model's arrays), its
    epochs (none for a metrics model), its logits on the validation part, and notes (the first says
    where its starting weights came from)."""

    model: Any
    history: list[dict[str, float | None]]
    best_epoch: int | None
    val_logits: np.ndarray
    interrupted: bool = False
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    device: str = "cpu"


# A family's fit of one split: (train indices, validation indices, progress label) -> FitResult.
FitPart = Callable[[np.ndarray, np.ndarray, str], FitResult]


def check_options(options: TrainOptions) -> None:
    """ValueError naming every option out of range (before minutes of reading and training)."""
    problems = []
    if options.epochs < 1:
        problems.append(f"--epochs must be at least 1 (got {options.epochs})")
    if options.batch_size < 1:
        problems.append(f"--batch-size must be at least 1 (got {options.batch_size})")
    if options.lr <= 0:
        problems.append(f"--lr must be positive (got {options.lr})")
    if not 0 <= options.val_fraction < 1:
        problems.append(f"--val-fraction must be in [0, 1) (got {options.val_fraction})")
    if options.folds == 1 or options.folds < 0:
        problems.append(f"--folds must be 0 (none) or at least 2 (got {options.folds})")
    if options.review_band and not 0 <= options.review_band[0] <= options.review_band[1] <= 1:
        problems.append(f"--review-band needs 0 <= LOW <= HIGH <= 1 (got {list(options.review_band)})")
    try:  # checked for every run: --compare and auto train metrics models beside any network
        feature_set(options.metrics_features)
    except ValueError as exc:
        problems.append(str(exc))
    if problems:
        raise ValueError("; ".join(problems))


def mean_std(values: list[float | None]) -> dict[str, float | None]:
    present = [v for v in values if v is not None]
    if not present:
        return {"mean": None, "std": None}
    return {"mean": float(np.mean(present)), "std": float(np.std(present, ddof=1)) if len(present) > 1 else 0.0}


def cross_validate(
    labels: np.ndarray, hashes: list[str], groups: list[str | None], options: TrainOptions, fit_part: FitPart
) -> dict[str, Any]:
    """K stratified folds, each validated once by `fit_part`: per-fold metrics (after temperature
    scaling), mean ± std of balanced accuracy, accuracy and ROC AUC, and every scan's out-of-fold
    P(bad) (for the chance-level check). Every family goes through here, so all are cross-validated
    alike, on the same folds for the same files and seed."""
    labels = np.asarray(labels, dtype=int)
    per_fold = []
    out_of_fold = np.full(len(labels), np.nan)
    for k, (train_idx, val_idx) in enumerate(kfold_splits(labels, hashes, groups, options.folds, options.seed)):
        result = fit_part(train_idx, val_idx, f"fold {k + 1}")
        temperature = fit_temperature(result.val_logits, labels[val_idx])
        p_bad = softmax(result.val_logits, temperature)[:, 1]
        out_of_fold[val_idx] = p_bad
        metrics = classification_metrics(labels[val_idx], p_bad)
        metrics.update(fold=k + 1, train_count=len(train_idx), best_epoch=result.best_epoch, temperature=temperature)
        per_fold.append(metrics)
        log.info("fold_done", fold=k + 1, balanced_accuracy=metrics["balanced_accuracy"], roc_auc=metrics["roc_auc"])
    summary = {key: mean_std([m[key] for m in per_fold]) for key in ("balanced_accuracy", "accuracy", "roc_auc")}
    return {
        "folds": options.folds,
        "per_fold": per_fold,
        **summary,
        "out_of_fold": {"labels": labels.tolist(), "p_bad": out_of_fold.round(6).tolist()},
    }


def train_arrays(
    labels: np.ndarray,
    hashes: list[str],
    groups: list[str | None],
    options: TrainOptions,
    fit_part: FitPart,
    pipeline: dict[str, Any],
    cross_validation: dict[str, Any] | None = None,
) -> tuple[FitResult, dict[str, Any]]:
    """Cross-validation (when asked, unless `cross_validation` already holds it for these folds), then
    the final fit on a stratified validation split, its temperature and review band, and whether it
    is at chance level; returns the fit and the report (without data and file details). `pipeline`:
    what the model sees, as the report records it."""
    check_options(options)
    labels = np.asarray(labels, dtype=int)
    report: dict[str, Any] = {"options": asdict(options), "pipeline": pipeline, "class_names": list(CLASS_NAMES)}
    if cross_validation is not None:  # already run on these folds (`train --arch auto` chose with it)
        report["cross_validation"] = cross_validation
    elif options.folds and options.folds >= 2:
        report["cross_validation"] = cross_validate(labels, hashes, groups, options, fit_part)
    if options.val_fraction > 0:
        train_idx, val_idx = validation_split(labels, hashes, groups, options.val_fraction, options.seed)
    else:
        train_idx, val_idx = np.arange(len(labels)), np.arange(0)
    result = fit_part(train_idx, val_idx, "training")
    if len(val_idx):
        temperature = fit_temperature(result.val_logits, labels[val_idx])
        p_bad = softmax(result.val_logits, temperature)[:, 1]
        band = tuple(options.review_band) if options.review_band else choose_review_band(p_bad, labels[val_idx])
        validation = classification_metrics(labels[val_idx], p_bad)
        validation["uncalibrated_p_bad"] = softmax(result.val_logits)[:, 1].round(6).tolist()
        validation["p_bad"] = p_bad.round(6).tolist()
        validation["labels"] = labels[val_idx].tolist()
        validation["review_fraction"] = float(np.mean((p_bad >= band[0]) & (p_bad <= band[1])))
    else:
        temperature, band, validation = 1.0, tuple(options.review_band or DEFAULT_REVIEW_BAND), None
        selection = "no checkpoint selection, " if result.history else ""  # only a fit with epochs has one
        result.notes.append(f"no validation split (--val-fraction 0): {selection}temperature 1, default review band")
    report.update(
        split={
            "train": len(train_idx),
            "validation": len(val_idx),
            "train_per_class": np.bincount(labels[train_idx], minlength=2).tolist(),
            "validation_per_class": np.bincount(labels[val_idx], minlength=2).tolist(),
        },
        history=result.history,
        best_epoch=result.best_epoch,
        interrupted=result.interrupted,
        training_seconds=round(result.seconds, 1),
        weights_origin=result.notes[0],
        notes=result.notes[1:],
        temperature=temperature,
        review_band=list(band),
        validation=validation,
        device=result.device,
    )
    report["chance_level"] = chance_level(report, options.seed)
    return result, report


# A run whose balanced accuracy is below this, or whose 95 % interval reaches down to 0.5, has not
# shown that it beats guessing: on a few dozen scans 0.6 is two or three lucky calls above chance.
CHANCE_BELOW = 0.6

CHANCE_RULE = (
    f"balanced accuracy (cross-validated mean, else validation) below {CHANCE_BELOW}, or its 95 % "
    "bootstrap interval (over the out-of-fold, else the validation predictions) reaching 0.5"
)


def chance_level(report: dict[str, Any], seed: int = 0) -> dict[str, Any] | None:
    """Whether the run has not shown that it beats chance (`CHANCE_RULE`), from its cross-validation
    when it has one, else from its validation split; None when it has neither. Logs a warning event
    when at chance: such a model sorts scans no better than a coin."""
    cv, validation = report.get("cross_validation"), report.get("validation")
    if cv:
        source, value = "cross-validation", cv["balanced_accuracy"]["mean"]
        labels, p_bad = cv["out_of_fold"]["labels"], cv["out_of_fold"]["p_bad"]
    elif validation:
        source, value = "validation", validation["balanced_accuracy"]
        labels, p_bad = validation["labels"], validation["p_bad"]
    else:
        return None
    interval = bootstrap_interval(np.asarray(labels), np.asarray(p_bad), seed=seed)
    at_chance = value is None or value < CHANCE_BELOW or interval is None or interval[0] <= 0.5
    result = {
        "at_chance": bool(at_chance),
        "measured_on": source,
        "balanced_accuracy": value,
        "interval_95": list(interval) if interval else None,
        "rule": CHANCE_RULE,
    }
    if at_chance:
        log.warning(
            "training_at_chance",
            measured_on=source,
            balanced_accuracy=value,
            interval_95=result["interval_95"],
            arch=report["options"]["arch"],
        )
    return result


def model_metadata(report: dict[str, Any], name: str, training_data: dict[str, Any], command: str) -> dict[str, Any]:
    """What goes into the model file beside the weights."""
    validation = report["validation"] or {}
    summary = {
        k: validation.get(k)
        for k in (
            "count",
            "accuracy",
            "balanced_accuracy",
            "precision",
            "recall",
            "confusion_matrix",
            "roc_auc",
            "review_fraction",
        )
    }
    metrics: dict[str, Any] = {"validation": summary if report["validation"] else None}
    if "cross_validation" in report:
        cv = report["cross_validation"]
        metrics["cross_validation"] = {k: cv[k] for k in ("folds", "balanced_accuracy", "accuracy", "roc_auc")}
    if report.get("chance_level"):
        metrics["at_chance"] = report["chance_level"]["at_chance"]
    return {
        "name": name,
        "arch": report["options"]["arch"],
        "pipeline": report["pipeline"],
        "class_names": report["class_names"],
        "temperature": report["temperature"],
        "review_band": report["review_band"],
        "training_data": training_data,
        "metrics": metrics,
        "training": {
            "options": report["options"],
            "best_epoch": report["best_epoch"],
            "interrupted": report["interrupted"],
            "weights_origin": report["weights_origin"],
        },
        "afmwatch_version": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
    }


def load_training_data(
    data: Path,
    options: TrainOptions,
    prepare: Any,
    reading: ReadingConfig,
    progress: bool = True,
) -> tuple[list[LabelledFile], list[np.ndarray], np.ndarray, dict[str, Any], list[dict[str, str]]]:
    """The readable labelled files under `data`, `prepare` of each (first frame), their labels, notes
    on what was left out and the unreadable files; ValueError unless both classes are there."""
    files, notes = collect_files(data, options.group_by)
    log.info("training_data_found", folder=str(data), files=len(files), arch=options.arch)
    arrays, kept, skipped = load_prepared(files, prepare, reading, workers=options.threads or 2, progress=progress)
    files = [files[i] for i in kept]
    labels = np.array([f.label for f in files], dtype=int)
    if len(files) < 4 or len(set(labels.tolist())) < 2:
        raise ValueError(
            f"{data}: need readable scans in both good/ and bad/ (found {len(files)} readable, "
            f"{int((labels == 0).sum())} good, {int((labels == 1).sum())} bad)"
        )
    return files, arrays, labels, notes, skipped


def validation_files(
    report: dict[str, Any], files: list[LabelledFile], labels: np.ndarray, options: TrainOptions
) -> list[str]:
    """Which files validated the final model (so staff can look at the mistakes)."""
    if not report["split"]["validation"]:
        return []
    _, val_idx = validation_split(
        labels, [f.sha256 for f in files], [f.group for f in files], options.val_fraction, options.seed
    )
    return [str(files[i].path) for i in val_idx]
