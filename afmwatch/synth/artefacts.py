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

from afmwatch.synth.surfaces import Surface
from afmwatch.synth.tips import blunt_tip_image, coarse_image, double_tip_image, worn_tip_image

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
        "changes_per_row": rate,
        "jump_rms_nm": amplitude,
        "cumulative": True,
    }


def line_ridges(
    z: np.ndarray, rng: np.random.Generator, severity: float, surface: Surface
) -> tuple[np.ndarray, Params]:
    """Non-cumulative line noise: row segments sit at random offsets, each independent of the last."""
    rate, amplitude = 2.0 * severity, 0.8 * severity * surface.feature_height_nm
    return z + line_noise_field(z.shape, rng, rate, amplitude, False), {
        "changes_per_row": rate,
        "offset_rms_nm": amplitude,
        "cumulative": False,
    }


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


def random_noise(
    z: np.ndarray, rng: np.random.Generator, severity: float, surface: Surface
) -> tuple[np.ndarray, Params]:
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


def line_skips(z: np.ndarray, rng: np.random.Generator, severity: float, surface: Surface) -> tuple[np.ndarray, Params]:
    """Partial-line skips: for a segment of a line (or of a few consecutive lines) the scanner skipped,
    so the segment repeats the line before it (the slow axis stalled) or shows the surface beside it
    (the fast axis jumped sideways). Features break mid-line at both ends of every segment."""
    rows, cols = z.shape
    width_px = max(surface.feature_width_nm / surface.pixel_size_nm, 1.0)
    count = max(1, int(round(0.06 * severity * rows)))  # 8 skips at 0.5 on 256 lines
    out = z.copy()
    events = []
    for _ in range(count):
        lines = int(rng.integers(1, 2 + int(round(6 * severity))))
        row = int(rng.integers(1, max(rows - lines, 2)))
        length = int(rng.uniform(0.1, 0.5) * cols)
        first = int(rng.integers(0, cols - length + 1))
        mode = "repeat" if rng.random() < 0.5 else "jump"
        shift = 0
        stop = min(row + lines, rows)
        if mode == "repeat":
            out[row:stop, first : first + length] = out[row - 1, first : first + length]
        else:
            shift = int(rng.choice([-1, 1]) * max(2.0, rng.uniform(0.5, 2.0) * severity * 2 * width_px))
            shift = int(np.clip(shift, -first - length + 1, cols - first - 1)) or 1
            source = np.clip(np.arange(first, first + length) + shift, 0, cols - 1)
            out[row:stop, first : first + length] = z[row:stop][:, source]
        events.append([row, stop - row, first, first + length, mode, shift])
    return out, {
        "count": count,
        "rows": int(sum(e[1] for e in events)),
        "events": events,
        "event_fields": ["row", "lines", "col_start", "col_end", "mode", "shift_px"],
    }


