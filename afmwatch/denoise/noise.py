"""How much noise a scan holds, estimated from the scan itself.

An AFM records one row after the other, a line period (0.1-5 s) apart, so whatever noise the
instrument adds (white noise, 1/f noise along the row, row offsets, short scars) is independent from
one row to the next, while the surface continues from row to row. Differences *across* rows
therefore see all of the noise and, where the surface is smooth at the pixel scale, little of it.
The denoisers are trained to remove exactly this noise, and the guard (`afmwatch.denoise.guard`)
judges what they removed against it.
"""

from __future__ import annotations

import numpy as np

MAD_TO_STD = 1.4826


def _robust_std(values: np.ndarray) -> float:
    """1.4826 x median absolute deviation; the plain standard deviation when that is zero (data
    quantised so coarsely that most differences are exactly 0)."""
    values = values[np.isfinite(values)].astype(np.float64)
    if values.size == 0:
        return 0.0
    spread = MAD_TO_STD * float(np.median(np.abs(values - np.median(values))))
    return spread if spread > 0 else float(values.std())


def noise_rms(height: np.ndarray) -> float:
    """RMS of the noise that changes from row to row (the noise a denoiser should remove), in the
    scan's units: the robust spread of each pixel's difference from the mean of the pixels above and
    below it. For noise independent between rows that difference has 1.5 times the noise's variance
    (1 + 1/4 + 1/4), whatever the noise's colour along the row. Features that change within a few
    rows (edges, small particles) raise only a minority of the differences, which the median ignores.
    """
    z = np.asarray(height, dtype=np.float64)
    if z.ndim != 2 or z.shape[0] < 3:
        return 0.0
    second = z[1:-1] - 0.5 * (z[:-2] + z[2:])
    return _robust_std(second) / np.sqrt(1.5)


def white_noise_rms(height: np.ndarray) -> float:
    """RMS of the white (pixel-to-pixel) noise alone, as `afmwatch.quality` measures it: the robust
    spread of each pixel's difference from the mean of its four neighbours, over sqrt(1.25)."""
    z = np.asarray(height, dtype=np.float64)
    if z.ndim != 2 or min(z.shape) < 3:
        return 0.0
    residual = z[1:-1, 1:-1] - (z[:-2, 1:-1] + z[2:, 1:-1] + z[1:-1, :-2] + z[1:-1, 2:]) / 4
    return _robust_std(residual) / np.sqrt(1.25)
