"""Denoiser model files (kind "denoiser") and applying one to a Scan.

A model file is the shared afmwatch format (`afmwatch.networks.model_file`): safetensors weights
with JSON metadata naming the architecture, its options and how it was trained.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import structlog
import torch

from afmwatch.denoise.guard import GuardReport, check
from afmwatch.denoise.networks import (
    NORMALISATIONS,
    DenoisingNetwork,
    build_network,
    denormalise,
    normalise,
    run_network,
)
from afmwatch.medians import row_medians
from afmwatch.networks.model_file import ModelError, file_sha256, load_model_file, save_model_file
from afmwatch.scan import Scan, ScanError

MODEL_KIND = "denoiser"
MODELS_FOLDER = Path(__file__).resolve().parents[2] / "models"
FLIPS: tuple[tuple[int, ...], ...] = ((), (0,), (1,), (0, 1))  # the flips `conv` averages over
DEFAULT_DENOISERS = {
    "unet": "denoiser-unet.safetensors",
    "conv": "denoiser-conv.safetensors",
    "window-mlp": "denoiser-window-mlp.safetensors",
}

log = structlog.get_logger(__name__)


def default_denoiser_path(arch: str = "unet") -> Path:
    """The shipped denoiser of an architecture (`models/denoiser-unet.safetensors` by default)."""
    return MODELS_FOLDER / DEFAULT_DENOISERS[arch]


def save_denoiser(path: str | Path, network: DenoisingNetwork, arch: str, metadata: dict[str, Any]) -> Path:
    """Write a trained network as a denoiser model file; `metadata` adds name, training summary, ..."""
    meta = dict(
        metadata, kind=MODEL_KIND, arch=arch, arch_options=network.config(), normalisation=network.normalisation
    )
    meta.setdefault("name", Path(path).stem)
    return save_model_file(path, network.state_dict(), meta)


@dataclass
class Denoiser:
    """A loaded denoiser: `denoise(scan)` returns a new Scan with the same units and pixel size."""

    network: DenoisingNetwork
    arch: str
    name: str
    path: Path
    sha256: str
    metadata: dict[str, Any]
    device: str = "cpu"

    def denoise(self, scan: Scan) -> Scan:
        """The denoised height map as a new Scan; the input Scan is not changed.

        Missing pixels (NaN) are filled with the median for the network and stay missing in the output.
        """
        rows, cols = scan.shape
        min_size = self.network.min_size
        if rows < min_size or cols < min_size:
            raise ScanError(
                scan.path,
                f"{rows} x {cols} pixels is too small for denoiser {self.name} (needs {min_size} x {min_size})",
            )
        missing = ~np.isfinite(scan.height)
        if missing.all():
            raise ScanError(scan.path, "no valid height values to denoise")
        centre, scale = NORMALISATIONS[self.network.normalisation](scan.height)
        image = normalise(np.where(missing, centre, scan.height), centre, scale)
        result = denormalise(keep_row_alignment(image, self._run(image)), centre, scale)
        result[missing] = np.nan
        meta = dict(scan.metadata, denoiser={"name": self.name, "arch": self.arch, "sha256": self.sha256})
        log.debug("scan_denoised", file=str(scan.path), denoiser=self.name, rows=rows, cols=cols)
        return scan.with_height(result, metadata=meta)

    def denoise_checked(self, scan: Scan) -> tuple[Scan, GuardReport]:
        """The denoised scan and the guard's report on it (`afmwatch.denoise.guard.check`): did the
        denoiser remove only noise, or change the surface?"""
        denoised = self.denoise(scan)
        report = check(scan.height, denoised.height)
        log.debug("denoise_guard", file=str(scan.path), verdict=report.verdict, reasons=report.reasons)
        return denoised, report

    def _run(self, image: np.ndarray) -> np.ndarray:
        """The network on a normalised image; `conv` averages over the image and its up-down,
        left-right and both flips (never transposed: rows stay rows), each flipped back, which
        removes about a third of what noise one pass leaves. `window-mlp` stays Gwyddion's single pass."""
        if not getattr(self.network, "flip_ensemble", False):
            return run_network(self.network, image)
        total = np.zeros(image.shape, dtype=np.float64)
        for axes in FLIPS:
            total += np.flip(run_network(self.network, np.ascontiguousarray(np.flip(image, axes))), axes)
        return (total / len(FLIPS)).astype(np.float32)

    def to(self, device: str) -> Denoiser:
        self.network.to(device)
        self.device = device
        return self


# rows count as aligned when their medians agree within this fraction of the noise (float32 rounding)
ALIGNED_ROWS_TOLERANCE = 1e-3


def keep_row_alignment(image: np.ndarray, denoised: np.ndarray) -> np.ndarray:
    """The denoised image with the input's row alignment, when the input's rows were aligned.

    A scan levelled by median row alignment (afmwatch levels before denoising; Gwyddion's Align Rows)
    has every row's median at one level: the row offsets are already gone, and the levelling has fixed
    where each row sits. A denoiser's own row-offset estimate would move rows again by whatever its
    features suggest (on a scan of tall rings by several noise units), which is not noise removal but a
    different levelling; so the output's rows are aligned by their medians again. Their common level is
    the output's own, not the input's: noise biases the median of each noisy row (the median of a skewed
    height distribution moves when noise is added), the denoised rows' medians much less. Inputs whose rows
    are not aligned (`--no-level`) keep the network's row offsets. Both arrays in noise units."""
    if float(np.ptp(row_medians(image))) > ALIGNED_ROWS_TOLERANCE:
        return denoised
    output_medians = row_medians(denoised)
    return (denoised - (output_medians - np.median(output_medians))[:, None]).astype(np.float32)


def load_denoiser(path: str | Path, device: str = "cpu") -> Denoiser:
    """Load a denoiser model file; ModelError when it is missing, corrupt or not a denoiser."""
    path = Path(path)
    tensors, meta = load_model_file(path)
    if meta.get("kind") != MODEL_KIND:
        raise ModelError(path, f"this is a {meta.get('kind', 'unknown')} model, not a denoiser")
    arch = str(meta.get("arch"))
    try:
        network = build_network(arch, **meta.get("arch_options", {}))
        network.load_state_dict(tensors)
    except (ValueError, TypeError, RuntimeError) as exc:
        raise ModelError(path, f"weights do not fit the {arch} denoiser architecture ({exc})") from None
    network.eval().requires_grad_(False)
    denoiser = Denoiser(
        network=network,
        arch=arch,
        name=meta.get("name", path.stem),
        path=path,
        sha256=file_sha256(path),
        metadata=meta,
    )
    return denoiser.to(device)


def to_device(device: str) -> str:
    """'auto' -> cuda when available, else cpu."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device
