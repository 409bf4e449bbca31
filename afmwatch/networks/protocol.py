"""What every loaded classifier offers, whatever its family: the daemon, `judge_paths` (classify,
evaluate, combine), promotion and the benchmarks use only this, so a new family is usable everywhere
once its class has these attributes and methods (mypy checks that it does)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from afmwatch.config import ReadingConfig
from afmwatch.networks.prediction import Prediction
from afmwatch.scan import Scan


class ClassifierModel(Protocol):
    """A model file loaded for inference (`networks.families.load_classifier`)."""

    path: Path
    name: str
    arch: str
    sha256: str
    pipeline: dict[str, Any]
    class_names: tuple[str, ...]
    temperature: float
    review_band: tuple[float, float]
    device: torch.device
    metadata: dict[str, Any]  # the file's JSON metadata (name, created, report, training data, ...)

    def preprocess(self, scan: Scan) -> torch.Tensor:
        """One scan as the model's input row, on the CPU (thread-safe: reader threads call it)."""
        ...

    def preprocess_task(self) -> tuple[Callable[[Scan, Any], np.ndarray], Any]:
        """`preprocess` as a picklable function and its argument, for the reader processes."""
        ...

    def reading_config(self, reading: ReadingConfig | None = None) -> ReadingConfig:
        """The reading settings this model's input needs (its data-area mode)."""
        ...

    def probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        """Temperature-scaled (N, classes) probabilities of the model alone, on the CPU."""
        ...

    def predict(self, batch: torch.Tensor, metrics: list[dict[str, Any] | None] | None = None) -> list[Prediction]:
        """One Prediction per row of the batch; `metrics`: each row's quality metrics, where known."""
        ...

    def predict_scans(self, scans: list[Scan]) -> list[Prediction]:
        """Preprocess and classify a list of scans as one batch."""
        ...

    def to(self, device: str | torch.device) -> ClassifierModel:
        """The same model on `device` (a family may stay where it runs best)."""
        ...
