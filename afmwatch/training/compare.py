"""Other architectures cross-validated on the very folds a training run used, so a lab can see
whether a ResNet, the small convnet or a linear model over the quality metrics suits its data best.

The folds depend only on the labelled files, their hashes and groups, the fold count and the seed
(`splits.kfold_splits`), so reading the same folder with the same options gives the same folds for
every architecture; the file count is recorded per architecture to make that visible.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from afmwatch.config import ReadingConfig
from afmwatch.training.options import TrainOptions

SUMMARY_KEYS = ("folds", "balanced_accuracy", "accuracy", "roc_auc")


def cross_validate_arch(data: str | Path, options: TrainOptions, progress: bool = True) -> dict[str, Any]:
    """K-fold summary (mean ± std of balanced accuracy, accuracy, ROC AUC) of `options.arch`; no model written."""
    import numpy as np

    from afmwatch.networks import pipeline as input_pipeline
    from afmwatch.training.train import check_options, cross_validate, load_training_data, make_spec

    if options.folds < 2:
        raise ValueError("comparing architectures needs --folds K (K >= 2)")
    check_options(options)
    data = Path(data)
    if options.arch.startswith("metrics-"):
        from afmwatch.networks.metrics_model import scan_features, train_metrics_arrays

        files, rows, labels, _, _ = load_training_data(
            data, options, scan_features, ReadingConfig(data_area=options.data_area), progress)
        _, report = train_metrics_arrays(np.stack(rows), labels, [f.sha256 for f in files],
                                         [f.group for f in files], options)
        cv = report["cross_validation"]
    else:
        spec = make_spec(options, None)
        files, arrays, labels, _, _ = load_training_data(
            data, options, lambda scan: input_pipeline.prepare(scan, spec), ReadingConfig(data_area=spec["data_area"]),
            progress)
        cv = cross_validate(arrays, labels, [f.sha256 for f in files], [f.group for f in files],
                            options, spec, None, progress)
    return {"count": len(files), **{k: cv[k] for k in SUMMARY_KEYS}}


def compare_architectures(data: str | Path, options: TrainOptions, archs: list[str],
                          progress: bool = True) -> dict[str, dict[str, Any]]:
    """arch -> its K-fold summary on the same folds as `options` (same data, seed, folds, groups)."""
    return {arch: cross_validate_arch(data, replace(options, arch=arch, base_model=None, name=None), progress)
            for arch in archs}
