"""Named scan artefacts, each with a severity from 0 (none) to 1 (ruined).

Severity is scaled to the surface's own features (`Surface.feature_height_nm`, `feature_width_nm`), so
0.5 means "a microscopist rejects this" on DNA as on a calibration grating, and below 0.1 is a trace that
nobody would reject. The rejectable level is chosen to stay obvious after plane fit and median row
alignment (what the pipeline does before classifying): full-row offsets alone are not an artefact.

Every function takes a height map (rows x cols, nm, fast-scan axis along the rows, scanned left to
right), a random generator, a severity and the Surface, and returns (new height map, parameters in
physical units). `ARTEFACTS` says at which stage of the scan each applies and whether trace and retrace
suffer it independently (a tip that fails does so differently in each direction).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage, signal

from afmwatch.synth.surfaces import Surface, log_uniform
from afmwatch.synth.tips import blunt_tip_image, double_tip_image

Params = dict[str, Any]


def line_noise_field(
    shape: tuple[int, int],
    rng: np.random.Generator,
    changes_per_row: float,
    amplitude_nm: float,
    cumulative: bool,
) -> np.ndarray:
    """Offsets that change only at random instants of the raster scan, as in Gwyddion's Line noise > Steps.

    The scan is a time series in raster order (row after row); offsets change at Poisson-distributed
    instants, so every fast-scan row is piecewise constant. Cumulative offsets are a random walk (each
    change adds a jump); non-cumulative ones draw a fresh offset for every segment.
    """
    rows, cols = shape
    total = rows * cols
    changes = np.sort(rng.integers(1, total, rng.poisson(changes_per_row * rows)))
    values = rng.normal(0.0, amplitude_nm, changes.size + 1)
    if cumulative:
        values = np.cumsum(values)
    values -= values.mean()
    segment = np.searchsorted(changes, np.arange(total), side="right")
    return values[segment].reshape(shape)


def line_steps(z: np.ndarray, rng: np.random.Generator, severity: float, surface: Surface) -> tuple[np.ndarray, Params]:
    """Cumulative line noise: the height jumps within rows and stays there (feedback or drift jumps)."""
    rate, amplitude = 2.0 * severity, 0.8 * severity * surface.feature_height_nm
    return z + line_noise_field(z.shape, rng, rate, amplitude, True), {
        "changes_per_row": rate, "jump_rms_nm": amplitude, "cumulative": True}


def line_ridges(z: np.ndarray, rng: np.random.Generator, severity: float, surface: Surface) -> tuple[np.ndarray, Params]:
    """Non-cumulative line noise: row segments sit at random offsets, each independent of the last."""
    rate, amplitude = 2.0 * severity, 0.8 * severity * surface.feature_height_nm
    return z + line_noise_field(z.shape, rng, rate, amplitude, False), {
        "changes_per_row": rate, "offset_rms_nm": amplitude, "cumulative": False}


def scars(z: np.ndarray, rng: np.random.Generator, severity: float, surface: Surface) -> tuple[np.ndarray, Params]:
    """Scars: short streaks one to three rows high where the tip jumped, raised or lowered by ~ a feature."""
    rows, cols = z.shape
    count = max(1, int(round(0.5 * severity**1.5 * rows)))  # a trace is a few scars, a ruin is many
    amplitude = 2.0 * severity * surface.feature_height_nm
    out = z.copy()
    for _ in range(count):
        row = int(rng.integers(0, rows))
        thick = int(rng.integers(1, 4))
        length = int(rng.uniform(0.05, 0.4) * cols)
        start = int(rng.integers(0, cols - length + 1))
        out[row : row + thick, start : start + length] += rng.choice([-1.0, 1.0]) * amplitude * rng.uniform(0.5, 1.5)
    return out, {"count": count, "amplitude_nm": amplitude}


def random_noise(z: np.ndarray, rng: np.random.Generator, severity: float, surface: Surface) -> tuple[np.ndarray, Params]:
    """Strong random (white) noise in height, far above the instrument's noise floor."""
    rms = severity * surface.feature_height_nm
    return z + rng.normal(0.0, rms, z.shape), {"rms_nm": rms}


