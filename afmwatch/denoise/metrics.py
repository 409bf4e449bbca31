"""How close a denoised height map is to the clean one: PSNR, SSIM and a line-artefact measure."""

from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity


def data_range(clean: np.ndarray) -> float:
    return max(float(np.nanmax(clean) - np.nanmin(clean)), 1e-12)


def psnr(result: np.ndarray, clean: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB, the peak being the clean image's peak-to-valley height."""
    mse = float(np.nanmean((result.astype(np.float64) - clean) ** 2))
    return float(10 * np.log10(data_range(clean) ** 2 / max(mse, 1e-30)))


def ssim(result: np.ndarray, clean: np.ndarray) -> float:
    """Structural similarity (scikit-image, 7 x 7 window) over the clean image's height range."""
    return float(
        structural_similarity(clean.astype(np.float64), result.astype(np.float64), data_range=data_range(clean))
    )


def line_artefact(result: np.ndarray, clean: np.ndarray) -> float:
    """Spread of the row offsets left in the result: standard deviation over rows of each row's median
    difference from the clean image (in height units; 0 = no line noise left)."""
    row_medians = np.nanmedian(result.astype(np.float64) - clean, axis=1)
    return float(np.std(row_medians))


def quality(result: np.ndarray, clean: np.ndarray) -> dict[str, float]:
    return {"psnr_db": psnr(result, clean), "ssim": ssim(result, clean), "line_artefact": line_artefact(result, clean)}
