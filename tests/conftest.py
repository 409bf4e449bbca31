"""Shared fixtures: the real sample folder (through AFMWATCH_SAMPLES) and small synthetic surfaces."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def samples() -> Path:
    """The shared real-instrument samples; CI sets AFMWATCH_SAMPLES and fails without it."""
    folder = os.environ.get("AFMWATCH_SAMPLES")
    if not folder:
        candidate = Path(__file__).resolve().parents[2] / "shared" / "afm-samples"
        folder = str(candidate) if candidate.is_dir() else ""
    if not folder or not Path(folder).is_dir():
        pytest.fail("AFMWATCH_SAMPLES is not set to the afm-samples folder (see README, Tests)")
    return Path(folder)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def make_classifier_file():
    """Factory: write a small, untrained (seeded) classifier model file; for tests that need any valid model."""

    def make(path: Path, arch: str = "convnet", crop: int = 32, review_band=(0.4, 0.6), seed: int = 0) -> Path:
        import torch

        from afmwatch.networks.architectures import get_architecture
        from afmwatch.networks.classifier import save_classifier
        from afmwatch.networks.pipeline import make_pipeline

        torch.manual_seed(seed)
        architecture = get_architecture(arch)
        model = architecture.build(2, crop, None)
        spec = make_pipeline(architecture.channels, architecture.normalise, resize=crop + crop // 8, crop=crop)
        meta = {
            "name": Path(path).name.split(".")[0],
            "arch": arch,
            "pipeline": spec,
            "class_names": ["good", "bad"],
            "temperature": 1.0,
            "review_band": list(review_band),
        }
        return save_classifier(path, model, meta)

    return make


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny untrained classifier file (`daemon_support.tiny_model`), one per test module that asks:
    the daemon's tests need a real model file, not a good one."""
    from daemon_support import tiny_model

    return tiny_model(tmp_path_factory.mktemp("model") / "tiny.safetensors")
