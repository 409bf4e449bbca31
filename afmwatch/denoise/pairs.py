"""Noisy/clean pairs: the data a denoiser learns from and is measured on.

`synthetic_pairs` draws them over every surface kind of the synthetic generator (`afmwatch.synth`:
grains, domains, blends, substrates, terraces, gratings, fibres, particles, and Gwyddion's particles on a
flat substrate), at the scan sizes each kind is drawn with, imaged by a tip of finite size, with the
noise real instruments add: white noise, 1/f noise along the row, row offsets, segments of line noise
and a few short scars, in random proportions, from far below to well above the features' height.
A denoiser trained on these has seen every kind of surface it is offered, so it has no reason to paint
one kind over another.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from afmwatch.synth.artefacts import line_noise_field
from afmwatch.synth.imaging import draw_imaging, feedback_shadow, instrument_noise, tip_limited
from afmwatch.synth.scans import file_rng
from afmwatch.synth.surfaces import SURFACES, deposited_shapes, log_uniform

# The kinds the shipped denoisers were trained on (models/DENOISERS.md), named so that a kind added to the
# generator later (holes) does not change their recipe: Gwyddion's example (round particles on a flat
# substrate, `afmwatch synth denoise`) besides eight of the generator's kinds
SURFACE_KINDS: tuple[str, ...] = (
    "particles",
    "terraces",
    "grains",
    "fibres",
    "grid",
    "domains",
    "blend",
    "substrate",
    "deposits",
)
# total noise RMS as a fraction of the clean image's height range (0.5-99.5 percentile): from a clean scan
# of a tall grating (0.3 %) to a scan where the noise hides the smaller features (25 %)
NOISE_TO_RANGE = (0.003, 0.25)


@dataclass(frozen=True)
class Pair:
    """One noisy measurement and its clean signal, same shape, both in the same height units."""

    name: str
    noisy: np.ndarray
    clean: np.ndarray
    pixel_size_nm: float | None = None


def height_range(height: np.ndarray) -> float:
    """Robust peak-to-valley: the 0.5-99.5 percentile range (a few spikes do not count)."""
    low, high = np.nanpercentile(height, [0.5, 99.5])
    return float(high - low) or float(np.nanstd(height)) or 1.0


def clean_surface(rng: np.random.Generator, kind: str, size: int) -> tuple[np.ndarray, float]:
    """A clean synthetic scan (height in nm, pixel size in nm) of one surface kind, as a good tip records it."""
    if kind == "deposits":
        surface = deposited_shapes(rng, size, "particles")
    elif kind in SURFACES:
        surface = SURFACES[kind](rng, size)
    else:
        raise ValueError(f"unknown surface kind {kind!r}; choose from {', '.join(SURFACE_KINDS)}")
    imaging = draw_imaging(rng, surface)
    height = feedback_shadow(tip_limited(surface.height, imaging, surface), imaging)[:size, :size]
    return height.astype(np.float64), surface.pixel_size_nm


def scars(rng: np.random.Generator, shape: tuple[int, int], rms: float) -> np.ndarray:
    """A few short streaks, one or two rows high, where the tip jumped: 2-5 times the noise."""
    rows, cols = shape
    out = np.zeros(shape)
    for _ in range(int(rng.integers(1, max(2, rows // 40)))):
        row, thick = int(rng.integers(0, rows)), int(rng.integers(1, 3))
        length = max(2, int(rng.uniform(0.03, 0.3) * cols))
        start = int(rng.integers(0, cols - length + 1))
        out[row : row + thick, start : start + length] += rng.choice([-1.0, 1.0]) * rng.uniform(2, 5) * rms
    return out


def add_noise(rng: np.random.Generator, clean: np.ndarray, noise_to_range: float | None = None) -> np.ndarray:
    """The clean scan as an instrument records it: white, 1/f-along-the-row and row-offset noise mixed in
    random proportions (total RMS `noise_to_range` x the height range, drawn log-uniform in NOISE_TO_RANGE
    when not given), plus, at random, segments of line noise (Gwyddion's Line noise > Steps, not cumulative)
    and a few scars."""
    if noise_to_range is None:
        noise_to_range = log_uniform(rng, *NOISE_TO_RANGE)
    rms = noise_to_range * height_range(clean)
    weights = rng.dirichlet([2.0, 1.0, 1.0])
    imaging = {"noise_rms_nm": rms, "noise_colour": {"white": weights[0], "one_over_f": weights[1], "rows": weights[2]}}
    noisy = clean + instrument_noise(rng, clean.shape, imaging)
    if rng.random() < 0.5:
        noisy += line_noise_field(clean.shape, rng, rng.uniform(0.2, 2.0), rng.uniform(0.2, 0.7) * rms, False)
    if rng.random() < 0.3:
        noisy += scars(rng, clean.shape, rms)
    return noisy


def synthetic_pair(seed: int, index: int, kind: str, size: int = 256, noise_to_range: float | None = None) -> Pair:
    """Pair `index` of surface `kind` from `seed` (the same arguments always give the same pair)."""
    rng = file_rng(seed, index)
    clean, pixel = clean_surface(rng, kind, size)
    noisy = add_noise(rng, clean, noise_to_range)
    return Pair(f"s{seed}-{index:05d}-{kind}", noisy.astype(np.float32), clean.astype(np.float32), pixel)


# pairs drawn at a second or third size are numbered from here on, so no two sizes share a surface's seed
SIZE_INDEX_STRIDE = 1_000_000


def _pair_from_arguments(arguments: tuple[int, int, str, int]) -> Pair:
    return synthetic_pair(*arguments)


def synthetic_pairs(
    per_kind: int,
    seed: int,
    size: int | tuple[int, ...] = 256,
    kinds: tuple[str, ...] = SURFACE_KINDS,
    workers: int = 1,
) -> list[Pair]:
    """`per_kind` pairs of every surface kind at each size, numbered kind after kind (seeded, reproducible:
    the pairs of the first size are those a single size gives). A larger size keeps each kind's scan sizes,
    so its features span more pixels: the smooth, oversampled look of many real scans. `workers` > 1 draws
    them in that many processes (same pairs, same order)."""
    sizes = (size,) if isinstance(size, int) else tuple(size)
    arguments = [
        (seed, s * SIZE_INDEX_STRIDE + k * per_kind + i, kind, pixels)
        for s, pixels in enumerate(sizes)
        for k, kind in enumerate(kinds)
        for i in range(per_kind)
    ]
    if workers <= 1:
        return [_pair_from_arguments(a) for a in arguments]
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(_pair_from_arguments, arguments, chunksize=8))
