"""The training options (light to import: the command line builds its help text from the defaults)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class TrainOptions:
    """Every training option; all of them are recorded in the report and the model file."""

    arch: str | None = None  # None: the base model's architecture, else "compact"
    optimizer: str = "adam"  # sgd | adam
    lr: float = 1e-3
    momentum: float = 0.9  # SGD only
    weight_decay: float = 0.0
    batch_size: int = 16
    epochs: int = 15
    scheduler: str = "step"  # step (size 7, gamma 0.1) | plateau (patience 3) | cosine | none
    val_fraction: float = 0.25
    folds: int = 0  # K >= 2: stratified cross-validation before the final training
    seed: int = 0
    device: str = "auto"
    base_model: str | None = None
    pretrained: str | None = None
    group_by: str | None = None
    image_size: int = 224
    resize: int = 256
    normalise: str | None = None  # None: what the architecture expects
    data_area: Literal["auto", "crop-right-30", "whole"] = "auto"
    # networks: a polynomial background removed after plane and row levelling. Raw scans are bowed (the
    # scanner moves on an arc) and microscopists remove it before judging a scan, so the network does too
    level_polynomial: int = 2
    jitter: float = 0.0
    review_band: tuple[float, float] | None = None  # None: chosen from validation
    name: str | None = None
    threads: int | None = None
    metrics_features: str = "all"  # metrics models: "all", "scale-free" or a comma-separated list of metrics