def ringing(z: np.ndarray, rng: np.random.Generator, severity: float, surface: Surface) -> tuple[np.ndarray, Params]:
    """Feedback ringing: damped ripples along the fast axis after every edge, and a sustained oscillation.

    Gains set too high make the z loop oscillate at one frequency (here in cycles per pixel at the
    recorded scan rate); each height step the tip meets kicks off a ripple that decays along the row.
    """
    rows, cols = z.shape
    frequency = rng.uniform(0.04, 0.2)  # cycles per pixel: a period of 5 to 25 pixels
    decay_px = rng.uniform(8, 40)
    t = np.arange(int(5 * decay_px))
    kernel = np.exp(-t / decay_px) * np.sin(2 * np.pi * frequency * t)
    edges = np.diff(z, axis=1, prepend=z[:, :1])
    gain = 1.5 * severity
    ripples = gain * signal.fftconvolve(edges, kernel[None, :], axes=1)[:, :cols]
    sustained = 0.3 * severity * surface.feature_height_nm
    phase = rng.uniform(0, 2 * np.pi, (rows, 1))
    oscillation = sustained * np.sin(2 * np.pi * frequency * np.arange(cols)[None, :] + phase)
    return z + ripples + oscillation, {
        "frequency_per_px": frequency,
        "frequency_per_um": frequency / surface.pixel_size_nm * 1000,
        "decay_px": decay_px,
        "edge_gain": gain,
        "sustained_amplitude_nm": sustained,
    }


