"""The model families and how each is trained: one record per architecture name, so a new family is
one entry here (its fit) and one in `networks.classifier.load_classifier` (its loading)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from afmwatch.networks.architectures import ARCHITECTURES
from afmwatch.networks.metrics_model import METRICS_ARCHS
from afmwatch.training.metrics_training import train_metrics_folder
from afmwatch.training.options import TrainOptions
from afmwatch.training.train import train_folder


@dataclass(frozen=True)
class Family:
    """How one architecture is trained on a labelled folder (writes the model file and its report)."""

    name: str
    kind: str  # "network" (sees the image) or "metrics" (sees the quality metrics)
    fit: Callable[..., dict[str, Any]]


FAMILIES: dict[str, Family] = {
    **{name: Family(name, "network", train_folder) for name in ARCHITECTURES},
    **{name: Family(name, "metrics", train_metrics_folder) for name in METRICS_ARCHS},
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
