"""The kinds of model and how a model file of any of them is loaded: the one registry of model families.

A kind is one record: its name, the architecture names a model file of that kind may carry in its
metadata, and its loader. `load_classifier` dispatches on the file's architecture through these records
only, so the daemon (`daemon.worker.load_checked`), `classify`, `evaluate`, promotion and the benchmarks
load every kind alike. Training extends each kind by name with its fit and cross-validation
(`training.families.TRAINERS`, above this package: the daemon never imports training); a test checks
that every kind here has one there, and nothing more.

A new architecture of an existing kind is one entry in `networks.architectures.ARCHITECTURES` (a
network) or in `networks.metrics_model.RAW_FUNCTIONS` (a metrics model); a new kind is one `ModelKind`
record in `MODEL_KINDS` (a class with the `networks.protocol.ClassifierModel` attributes and methods, and
its loader) plus its trainer in `training.families.TRAINERS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import torch

from afmwatch.networks.architectures import ARCHITECTURES
from afmwatch.networks.classifier import load_network
from afmwatch.networks.metrics_model import METRICS_ARCHS, load_metrics_classifier
from afmwatch.networks.model_file import ModelError, load_model_file
from afmwatch.networks.prediction import Prediction
from afmwatch.networks.protocol import ClassifierModel
from afmwatch.scan import Scan

# (path, tensors, metadata, device) -> the loaded model; every problem a ModelError naming the file
Loader: TypeAlias = Callable[[Path, dict[str, torch.Tensor], dict[str, Any], str], ClassifierModel]

NETWORK, METRICS = "network", "metrics"


@dataclass(frozen=True)
class ModelKind:
    """One kind of model: the architecture names its files carry and how such a file is loaded."""

    name: str  # "network" (sees the image) or "metrics" (sees the quality metrics)
    architectures: tuple[str, ...]
    load: Loader


# Simplest kind first (the order `train --arch auto` lists candidates in before ranking them).
MODEL_KINDS: dict[str, ModelKind] = {
    METRICS: ModelKind(METRICS, tuple(METRICS_ARCHS), load_metrics_classifier),
    NETWORK: ModelKind(NETWORK, tuple(ARCHITECTURES), load_network),
}

# Architecture name -> its kind (every name belongs to exactly one kind; a test checks).
KIND_OF: dict[str, ModelKind] = {arch: kind for kind in MODEL_KINDS.values() for arch in kind.architectures}


def load_classifier(path: str | Path, device: str = "cpu") -> ClassifierModel:
    """Load and check a classifier model file of any kind; every problem is a ModelError naming the file.
    Nothing from the file is run (safetensors + JSON metadata)."""
    path = Path(path)
    tensors, meta = load_model_file(path)
    arch = meta.get("arch")
    if not isinstance(arch, str):  # the network loader's metadata check says what is missing
        return load_network(path, tensors, meta, device)
    if arch not in KIND_OF:
        raise ModelError(path, f"architecture {arch!r} is unknown to this afmwatch (known: {', '.join(KIND_OF)})")
    return KIND_OF[arch].load(path, tensors, meta, device)


def probe(classifier: ClassifierModel) -> Prediction:
    """Run the classifier on a small synthetic surface: proves the file loads, preprocesses and gives
    finite probabilities before a model is put into service."""
    rng = np.random.default_rng(0)
    height = rng.normal(0, 1, (64, 64)).astype(np.float32)
    scan = Scan(height=height, pixel_size_nm=10.0, channel="probe", path=Path("probe"), format="probe")
    prediction = classifier.predict_scans([scan])[0]
    if not all(np.isfinite(p) for p in prediction.probabilities.values()):
        raise ModelError(classifier.path, "the probe scan gave non-finite probabilities")
    return prediction