def lost_contact(
    z: np.ndarray, rng: np.random.Generator, severity: float, surface: Surface
) -> tuple[np.ndarray, Params]:
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
        height = min(max(3, target - lost), int(rng.integers(3, max(4, target // 2 + 2))))
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
    """A blunt, worn tip: features broadened by several feature widths (2.5 at severity 0.5, 4 at most,
    a quarter at a trace of 0.1) and every one imaged as the tip's own shape: a flat end and one flank
    steeper than the other, the same mound pointing the same way everywhere, neighbours merged. Far
    beyond the tip-limited rounding every scan has (a fraction of a feature width)."""
    broadening_nm = min(2 * severity + 6 * severity**2, 4.0) * surface.feature_width_nm
    radius_nm = max(broadening_nm**2 / (2 * surface.feature_height_nm), 1e-6)
    steepness = rng.uniform(2.0, 6.0, 2)
    flat_px = np.round(rng.uniform(0.2, 0.5, 2) * broadening_nm / surface.pixel_size_nm).astype(int)
    flip = rng.random(2) < 0.5
    factor = _coarse_factor(2 * broadening_nm / surface.pixel_size_nm)
    image = coarse_image(
        z,
        factor,
        lambda part, k: worn_tip_image(
            part,
            radius_nm,
            k * surface.pixel_size_nm,
            (float(steepness[0]), float(steepness[1])),
            (int(flat_px[0]) // k, int(flat_px[1]) // k),
            (bool(flip[0]), bool(flip[1])),
        ),
    )
    return image, {
        "apex_radius_nm": radius_nm,
        "broadening_nm": broadening_nm,
        "flat_nm": (flat_px * surface.pixel_size_nm).tolist(),
        "steepness": steepness.tolist(),
        # the side of every mound where its flank is steep: [slow axis, fast axis]
        "steep_side": ["bottom" if flip[0] else "top", "right" if flip[1] else "left"],
    }


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


TIP_CHANGE_MODES = ("smeared", "doubled", "shifted")
TIP_CHANGE_LASTING = ("blunter", "sharper", "doubled")


def _blunter(z: np.ndarray, first: int, last: int, broadening_nm: float, surface: Surface) -> np.ndarray:
    """Rows first..last-1 of `z` imaged by a paraboloid tip broadening features by `broadening_nm`
    (the dilation sees the rows around the block, as the tip does)."""
    h = max(surface.feature_height_nm, 1e-6)
    radius_nm = max(broadening_nm**2 / (2 * h), 1e-6)
    depth = 3 * h  # the tip cut three features below its apex: enough to broaden them all
    reach = int(np.ceil(broadening_nm * np.sqrt(3) / surface.pixel_size_nm)) + 1
    top, bottom = max(first - reach, 0), min(last + reach, z.shape[0])
    block = coarse_image(
        z[top:bottom],
        _coarse_factor(reach),
        lambda part, factor: blunt_tip_image(part, radius_nm, factor * surface.pixel_size_nm, depth),
    )
    return block[first - top : last - top]


def _coarse_factor(reach_px: float) -> int:
    """How much coarser to image with a tip reaching `reach_px` pixels: none up to 24 pixels."""
    return max(1, int(np.ceil(reach_px / 24)))


def _doubled(z: np.ndarray, first: int, last: int, offset: tuple[int, int], drop_nm: float) -> np.ndarray:
    """Rows first..last-1 of `z` imaged by a tip with a second apex `offset` (rows, cols) away."""
    top, bottom = max(first - abs(offset[0]), 0), min(last + abs(offset[0]), z.shape[0])
    return double_tip_image(z[top:bottom], offset, drop_nm)[first - top : last - top]


def tip_change(z: np.ndarray, rng: np.random.Generator, severity: float, surface: Surface) -> tuple[np.ndarray, Params]:
    """A tip change: the tip picks something up or loses it, and for a band of rows (5-60 lines at a
    rejectable severity) the image is smeared (a blunter tip), doubled (a second apex repeats the
    features at an offset) or shifted (the apex moved: a lateral offset along the fast axis plus a
    height jump). Sometimes the change lasts: from the band to the end of the scan the tip stays blunter
    or double, or it was blunter above the band and the band is where it got sharper.

    The change happens in time, so trace and retrace show it in the same rows. Rows outside
    band_start..band_end-1 (and lasting_start..lasting_end-1 when `lasting`) are untouched. Every
    random draw is made whatever the mode and severity, so one seed gives the same band at every severity.
    """
    rows, cols = z.shape
    h = surface.feature_height_nm
    width_px = max(surface.feature_width_nm / surface.pixel_size_nm, 1.0)
    mode = str(rng.choice(TIP_CHANGE_MODES))
    lasting_kind = str(rng.choice(TIP_CHANGE_LASTING))
    u_lines, u_start, u_lasting = rng.random(3)
    strength = rng.uniform(1.0, 2.0)  # how much blunter / how far the apex moved, in feature widths at 0.5
    twin = rng.uniform(0.6, 0.9)  # the second apex's feature height relative to the first at 0.5
    angle = rng.uniform(0, 2 * np.pi)
    shift_sign, offset_sign = rng.choice([-1.0, 1.0], 2)
    offset_fraction = rng.uniform(0.2, 1.0)

    scale = float(np.clip(np.sqrt(rows / 256), 0.5, 2.0))  # a tip change lasts a time, not a fraction
    lines = severity * (10 + 110 * u_lines) * scale
    longest = 60 * max(scale, 1.0) if severity >= 0.5 else 3.0  # a trace: a line or three
    lines = int(round(min(max(lines, 5.0 if severity >= 0.5 else 1.0), longest, max(rows // 2, 1))))
    lines = 0 if severity <= 0 else max(lines, 1)
    effect = 2 * severity if severity >= 0.5 else 4 * severity**2  # 1 at 0.5; a trace barely shows
    start = int(u_start * (rows - lines + 1))
    end = start + lines
    lasting = lasting_kind if u_lasting < 0.4 and severity >= 0.3 else None  # never on a trace
    if lasting == "sharper":
        lasting_rows = (0, start)
    elif lasting is not None:
        lasting_rows = (end, rows)
    else:
        lasting_rows = (end, end)

    most_px = max(6.0, 0.06 * cols)  # beyond that a band of large features smears into a flat stripe
    out = z.copy()
    params: Params = {"mode": mode, "band_start": start, "band_end": end, "band_lines": lines}
    height_offset = offset_sign * offset_fraction * 0.5 * effect * h
    if mode == "smeared":
        broadening = min(effect * strength * width_px, most_px) * surface.pixel_size_nm
        if lines:
            out[start:end] = _blunter(z, start, end, broadening, surface)
        params["broadening_nm"] = broadening
    elif mode == "doubled":
        distance = float(np.clip(strength * width_px, 3, 0.25 * cols))
        offset = (int(round(distance * np.sin(angle))), int(round(distance * np.cos(angle))))
        drop = (1.0 - min(0.9, effect * twin)) * h
        if lines:
            out[start:end] = _doubled(z, start, end, offset, drop)
        params.update(offset_px=list(offset), drop_nm=drop)
    else:
        # the apex moved sideways and changed shape a little: the band is offset and somewhat smeared
        shift = shift_sign * min(max(effect * strength * width_px, 2.0 if severity >= 0.5 else 0.0), 0.2 * cols)
        broadening = min(0.5 * effect * strength * width_px, most_px) * surface.pixel_size_nm
        if lines:
            band = _blunter(z, start, end, broadening, surface) if broadening > 0 else z[start:end]
            out[start:end] = ndimage.shift(band, (0, shift), order=1, mode="mirror")
        params.update(shift_px=float(shift), broadening_nm=broadening)
    out[start:end] += height_offset
    params["height_offset_nm"] = float(height_offset)

    first, last = lasting_rows
    params.update(lasting=lasting, lasting_start=first, lasting_end=last)
    if lasting is not None and last > first:
        if lasting == "doubled":
            distance = float(np.clip(0.7 * strength * width_px, 3, 0.25 * cols))
            offset = (int(round(distance * np.cos(angle))), int(round(distance * np.sin(angle))))
            drop = (1.0 - min(0.8, 0.5 * effect * twin)) * h
            out[first:last] = _doubled(z, first, last, offset, drop)
            params.update(lasting_offset_px=list(offset), lasting_drop_nm=drop)
        else:
            broadening = min(0.3 * effect * strength * width_px, most_px) * surface.pixel_size_nm
            out[first:last] = _blunter(z, first, last, broadening, surface)
            params["lasting_broadening_nm"] = broadening
    return out, params


def drift(z: np.ndarray, rng: np.random.Generator, severity: float, surface: Surface) -> tuple[np.ndarray, Params]:
    """Thermal drift and piezo creep: each row lands further sideways, shearing the image.

    Needs a margin beyond the image of 1.7 times the rows (`drift_margin`); returns the image the scan
    recorded (`surface.image_cols` wide, or square).
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
    cols_out = surface.image_cols or rows
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
    """An aborted scan: the scan stopped early and the lines never acquired hold NaN or zeros, as
    instruments save them. It can stop anywhere from a few lines after the start to a few lines before
    the end; at a rejectable severity at least 4 lines and 2 % are missing, and the higher the severity
    the earlier it tends to stop. One seed stops later at a lower severity."""
    rows = z.shape[0]
    u = rng.random()
    fill = "nan" if rng.random() < 0.5 else "zero"
    fewest = max(4, int(np.ceil(0.02 * rows)))  # what a microscopist calls missing lines
    most = max(rows - 3, fewest)  # a few lines acquired at least
    if severity >= 0.5:
        shape = 4.0 ** (3 - 4 * min(severity, 1.0))  # 4 at 0.5 (mostly near the end) .. 1/4 at 1 (mostly early)
        missing = fewest + (most - fewest) * u**shape
    else:
        missing = severity / 0.5 * (1 + (fewest - 1) * u)  # a line or two: not rejectable
    missing = int(min(round(missing), rows - 1))
    missing = max(missing, 1) if severity > 0 else 0
    out = z.copy()
    if missing:
        out[rows - missing :] = np.nan if fill == "nan" else 0.0
    return out, {
        "lines_set": rows,
        "lines_acquired": rows - missing,
        "lines_missing": missing,
        "missing_fraction": missing / rows,
        "fill": fill,
    }


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
    drawn: bool = True  # planned for synthetic sets; False: kept for tests and metrics only


FEATURED = ("particles", "terraces", "grains", "fibres", "grid", "domains", "blend", "holes")  # not "substrate"
STAGES = ("surface", "tip", "geometry", "scan", "background", "range", "acquisition")

ARTEFACTS: dict[str, Artefact] = {
    # a bare substrate imaged well looks almost blank: blank and the changes a flat surface hides are
    # left out there, so that a substrate scan is never bad for what cannot be seen
    "blank": Artefact(blank, "surface", surfaces=FEATURED),
    # tip artefacts are unmistakable only on small isolated raised features (elsewhere a blunt tip makes
    # a smooth image, like a good one of large features); drift only on shapes known to be regular
    "blunt_tip": Artefact(blunt_tip, "tip", surfaces=("particles", "fibres"), trace_ok=True),
    "double_tip": Artefact(double_tip, "tip", surfaces=("particles", "fibres"), trace_ok=True),
    # a tip change happens in time: at the tip stage, so trace and retrace share its rows
    "tip_change": Artefact(tip_change, "tip", surfaces=FEATURED, trace_ok=True),
    "line_skips": Artefact(line_skips, "scan", per_direction=True, surfaces=FEATURED, trace_ok=True),
    "drift": Artefact(drift, "geometry", surfaces=("particles", "grid"), trace_ok=True),
    "ringing": Artefact(ringing, "scan", per_direction=True, trace_ok=True),
    "streaks": Artefact(streaks, "scan", per_direction=True, trace_ok=True),
    "scars": Artefact(scars, "scan", per_direction=True, trace_ok=True),
    "line_steps": Artefact(line_steps, "scan", per_direction=True, trace_ok=True),
    "line_ridges": Artefact(line_ridges, "scan", per_direction=True, trace_ok=True),
    "random_noise": Artefact(random_noise, "scan", per_direction=True, trace_ok=True),
    # not drawn: a bowed raw scan is what every scanner writes and a polynomial fit removes (AFM-PRIMER);
    # as a "bad" kind it taught the network that an unremoved bow is bad, and real bowed scans were
    "unlevelled": Artefact(unlevelled, "background", drawn=False),
    "lost_contact": Artefact(lost_contact, "range", per_direction=True),
    "clipped": Artefact(clipped, "range"),
    "aborted": Artefact(aborted, "acquisition"),
}


def applicable(surface_kind: str, *, trace: bool = False) -> list[str]:
    """Artefact names that make sense on this kind of surface (only trace-level ones when `trace`)."""
    return [
        name
        for name, spec in ARTEFACTS.items()
        if spec.drawn and (spec.surfaces is None or surface_kind in spec.surfaces) and (spec.trace_ok or not trace)
    ]