def streaks(z: np.ndarray, rng: np.random.Generator, severity: float, surface: Surface) -> tuple[np.ndarray, Params]:
    """Streaks: in bands of rows the tip picks something up and drags it, so a raised trail starts
    mid-row and heights trail off slowly after every feature until the debris lets go."""
    rows, cols = z.shape
    h = surface.feature_height_nm
    target = max(1, int(severity * 0.4 * rows))
    tail_px = max(3.0, severity * rng.uniform(0.2, 0.6) * cols)
    fall = h / tail_px  # nm lost per pixel along the trail
    out = z.copy()
    x = np.arange(cols)
    affected = np.zeros(rows, dtype=bool)
    while affected.sum() < target:
        start, band = int(rng.integers(0, rows)), int(rng.integers(1, 6))
        first_col = int(rng.integers(0, cols * 3 // 4))
        pickup = severity * rng.uniform(2.0, 4.0) * h
        out[start : start + band] += np.where(x >= first_col, pickup * np.exp(-(x - first_col) / tail_px), 0.0)
        affected[start : start + band] = True
    lines = out[affected]
    for j in range(1, cols):  # the dragged debris lets the height fall only slowly after a feature
        np.maximum(lines[:, j], lines[:, j - 1] - fall, out=lines[:, j])
    out[affected] = lines
    return out, {"rows": int(affected.sum()), "tail_px": tail_px}


def lost_contact(z: np.ndarray, rng: np.random.Generator, severity: float, surface: Surface) -> tuple[np.ndarray, Params]:
    """Lost contact: in bands of rows the tip left the surface part-way along the row, and z saturated
    (fully retracted at the top of its range, or fully extended at the bottom) until the row ended.
    The end of the z travel lies beyond the surface's own heights, by one to three feature heights."""
    rows, cols = z.shape
    side = "top" if rng.random() < 0.5 else "bottom"
    beyond = rng.uniform(1.0, 3.0) * surface.feature_height_nm
    level = float(np.nanmax(z) + beyond if side == "top" else np.nanmin(z) - beyond)
    out = z.copy()
    target = max(3, int(severity * 0.3 * rows))
    bands = []
    lost = 0
    while lost < target:
        height = int(min(max(3, target - lost), rng.integers(3, max(4, target // 2 + 2))))
        start = int(rng.integers(0, rows - height + 1))
        first_col = int(rng.uniform(0.05, 0.6) * cols)
        out[start : start + height, first_col:] = level
        bands.append([start, height, first_col])
        lost += height
    return out, {"rows": lost, "bands": bands, "side": side, "saturated_nm": level}


def clipped(z: np.ndarray, rng: np.random.Generator, severity: float, surface: Surface) -> tuple[np.ndarray, Params]:
    """Clipped z range: the sample sat so tilted that the z piezo ran out of travel, so the highest (or
    lowest) part of the image is flat: its features are gone, not just their tops."""
    rows, cols = z.shape
    fraction = 0.7 * severity
    side = "top" if rng.random() < 0.7 else "bottom"
    angle = rng.uniform(0, 2 * np.pi)
    y, x = np.meshgrid(np.linspace(-1, 1, rows), np.linspace(-1, 1, cols), indexing="ij")
    h = surface.feature_height_nm
    ramp = 3 * h * (x * np.cos(angle) + y * np.sin(angle))
    z = z + ramp
    if side == "top":
        level = float(np.nanquantile(z, 1 - fraction))
        return np.minimum(z, level), {"side": side, "fraction": fraction, "level_nm": level, "tilt_nm": 6 * h}
    level = float(np.nanquantile(z, fraction))
    return np.maximum(z, level), {"side": side, "fraction": fraction, "level_nm": level, "tilt_nm": 6 * h}


def blunt_tip(z: np.ndarray, rng: np.random.Generator, severity: float, surface: Surface) -> tuple[np.ndarray, Params]:
    """A blunt tip: the surface dilated by a paraboloid whose broadening is several feature widths
    (2.5 at severity 0.5, a quarter at a trace of 0.1)."""
    broadening_nm = (2 * severity + 6 * severity**2) * surface.feature_width_nm
    radius_nm = max(broadening_nm**2 / (2 * surface.feature_height_nm), 1e-6)
    return blunt_tip_image(z, radius_nm, surface.pixel_size_nm), {
        "apex_radius_nm": radius_nm, "broadening_nm": broadening_nm}


def double_tip(z: np.ndarray, rng: np.random.Generator, severity: float, surface: Surface) -> tuple[np.ndarray, Params]:
    """A double tip: a second apex about a feature width away repeats every feature as a lower twin,
    always at the same offset (doublets all pointing one way), lower by `drop`."""
    distance_px = rng.uniform(1.0, 2.0) * surface.feature_width_nm / surface.pixel_size_nm
    distance_px = float(np.clip(distance_px, 3, 0.25 * z.shape[1]))
    angle = rng.uniform(0, 2 * np.pi)
    offset = (int(round(distance_px * np.sin(angle))), int(round(distance_px * np.cos(angle))))
    twin = min(0.8, 1.4 * severity)  # the twin's height relative to the feature: 0.7 at 0.5
    drop = (1.0 - twin) * surface.feature_height_nm
    return double_tip_image(z, offset, drop), {"offset_px": list(offset), "drop_nm": drop}


def drift(z: np.ndarray, rng: np.random.Generator, severity: float, surface: Surface) -> tuple[np.ndarray, Params]:
    """Thermal drift and piezo creep: each row lands further sideways, shearing the image.

    Needs a surface wider than tall (at least 2.7 times); returns the square image the scan recorded.
    """
    rows = z.shape[0]
    sign = rng.choice([-1.0, 1.0])
    shear = 1.2 * severity * rows  # sideways drift over the whole scan, pixels
    creep = 0.5 * severity * rows * rng.uniform(0.6, 1.0)  # extra offset on the first lines, decaying
    creep_rows = rng.uniform(0.05, 0.15) * rows
    y = np.arange(rows, dtype=np.float64)
    shift = shear * y / rows + creep * np.exp(-y / creep_rows)
    shift = shift - shift.min()
    if sign < 0:
        shift = shift.max() - shift
    cols_out = rows
    yy, xx = np.meshgrid(y, np.arange(cols_out, dtype=np.float64), indexing="ij")
    out = ndimage.map_coordinates(z, [yy, xx + shift[:, None]], order=1, mode="nearest")
    return out, {"shear_px": float(sign * shear), "creep_px": float(creep), "creep_rows": float(creep_rows)}


def unlevelled(z: np.ndarray, rng: np.random.Generator, severity: float, surface: Surface) -> tuple[np.ndarray, Params]:
    """Scanner bow and twist so strong that plane fit and row alignment leave the features buried in it.

    A bow along the fast axis (quadratic and cubic) and a tilt that changes from row to row survive the
    standard levelling; their peak-to-valley is several feature heights.
    """
    rows, cols = z.shape
    y, x = np.meshgrid(np.linspace(-1, 1, rows), np.linspace(-1, 1, cols), indexing="ij")
    c = rng.uniform(0.3, 1.0, 3) * rng.choice([-1.0, 1.0], 3)
    background = c[0] * x * x + c[1] * x**3 + c[2] * x * y
    amplitude = 8.0 * severity * surface.feature_height_nm
    background *= amplitude / np.ptp(background)
    return z + background, {"peak_to_valley_nm": amplitude, "coefficients": c.tolist()}


def aborted(z: np.ndarray, rng: np.random.Generator, severity: float, surface: Surface) -> tuple[np.ndarray, Params]:
    """An aborted scan: the last lines were never acquired and hold NaN or zeros, as instruments save them."""
    rows = z.shape[0]
    missing = int(round(np.clip(0.8 * severity - 0.2, 0.0, 0.95) * rows))
    missing = max(missing, 1)
    fill = "nan" if rng.random() < 0.5 else "zero"
    out = z.copy()
    out[rows - missing :] = np.nan if fill == "nan" else 0.0
    return out, {"lines_set": rows, "lines_acquired": rows - missing, "fill": fill}


def blank(z: np.ndarray, rng: np.random.Generator, severity: float, surface: Surface) -> tuple[np.ndarray, Params]:
    """A blank scan: tip not engaged or an empty area; no features, only the instrument's noise."""
    return np.zeros_like(z), {}


@dataclass(frozen=True)
class Artefact:
    """How an artefact enters a scan.

    stage: "surface" (replaces the surface), "tip" (imaging by a tip), "geometry" (where rows land),
    "scan" (while the tip follows each row: trace and retrace differ), "background" (raw levelling),
    "range" (z-range limits, after the background), "acquisition" (lines never acquired).
    """

    function: Callable[[np.ndarray, np.random.Generator, float, Surface], tuple[np.ndarray, Params]]
    stage: str
    per_direction: bool = False
    surfaces: tuple[str, ...] | None = None  # None: every surface
    trace_ok: bool = False  # may appear at trace severity on a good scan


STAGES = ("surface", "tip", "geometry", "scan", "background", "range", "acquisition")

ARTEFACTS: dict[str, Artefact] = {
    "blank": Artefact(blank, "surface"),
    # tip artefacts show only on isolated raised features; drift only on shapes known to be regular
    "blunt_tip": Artefact(blunt_tip, "tip", surfaces=("particles", "fibres", "grains", "grid"), trace_ok=True),
    "double_tip": Artefact(double_tip, "tip", surfaces=("particles", "fibres"), trace_ok=True),
    "drift": Artefact(drift, "geometry", surfaces=("particles", "grid"), trace_ok=True),
    "ringing": Artefact(ringing, "scan", per_direction=True, trace_ok=True),
    "streaks": Artefact(streaks, "scan", per_direction=True, trace_ok=True),
    "scars": Artefact(scars, "scan", per_direction=True, trace_ok=True),
    "line_steps": Artefact(line_steps, "scan", per_direction=True, trace_ok=True),
    "line_ridges": Artefact(line_ridges, "scan", per_direction=True, trace_ok=True),
    "random_noise": Artefact(random_noise, "scan", per_direction=True, trace_ok=True),
    "unlevelled": Artefact(unlevelled, "background"),
    "lost_contact": Artefact(lost_contact, "range", per_direction=True),
    "clipped": Artefact(clipped, "range"),
    "aborted": Artefact(aborted, "acquisition"),
}


def applicable(surface_kind: str, *, trace: bool = False) -> list[str]:
    """Artefact names that make sense on this kind of surface (only trace-level ones when `trace`)."""
    return [
        name for name, spec in ARTEFACTS.items()
        if (spec.surfaces is None or surface_kind in spec.surfaces) and (spec.trace_ok or not trace)
    ]


def noise_floor(rng: np.random.Generator, surface: Surface) -> float:
    """A good instrument's noise floor (0.05-0.5 nm RMS), never more than an eighth of the features."""
    return min(log_uniform(rng, 0.05, 0.5), 0.12 * surface.feature_height_nm)
