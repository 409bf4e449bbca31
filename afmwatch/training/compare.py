"""Other architectures cross-validated on the very folds a training run used, so a lab can see
whether a ResNet, the small convnet or a linear model over the quality metrics suits its data best.

The folds depend only on the labelled files, their hashes and groups, the fold count and the seed
(`splits.kfold_splits`), so reading the same folder with the same options gives the same folds for
every architecture; the file count is recorded per architecture to make that visible.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from afmwatch.config import ReadingConfig
from afmwatch.networks import pipeline as input_pipeline
from afmwatch.networks.architectures import ARCHITECTURES
from afmwatch.networks.metrics_model import METRICS_ARCHS, scan_features
from afmwatch.training.metrics_training import cross_validate_metrics
from afmwatch.training.options import TrainOptions
from afmwatch.training.report import write_json
from afmwatch.training.train import check_options, cross_validate, load_training_data, make_spec

SUMMARY_KEYS = ("folds", "balanced_accuracy", "accuracy", "roc_auc")


def options_for(options: TrainOptions, arch: str) -> TrainOptions:
    """The run's options for another architecture: a fresh model (no base model, no name), ImageNet
    weights only where the architecture takes them."""
    torchvision = arch in ARCHITECTURES and ARCHITECTURES[arch].torchvision_name is not None
    return replace(
        options, arch=arch, base_model=None, name=None, pretrained=options.pretrained if torchvision else None
    )


def cross_validate_arch(data: str | Path, options: TrainOptions, progress: bool = True) -> dict[str, Any]:
    """K-fold cross-validation of `options.arch` on the folder: every fold's metrics, mean ± std of
    balanced accuracy, accuracy and ROC AUC, the out-of-fold P(bad), the readable file count and the
    seconds it took (reading included); no model written."""
    if options.folds < 2:
        raise ValueError("comparing architectures needs --folds K (K >= 2)")
    check_options(options)
    data = Path(data)
    started = time.monotonic()
    if options.arch in METRICS_ARCHS:
        files, rows, labels, _, _ = load_training_data(
            data, options, scan_features, ReadingConfig(data_area=options.data_area), progress
        )
        cv = cross_validate_metrics(
            np.stack(rows), labels, [f.sha256 for f in files], [f.group for f in files], options
        )
    else:
        spec = make_spec(options, None)
        files, arrays, labels, _, _ = load_training_data(
            data,
            options,
            lambda scan: input_pipeline.prepare(scan, spec),
            ReadingConfig(data_area=spec["data_area"]),
            progress,
        )
        cv = cross_validate(
            arrays, labels, [f.sha256 for f in files], [f.group for f in files], options, spec, None, progress
        )
    return {"count": len(files), "seconds": round(time.monotonic() - started, 1), **cv}


def summary(cross_validation: dict[str, Any]) -> dict[str, Any]:
    """One comparison row: file count, seconds and the K-fold means ± std (no per-fold details)."""
    return {k: cross_validation[k] for k in ("count", "seconds", *SUMMARY_KEYS) if k in cross_validation}


def compare_architectures(
    data: str | Path, options: TrainOptions, archs: list[str], progress: bool = True
) -> dict[str, dict[str, Any]]:
    """arch -> its K-fold summary on the same folds as `options` (same data, seed, folds, groups)."""
    return {arch: summary(cross_validate_arch(data, options_for(options, arch), progress)) for arch in archs}


def add_comparison(
    report: dict[str, Any], data: str | Path, options: TrainOptions, archs: list[str], progress: bool = True
) -> None:
    """`train --compare`: cross-validate `archs` on the run's folds and rewrite the report with the
    `comparison` block; the trained model's own folds come first."""
    own_arch = report["options"]["arch"]
    own = {"count": report["data"]["count"], **{k: report["cross_validation"][k] for k in SUMMARY_KEYS}}
    others = compare_architectures(data, replace(options, arch=own_arch), [a for a in archs if a != own_arch], progress)
    report["comparison"] = {own_arch: own, **others}
    write_json(report, report["files"]["report"])
