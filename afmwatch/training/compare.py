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

from afmwatch.training.families import FAMILIES
from afmwatch.training.options import TrainOptions
from afmwatch.training.report import write_json
from afmwatch.training.run import check_options

SUMMARY_KEYS = ("folds", "balanced_accuracy", "accuracy", "roc_auc")


def options_for(options: TrainOptions, arch: str) -> TrainOptions:
    """The run's options for another architecture: a fresh model (no base model, no name), ImageNet
    weights only where the architecture takes them."""
    imagenet = arch in FAMILIES and FAMILIES[arch].imagenet
    return replace(options, arch=arch, base_model=None, name=None, pretrained=options.pretrained if imagenet else None)


def cross_validate_arch(data: str | Path, options: TrainOptions, progress: bool = True) -> dict[str, Any]:
    """K-fold cross-validation of `options.arch` on the folder: every fold's metrics, mean ± std of
    balanced accuracy, accuracy and ROC AUC, the out-of-fold P(bad), the readable file count and the
    seconds it took (reading included); no model written."""
    if options.folds < 2:
        raise ValueError("comparing architectures needs --folds K (K >= 2)")
    check_options(options)
    started = time.monotonic()
    assert options.arch is not None, "options_for names the architecture"
    count, cv = FAMILIES[options.arch].cross_validate(Path(data), options, progress)
    return {"count": count, "seconds": round(time.monotonic() - started, 1), **cv}


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
