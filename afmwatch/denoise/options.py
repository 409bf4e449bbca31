"""The denoiser training options (light to import: the command line builds its help text from the defaults)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TrainOptions:
    arch: str = "conv"
    steps: int = 1500
    batch_size: int = 8
    patch_rows: int = 32
    patch_cols: int = 128
    learning_rate: float | None = None  # None: the architecture's default (DEFAULT_LEARNING_RATES)
    seed: int = 0
    val_fraction: float = 0.15
    device: str = "cpu"
    arch_options: dict[str, Any] = field(default_factory=dict)
    half_scale: bool = False  # also train on every pair at half scale (smaller particles, same noise)
    clip_grad_norm: float | None = None  # None: the architecture's default (DEFAULT_CLIP_GRAD_NORM)
    init: str | None = None  # start from this denoiser file's weights (fine-tuning) instead of random ones
    time_limit_s: float | None = None  # finish the learning-rate schedule within this many seconds
