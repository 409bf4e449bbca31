"""The model families: one record per architecture name, saying how a model file of that family is
loaded, trained on a labelled folder and cross-validated on one. `train`, `train --arch auto` and
`--compare` go through these records only, so a new architecture of an existing kind is one entry in
`networks.architectures.ARCHITECTURES` (a network) or in `networks.metrics_model.RAW_FUNCTIONS` with
its fit in `metrics_training.fit_model` (a metrics model), and a new kind of model is its loader in
`networks.classifier.LOADERS` (the daemon loads through there, below training) and its records here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from afmwatch.networks.architectures import ARCHITECTURES
from afmwatch.networks.classifier import LOADERS, Loader
from afmwatch.networks.metrics_model import METRICS_ARCHS
from afmwatch.training import metrics_training, train
from afmwatch.training.options import TrainOptions

# (data, out, options, command, progress, cross_validation) -> the training report
Fit = Callable[[str | Path, str | Path, TrainOptions, str, bool, dict[str, Any] | None], dict[str, Any]]
# (data, options, progress) -> (readable file count, cross-validation results)
CrossValidate = Callable[[Path, TrainOptions, bool], tuple[int, dict[str, Any]]]


@dataclass(frozen=True)
class Family:
    """One architecture: how its model files load, how it is trained (writes the model file and its
    report) and cross-validated, and whether it starts from ImageNet weights (worth comparing only
    when they are given: from scratch such networks lose on a few dozen scans)."""

    name: str
    kind: str  # "network" (sees the image) or "metrics" (sees the quality metrics)
    load: Loader
    fit: Fit
    cross_validate: CrossValidate
    imagenet: bool = False


FAMILIES: dict[str, Family] = {
    **{
        name: Family(
            name,
            "metrics",
            LOADERS[name],
            metrics_training.train_metrics_folder,
            metrics_training.cross_validate_folder,
        )
        for name in METRICS_ARCHS
    },
    **{
        name: Family(
            name,
            "network",
            LOADERS[name],
            train.train_folder,
            train.cross_validate_folder,
            imagenet=arch.torchvision_name is not None,
        )
        for name, arch in ARCHITECTURES.items()
    },
}


def train_model(
    data: str | Path,
    out: str | Path,
    options: TrainOptions,
    command: str = "",
    progress: bool = True,
    cross_validation: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train `options.arch` (None: the base model's architecture, else compact) with its family's fit."""
    family = FAMILIES.get(options.arch or "compact", FAMILIES["compact"])
    return family.fit(data, out, options, command, progress, cross_validation)
