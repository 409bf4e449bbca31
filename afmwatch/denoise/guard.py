"""The guard on every denoised copy: did the denoiser remove only noise, or did it change the surface?

It compares the denoised scan with its input, in units of the noise the input itself holds
(`afmwatch.denoise.noise.noise_rms`: the noise that changes from row to row, which is all the noise an
AFM adds and all that a denoiser should remove). Four looks at the same question:

- **the removed part** (input - output) should be noise: about as large as the noise estimate
  (`removed_to_noise`) and without structure that continues from row to row, since the instrument's
  noise is independent between rows and the surface is not (`structure_to_noise`: the RMS of the part
  of the removed layer that rows two apart share; `local_structure_to_noise`: the same in the worst
  16 x 16 pixel patch, where a few invented or erased particles show);
- **roughness**: the output's Sq over the input's Sq with the noise taken out,
  sqrt(Sq_in^2 - noise^2) (`height_scale`; 1 = heights kept), and never above the input's own Sq;
- **height histogram**: the output's heights plus fresh noise of the estimated RMS should be
  distributed as the input's (`histogram_shift`: Wasserstein distance, in noise RMS);
- **power spectrum below the noise scale**: across the rows the noise is white, so wherever the
  input's spectrum stands well above that floor the surface dominates, and there the output's
  amplitude should equal the input's with the floor removed, and never exceed the input's
  (`spectrum_ratio_min`, `spectrum_ratio_max`, per octave).

A copy may lie anywhere between the surface without its noise and the input itself (a denoiser that
removes too little changes nothing); beyond either end it changed the surface.

A copy that fails any of them changed the surface beyond what the noise explains: it is not a
measurement, and is written with a warning in its name and in the sidecar (`afmwatch.denoise.write`).
Nor is a copy whose input is mostly noise (the surface's Sq under `signal_to_noise` x the noise): there
the heights cannot be checked, and a denoiser may have weakened them unseen (real scans under heavy
noise lost 12-16 % of their height scale so), so such a copy is `unverified`, named so too.
The limits (`LIMITS`) were chosen on synthetic scans of every surface kind with known noise (see
models/DENOISERS.md, The guard), never on the real samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from afmwatch.denoise.noise import noise_rms

FAITHFUL, CHANGED, UNVERIFIED = "faithful", "changed", "unverified"
# in the name of a copy that is not a measurement, by verdict (afmwatch.denoise.write)
VERDICT_TAGS = {CHANGED: "SURFACE-CHANGED", UNVERIFIED: "UNVERIFIED"}


@dataclass(frozen=True)
class Limits:
    """What a denoiser may do to a scan and still count as having removed only noise."""

    removed_to_noise: float = 1.6  # RMS of the removed part, in noise RMS (a perfect denoiser: about 1)
    structure_to_noise: float = 0.5  # RMS of what neighbouring rows share in the removed part, in noise RMS
    local_structure_to_noise: float = 1.0  # the same in the worst 16 x 16 pixel patch
    height_scale: tuple[float, float] = (0.9, 1.1)  # Sq out / Sq of the input without its noise; / Sq of the input
    histogram_shift: float = 0.75  # Wasserstein distance of the height histograms, in noise RMS
    spectrum_ratio: tuple[float, float] = (0.8, 1.25)  # band amplitude out / in without its noise; / in
    signal_to_noise: float = 2.0  # Sq of the surface over the noise below which heights are not judged
    band_signal_power: float = 10.0  # input power over the noise floor for a band to count as surface


LIMITS = Limits()
MAX_PIXELS = 1 << 18  # the histogram compares at most this many evenly spaced pixels (sorting is the cost)
ROW_LAG = 2  # rows apart at which the removed part is compared with itself
TILE = 16  # pixels: the patches in which the removed part is searched for single features


@dataclass(frozen=True)
class GuardReport:
    """The guard's numbers for one denoised scan and its verdict (`faithful`, `changed` or `unverified`,
    with reasons)."""

    verdict: str
    reasons: list[str]
    noise_rms: float
    removed_rms: float
    removed_to_noise: float | None
    structure_to_noise: float | None
    local_structure_to_noise: float | None
    sq_in: float
    sq_out: float
    height_scale: float | None
    histogram_shift: float | None
    spectrum_ratio_min: float | None
    spectrum_ratio_max: float | None
    spectrum_bands: list[dict[str, Any]] = field(default_factory=list)
    limits: dict[str, Any] = field(default_factory=dict)

    @property
    def faithful(self) -> bool:
        return self.verdict == FAITHFUL

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "reasons": list(self.reasons),
            "noise_rms": self.noise_rms,
            "removed_rms": self.removed_rms,
            "removed_to_noise": self.removed_to_noise,
            "structure_to_noise": self.structure_to_noise,
            "local_structure_to_noise": self.local_structure_to_noise,
            "sq_in": self.sq_in,
            "sq_out": self.sq_out,
            "height_scale": self.height_scale,
            "histogram_shift": self.histogram_shift,
            "spectrum_ratio_min": self.spectrum_ratio_min,
            "spectrum_ratio_max": self.spectrum_ratio_max,
            "spectrum_bands": [dict(b) for b in self.spectrum_bands],
            "limits": dict(self.limits),
        }

    def numbers(self) -> str:
        """The numbers the verdict rests on, in words short enough for a terminal line or a caption."""

        def num(value: float | None) -> str:
            return "-" if value is None else f"{value:.2f}"

        return (
            f"removed {num(self.removed_to_noise)} x noise ({self.noise_rms:.3g}), structure "
            f"{num(self.structure_to_noise)} (patch {num(self.local_structure_to_noise)}) x noise, height scale "
            f"{num(self.height_scale)}, histogram {num(self.histogram_shift)} x noise, spectrum at least "
            f"{num(self.spectrum_ratio_min)} of the surface's, at most {num(self.spectrum_ratio_max)} of the input's"
        )

    def summary(self) -> str:
        """One line: the verdict, the numbers, and unless faithful the reasons."""
        text = f"{self.verdict}: {self.numbers()}"
        return text if self.faithful else f"{text} -- {'; '.join(self.reasons)}"


def _finite_pair(before: np.ndarray, after: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Both images as float64 with missing pixels (in either) set to the input's median, and the mask."""
    x = np.asarray(before, dtype=np.float64)
    y = np.asarray(after, dtype=np.float64)
    valid = np.isfinite(x) & np.isfinite(y)
    if not valid.all():
        fill = float(np.median(x[valid])) if valid.any() else 0.0
        x, y = np.where(valid, x, fill), np.where(valid, y, fill)
    return x, y, valid


