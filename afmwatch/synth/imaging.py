"""How a working instrument images any surface, good scan or bad: tip-limited resolution, a noise floor
of some colour, and the mild feedback shadows a microscopist accepts.

These are the nuisances a classifier must not learn from, so every scan draws them the same way
whatever its label. All in nm; the fast-scan axis runs along the rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage, signal

from afmwatch.synth.surfaces import Surface, log_uniform
from afmwatch.synth.tips import blunt_tip_image


def noise_floor(rng: np.random.Generator, surface: Surface) -> float:
    """A good instrument's noise floor (0.05-0.5 nm RMS), never more than an eighth of the features."""
    return min(log_uniform(rng, 0.05, 0.5), 0.12 * surface.feature_height_nm)


def draw_imaging(rng: np.random.Generator, surface: Surface) -> dict[str, Any]:
    """The imaging conditions of one scan. The same number of draws every time, so a seed gives the
    same conditions whatever the artefacts."""
    width_px = surface.feature_width_nm / surface.pixel_size_nm
    tip_radius = log_uniform(rng, 2.0, 40.0)  # a new sharp tip to a well-used one
    # the tip's broadening at the features' height, kept to a fraction of a feature (and 12 pixels):
    # rounding, never merging (a blunt_tip artefact broadens by several feature widths)
    broadening = min(
        np.sqrt(2 * tip_radius * surface.feature_height_nm), 0.3 * surface.feature_width_nm, 12 * surface.pixel_size_nm
    )
    blur = min(log_uniform(rng, 0.2, 3.0), 0.2 * width_px)  # finite bandwidth and tip convolution, pixels
    weights = rng.dirichlet([3.0, 1.5, 1.0])  # white, 1/f along the rows, row jitter
    shadow_on = rng.random() < 0.5
    shadow_gain = float(rng.choice([-1.0, 1.0]) * rng.uniform(0.03, 0.15))
    shadow_px = rng.uniform(0.5, 2.5)
    return {
        "tip_radius_nm": tip_radius,
        "tip_broadening_nm": float(broadening),
        "blur_px": float(blur),
        "noise_rms_nm": noise_floor(rng, surface),
        "noise_colour": {"white": float(weights[0]), "one_over_f": float(weights[1]), "rows": float(weights[2])},
        # lag (negative gain: undershoot, a shadow) or overshoot after every edge along the fast axis;
        # it trails the other way in the retrace
        "shadow": {"gain": shadow_gain, "decay_px": shadow_px} if shadow_on else None,
    }


def tip_limited(height: np.ndarray, imaging: dict[str, Any], surface: Surface) -> np.ndarray:
    """The surface as a good tip and feedback loop record it: dilated by the tip, then blurred."""
    out = height
    broadening = imaging["tip_broadening_nm"]
    if broadening > 0.5 * surface.pixel_size_nm:
        radius = broadening**2 / (2 * max(surface.feature_height_nm, 1e-9))
        out = blunt_tip_image(out, radius, surface.pixel_size_nm)
    if imaging["blur_px"] > 0.3:
        out = ndimage.gaussian_filter(out, imaging["blur_px"], mode="nearest")
    return out


def feedback_shadow(z: np.ndarray, imaging: dict[str, Any]) -> np.ndarray:
    """Mild feedback lag or overshoot after edges, along each row in the direction of scanning (rows of
    `z` are in scan order: pass the retrace reversed)."""
    shadow = imaging["shadow"]
    if shadow is None:
        return z
    decay = np.exp(-1.0 / shadow["decay_px"])
    edges = np.diff(z, axis=1, prepend=z[:, :1])
    trail = signal.lfilter([1.0], [1.0, -decay], edges, axis=1)
    return z + shadow["gain"] * (trail - edges)


def instrument_noise(rng: np.random.Generator, shape: tuple[int, int], imaging: dict[str, Any]) -> np.ndarray:
    """The noise floor: white, 1/f along the fast axis, and row-to-row jitter, mixed in the drawn
    proportions of variance; total RMS `noise_rms_nm`."""
    rows, cols = shape
    colour = imaging["noise_colour"]
    white = rng.standard_normal(shape)
    spectrum = np.fft.rfft(rng.standard_normal(shape), axis=1)
    frequency = np.arange(spectrum.shape[1], dtype=np.float64)
    frequency[0] = np.inf  # no mean: row offsets are the third part
    pink = np.fft.irfft(spectrum / np.sqrt(frequency), n=cols, axis=1)
    pink /= pink.std() or 1.0
    jitter = np.repeat(rng.standard_normal((rows, 1)), cols, axis=1)
    mixed = np.sqrt(colour["white"]) * white + np.sqrt(colour["one_over_f"]) * pink + np.sqrt(colour["rows"]) * jitter
    return imaging["noise_rms_nm"] * mixed
