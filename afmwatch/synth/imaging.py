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
    """A good instrument's noise floor (0.05-0.5 nm RMS, AFM-PRIMER), at most a fifth of the features'
    height (Rose's criterion: features five times the noise are seen for certain, so the scan shows its
    surface), but never below what the quietest instrument reaches (0.02-0.05 nm). A surface whose relief
    is a few tenths of a nm (a bare sapphire or mica substrate, unit-cell terraces) is imaged a few times
    above that floor, as real ones are, not cleaner than any instrument can."""
    quietest = log_uniform(rng, 0.02, 0.05)
    return min(log_uniform(rng, 0.05, 0.5), max(0.2 * surface.feature_height_nm, quietest))


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
    # white, 1/f along the rows, row jitter; the slow part of the noise along a row is 1/f to 1/f^2 in
    # power (drift of z within a line): near the noise floor real scans are dominated by it (sapphire.nid,
    # sample_0.jpk: lines differ 3 times more across than along), and their two directions disagree
    weights = rng.dirichlet([2.0, 2.0, 1.0])
    exponent = rng.uniform(1.0, 2.0)
    shadow_on = rng.random() < 0.5
    shadow_gain = float(rng.choice([-1.0, 1.0]) * rng.uniform(0.03, 0.15))
    shadow_px = rng.uniform(0.5, 2.5)
    return {
        "tip_radius_nm": tip_radius,
        "tip_broadening_nm": float(broadening),
        "blur_px": float(blur),
        "noise_rms_nm": noise_floor(rng, surface),
        "noise_colour": {"white": float(weights[0]), "one_over_f": float(weights[1]), "rows": float(weights[2])},
        "noise_exponent": float(exponent),
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
    """The noise floor: white, 1/f^a along the fast axis (a = `noise_exponent`, 1 when not drawn), and
    row-to-row jitter, mixed in the drawn proportions of variance; total RMS `noise_rms_nm`."""
    rows, cols = shape
    colour = imaging["noise_colour"]
    white = rng.standard_normal(shape)
    spectrum = np.fft.rfft(rng.standard_normal(shape), axis=1)
    frequency = np.arange(spectrum.shape[1], dtype=np.float64)
    frequency[0] = np.inf  # no mean: row offsets are the third part
    exponent = float(imaging.get("noise_exponent", 1.0))
    pink = np.fft.irfft(spectrum / frequency ** (exponent / 2), n=cols, axis=1)
    pink /= pink.std() or 1.0
    jitter = np.repeat(rng.standard_normal((rows, 1)), cols, axis=1)
    mixed = np.sqrt(colour["white"]) * white + np.sqrt(colour["one_over_f"]) * pink + np.sqrt(colour["rows"]) * jitter
    return imaging["noise_rms_nm"] * mixed
