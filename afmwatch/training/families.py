"""The model families on the training side: `networks.families.MODEL_KINDS` says which architecture
names exist and how each kind loads; here each kind gets, by its name, how it is trained on a labelled
folder and cross-validated on one (`TRAINERS`). `FAMILIES` joins the two per architecture name, and
`train`, `train --arch auto` and `--compare` go through it only. A test checks that every kind has a
trainer and every trainer a kind, so a new kind cannot load without training or train without loading.

A new architecture of an existing kind is one entry in `networks.architectures.ARCHITECTURES` (a
network) or in `networks.metrics_model.RAW_FUNCTIONS` with its fit in `metrics_training.fit_model` (a
metrics model): nothing changes here. A new kind is its `networks.families.ModelKind` record and its
`Trainer` here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from afmwatch.networks.architectures import ARCHITECTURES
from afmwatch.networks.families import KIND_OF, METRICS, NETWORK
from afmwatch.training import metrics_training, train
from afmwatch.training.options import TrainOptions

# (data, out, options, command, progress, cross_validation) -> the training report
Fit = Callable[[str | Path, str | Path, TrainOptions, str, bool, dict[str, Any] | None], dict[str, Any]]
# (data, options, progress) -> (readable file count, cross-validation results)
CrossValidate = Callable[[Path, TrainOptions, bool], tuple[int, dict[str, Any]]]


@dataclass(frozen=True)
class Trainer:
    """How one kind of model is trained (writes the model file and its report) and cross-validated
    (no model written) for the architecture named in the options. Both must fit exactly the same model
    for the same options: `train --arch auto` reports the cross-validation it chose with as the trained
    model's own."""

    fit: Fit
    cross_validate: CrossValidate


TRAINERS: dict[str, Trainer] = {
    METRICS: Trainer(metrics_training.train_metrics_folder, metrics_training.cross_validate_folder),
    NETWORK: Trainer(train.train_folder, train.cross_validate_folder),
}


@dataclass(frozen=True)
class Family:
    """One architecture: its kind, its kind's fit and cross-validation, and whether it starts from
    ImageNet weights (worth comparing only when they are given: from scratch such networks lose on a
    few dozen scans)."""

    name: str
    kind: str
    fit: Fit
    cross_validate: CrossValidate
    imagenet: bool = False


def _imagenet(arch: str) -> bool:
    return arch in ARCHITECTURES and ARCHITECTURES[arch].torchvision_name is not None


FAMILIES: dict[str, Family] = {
    arch: Family(arch, kind.name, TRAINERS[kind.name].fit, TRAINERS[kind.name].cross_validate, _imagenet(arch))
    for arch, kind in KIND_OF.items()
    if kind.name in TRAINERS  # a kind without a trainer loads but cannot be trained (a test refuses it)
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