def shared_by_rows(removed: np.ndarray, lag: int = ROW_LAG) -> np.ndarray:
    """Each pixel of `removed` times the pixel `lag` rows below, after each row's median is taken out
    (row offsets are noise): noise independent between rows averages to 0, a feature taken away does
    not. Two rows apart, so that a scar one or two rows high removed by the denoiser counts as noise."""
    r = removed - np.median(removed, axis=1, keepdims=True)
    return r[lag:] * r[:-lag]


def row_structure(removed: np.ndarray) -> float:
    """RMS of the part of `removed` that rows share: sqrt of the covariance of rows `ROW_LAG` apart."""
    if removed.shape[0] <= ROW_LAG:
        return 0.0
    return float(np.sqrt(max(float(np.mean(shared_by_rows(removed))), 0.0)))


def local_structure(removed: np.ndarray, tile: int = TILE) -> float:
    """The largest `row_structure` of any `tile` x `tile` patch: a few invented or erased particles
    hardly change the whole image's numbers, but dominate their own patch."""
    if removed.shape[0] <= ROW_LAG:
        return 0.0
    shared = shared_by_rows(removed)
    rows, cols = (shared.shape[0] // tile) * tile, (shared.shape[1] // tile) * tile
    if rows == 0 or cols == 0:
        return row_structure(removed)
    means = shared[:rows, :cols].reshape(rows // tile, tile, cols // tile, tile).mean(axis=(1, 3))
    return float(np.sqrt(max(float(means.max()), 0.0)))


def histogram_shift(before: np.ndarray, after: np.ndarray, noise: float, seed: int = 0) -> float:
    """Wasserstein-1 distance between the input's heights and the output's heights plus Gaussian noise of
    the estimated RMS (seeded: the same scans give the same number), each about its mean (an AFM's
    absolute height means nothing; the median of a grating jumps between its two levels), in units of
    that noise. Near 0 when the output is the input's
    surface without its noise."""
    step = max(1, before.size // MAX_PIXELS)
    x = before.ravel()[::step]
    x = np.sort(x - x.mean())
    y = after.ravel()[::step]
    noisy = y - y.mean() + np.random.default_rng(seed).normal(0.0, noise, x.size)
    return float(np.mean(np.abs(x - np.sort(noisy)))) / noise


def spectrum_bands(before: np.ndarray, after: np.ndarray, noise: float, band_power: float) -> list[dict[str, Any]]:
    """Across-row power spectra in octaves of wavelength (2-4, 4-8, ... rows): the input's power over
    its noise floor, and, where that is at least `band_power`, the output's amplitude over the input's
    with the floor removed (`amplitude_ratio`) and over the input's itself (`amplitude_ratio_input`)."""
    rows = before.shape[0]
    window = np.hanning(rows)[:, None]
    norm = float(np.sum(window**2))

    def power(z: np.ndarray) -> np.ndarray:
        z = z - z.mean(axis=0, keepdims=True)
        return np.mean(np.abs(np.fft.rfft(z * window, axis=0)) ** 2, axis=1) / norm

    p_in, p_out = power(before), power(after)
    frequency = np.fft.rfftfreq(rows)
    floor = noise**2
    bands: list[dict[str, Any]] = []
    longest = 2
    while longest * 2 <= rows // 2:
        longest *= 2
    low_wavelength = 2
    while low_wavelength <= longest:
        high_wavelength = 2 * low_wavelength
        chosen = (frequency > 1 / high_wavelength) & (frequency <= 1 / low_wavelength)
        if low_wavelength == longest:
            chosen = (frequency > 0) & (frequency <= 1 / low_wavelength)
        if chosen.any():
            power_in, power_out = float(p_in[chosen].mean()), float(p_out[chosen].mean())
            band = {
                "wavelength_px": [low_wavelength, high_wavelength if low_wavelength < longest else rows],
                "signal_to_floor": power_in / floor,
            }
            if power_in >= band_power * floor:
                band["amplitude_ratio"] = float(np.sqrt(power_out / (power_in - floor)))
                band["amplitude_ratio_input"] = float(np.sqrt(power_out / power_in))
            bands.append(band)
        low_wavelength = high_wavelength
    return bands


def check(before: np.ndarray, after: np.ndarray, limits: Limits = LIMITS) -> GuardReport:
    """Judge a denoised height map `after` against its input `before` (same shape, same units)."""
    if before.shape != after.shape:
        raise ValueError(f"input {before.shape} and denoised {after.shape} differ in size")
    x, y, valid = _finite_pair(before, after)
    removed = x - y
    sq_in, sq_out = float(x[valid].std()), float(y[valid].std())
    noise = noise_rms(np.where(valid, x, np.nan))
    removed_rms = float(removed[valid].std())
    reasons: list[str] = []
    if not noise > 0:
        # an image without measurable noise: nothing should have been removed
        changed = removed_rms > 1e-6 * max(sq_in, 1e-30)
        reasons = ["the input holds no measurable noise, yet the denoiser changed it"] if changed else []
        return GuardReport(
            CHANGED if changed else FAITHFUL,
            reasons,
            0.0,
            removed_rms,
            None,
            None,
            None,
            sq_in,
            sq_out,
            None,
            None,
            None,
            None,
            [],
            _limits_dict(limits),
        )
    removed_to_noise = removed_rms / noise
    structure_to_noise = row_structure(removed) / noise
    local_to_noise = local_structure(removed) / noise
    signal = np.sqrt(max(sq_in**2 - noise**2, 0.0))
    judged = signal >= limits.signal_to_noise * noise
    height_scale = sq_out / signal if judged else None
    shift = histogram_shift(x[valid], y[valid], noise)
    bands = spectrum_bands(x, y, noise, limits.band_signal_power)
    judged_bands = [b for b in bands if "amplitude_ratio" in b]
    low_ratio = min((b["amplitude_ratio"] for b in judged_bands), default=None)
    high_ratio = max((b["amplitude_ratio_input"] for b in judged_bands), default=None)

    if removed_to_noise > limits.removed_to_noise:
        reasons.append(f"removed {removed_to_noise:.2f} x the noise RMS (limit {limits.removed_to_noise:g})")
    if structure_to_noise > limits.structure_to_noise:
        reasons.append(
            f"the removed part holds features that continue from row to row, "
            f"{structure_to_noise:.2f} x the noise RMS (limit {limits.structure_to_noise:g})"
        )
    if local_to_noise > limits.local_structure_to_noise:
        reasons.append(
            f"a {TILE} x {TILE} pixel patch of the removed part holds a feature, "
            f"{local_to_noise:.2f} x the noise RMS (limit {limits.local_structure_to_noise:g})"
        )
    low, high = limits.height_scale
    if height_scale is not None and height_scale < low:
        reasons.append(
            f"height scale {height_scale:.2f}: heights weakened (Sq out / Sq in without noise; limit {low:g})"
        )
    if sq_out > high * sq_in:
        reasons.append(
            f"heights strengthened: Sq out {sq_out / sq_in:.2f} x the input's, noise included (limit {high:g})"
        )
    if shift > limits.histogram_shift:
        reasons.append(f"height histogram moved by {shift:.2f} x the noise RMS (limit {limits.histogram_shift:g})")
    low, high = limits.spectrum_ratio
    for band in judged_bands:
        first, last = band["wavelength_px"]
        if band["amplitude_ratio"] < low:
            reasons.append(
                f"features {first}-{last} rows across weakened to {band['amplitude_ratio']:.2f} of their "
                f"height (limit {low:g})"
            )
        elif band["amplitude_ratio_input"] > high:
            reasons.append(
                f"features {first}-{last} rows across strengthened to {band['amplitude_ratio_input']:.2f} "
                f"x the input's, noise included (limit {high:g})"
            )
    verdict = CHANGED if reasons else FAITHFUL
    if not reasons and not judged:
        verdict = UNVERIFIED
        reasons.append(
            f"heights not checked: the surface is only {signal / noise:.2f} x the noise RMS "
            f"(at least {limits.signal_to_noise:g} needed), so this copy is not a measurement"
        )
    return GuardReport(
        verdict=verdict,
        reasons=reasons,
        noise_rms=noise,
        removed_rms=removed_rms,
        removed_to_noise=removed_to_noise,
        structure_to_noise=structure_to_noise,
        local_structure_to_noise=local_to_noise,
        sq_in=sq_in,
        sq_out=sq_out,
        height_scale=height_scale,
        histogram_shift=shift,
        spectrum_ratio_min=low_ratio,
        spectrum_ratio_max=high_ratio,
        spectrum_bands=bands,
        limits=_limits_dict(limits),
    )


def _limits_dict(limits: Limits) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in limits.__dict__.items()}
