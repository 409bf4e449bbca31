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
