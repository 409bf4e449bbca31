"""Explainable scan-quality metrics: physical measurements a microscopist can check by eye.

Each metric is a number with units (see `METRICS`); `measure(scan, retrace)` returns them all as
`{name: value}`, with None where a metric does not apply (no retrace, no pixel size, nothing read).
They are plain numpy over one Scan, a few milliseconds for a 256 x 256 scan, so the daemon runs
them on every file. Rows that were never acquired (all NaN, or all exactly zero in a height channel,
as instruments leave an aborted scan) count as missing and are left out of every other metric.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import structlog

from afmwatch.scan import Scan, ScanError

log = structlog.get_logger(__name__)

# A scar or a flat run must be at least this long along the fast axis (pixels), and at least
# 1/SCAR_MIN_FRACTION of the row: Gwyddion's "Mark Scars" uses 16 px by default.
SCAR_MIN_PIXELS = 8
SCAR_MIN_FRACTION = 16
# A scar pixel jumps from the rows above and below by more than this many robust standard deviations
# of the row-to-row step.
SCAR_THRESHOLD_SIGMA = 4.0
SCAR_MAX_ROWS = 3
STREAK_MAX_ROWS = 5
# ... and the jump across the lines must be this many times the height's curvature along the line
SCAR_ISOTROPY = 2.0
# ... and at least this fraction of the surface's RMS roughness: a 1 nm scar hides nothing on a 60 nm
# grating but ruins DNA on mica
SCAR_THRESHOLD_SQ = 0.25
# Trace and retrace may be offset along the fast axis by the tip's lag; shifts up to this fraction of
# the row are tried when aligning them.
MAX_SHIFT_FRACTION = 0.05


@dataclass(frozen=True)
class MetricInfo:
    """What one metric means: its units and a sentence for the README, `afmwatch quality` and sidecars."""

    units: str
    description: str


METRICS: dict[str, MetricInfo] = {
    "completeness": MetricInfo(
        "fraction", "lines acquired / lines set; below 1 the scan was stopped early (an aborted scan)"
    ),
    "lines_set": MetricInfo("lines", "lines the operator set (from the file's metadata, else the rows in the file)"),
    "lines_acquired": MetricInfo(
        "lines", "lines actually recorded: the line where the scan stopped (rows of NaN or zeros are missing)"
    ),
    "line_artefact_ratio": MetricInfo(
        "ratio",
        "RMS height step between neighbouring lines (slow axis) / RMS step between neighbouring pixels "
        "along a line (fast axis), after median line alignment; about 1 on an even surface, "
        "higher with scars, skips and line noise",
    ),
    "scar_fraction": MetricInfo(
        "fraction of lines", "lines holding a scar: a streak along the line that jumps from both neighbouring lines"
    ),
    "streak_fraction": MetricInfo(
        "fraction of area", "area covered by scars and streaks (bands 1 to 5 lines high that jump from both sides)"
    ),
    "saturation_fraction": MetricInfo(
        "fraction of pixels", "pixels sitting at the very top or bottom of the recorded z range (clipping)"
    ),
    "constant_run_fraction": MetricInfo(
        "fraction of pixels",
        "pixels in runs of identical values along a line: the z signal stopped moving (lost contact, "
        "saturated feedback)",
    ),
    "noise_rms": MetricInfo(
        "nm", "high-frequency noise: robust RMS of what a 4-neighbour mean does not explain, per pixel"
    ),
    "signal_to_noise": MetricInfo(
        "ratio", "RMS roughness (bow removed too) / noise RMS; near 1 the scan holds only noise (blank scan)"
    ),
    "tilt_deg": MetricInfo("degrees", "sample tilt before levelling (best-fit plane); needs the pixel size"),
    "bow": MetricInfo("nm", "scanner bow before levelling: peak-to-valley of the quadratic background"),
    "trace_retrace_mismatch": MetricInfo(
        "ratio",
        "RMS difference between trace and retrace after levelling and aligning them, / their RMS "
        "roughness; 0 = identical, about 1.4 = unrelated (the tip lost the surface)",
    ),
    "sq": MetricInfo("nm", "Sq, RMS roughness after levelling (plane + median line alignment)"),
    "sa": MetricInfo("nm", "Sa, mean absolute roughness after levelling"),
    "skewness": MetricInfo("", "Ssk, skewness of the levelled heights: > 0 peaks (particles), < 0 pits"),
    "z_range": MetricInfo("nm", "Sz, peak-to-valley of the levelled heights"),
}


@dataclass(frozen=True)
class Surface:
    """A scan prepared once for all metrics: missing lines removed, raw and levelled heights."""

    raw: np.ndarray  # acquired lines only, float64, remaining NaN filled with the median
    levelled: np.ndarray  # float32, plane removed, each line's median removed (level.align_rows)
    background: np.ndarray  # quadratic fit of raw: 1, x, y, x^2, xy, y^2 over x, y in [-1, 1]
    pixel_size_nm: float | None
    is_height: bool

    @cached_property
    def line_aligned(self) -> np.ndarray:
        """Plane removed, lines aligned by the median of differences (only line artefacts need it)."""
        return _align_lines(self.levelled)


def _missing_rows(scan: Scan) -> np.ndarray:
    """Rows never acquired: all NaN, or all exactly zero in a height channel (how instruments pad an
    aborted scan; in an image export a black row is just dark)."""
    finite = np.isfinite(scan.height)
    missing = ~finite.any(axis=1)
    if scan.is_height:
        missing |= np.all(np.where(finite, scan.height, 0.0) == 0.0, axis=1)
    return missing


def _metadata_int(metadata: dict[str, Any], key: str) -> int | None:
    value = metadata.get(key)
    try:
        return int(value) if value is not None and int(value) > 0 else None
    except (TypeError, ValueError):
        return None


def _quadratic_fit(z: np.ndarray) -> np.ndarray:
    """Least-squares coefficients of 1, x, y, x^2, xy, y^2 (x, y scaled to [-1, 1]), fitted on a
    pixel subsample of about 4000 points: plenty for a background, and fast."""
    rows, cols = z.shape
    row_step = max(1, rows // 64)
    col_step = max(1, cols // 64)
    y, x = np.mgrid[0:rows:row_step, 0:cols:col_step].astype(np.float64)
    x = x / max(cols - 1, 1) * 2 - 1
    y = y / max(rows - 1, 1) * 2 - 1
    design = np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=-1).reshape(-1, 6)
    normal = design.T @ design  # normal equations: 6 x 6, far faster than lstsq on the full design
    if np.linalg.matrix_rank(normal) < 6:
        return np.array([np.mean(z), 0, 0, 0, 0, 0], dtype=np.float64)
    return np.linalg.solve(normal, design.T @ z[::row_step, ::col_step].ravel())


def _align_lines(z: np.ndarray) -> np.ndarray:
    """Median-of-differences line alignment (Gwyddion's Align Rows, "median of differences"): each line
    is shifted by the median step from the line before, which features crossing many lines do not bias."""
    steps = np.median(np.diff(z, axis=0), axis=1)
    offsets = np.concatenate([[0.0], np.cumsum(steps)])
    return z - offsets[:, None].astype(z.dtype)


def completeness(scan: Scan) -> dict[str, float | int]:
    """How much of the scan was recorded: lines set (metadata), lines acquired, and their ratio.

    Lines set come from the file's `lines_set` metadata (the operator's setting), else the rows in
    the file; lines acquired from `lines_acquired` metadata and the rows that hold data, whichever
    is smaller. An aborted scan reads e.g. 118 of 256, completeness 0.46."""
    z = scan.height
    acquired = int((~_missing_rows(scan)).sum())
    if (meta_acquired := _metadata_int(scan.metadata, "lines_acquired")) is not None:
        acquired = min(acquired, meta_acquired)
    lines_set = max(_metadata_int(scan.metadata, "lines_set") or z.shape[0], acquired)
    return {"completeness": acquired / lines_set, "lines_set": lines_set, "lines_acquired": acquired}


def surface(scan: Scan) -> Surface | None:
    """Prepare `scan` for the metrics; None when fewer than 3 lines with data were acquired."""
    z = scan.height.astype(np.float64)
    raw = z[~_missing_rows(scan)]
    if raw.shape[0] < 3 or raw.shape[1] < 3:
        return None
    finite = np.isfinite(raw)
    if not finite.all():
        raw = np.where(finite, raw, np.median(raw[finite]))
    background = _quadratic_fit(raw)
    rows, cols = raw.shape
    x = np.linspace(-1, 1, cols)[None, :]
    y = np.linspace(-1, 1, rows)[:, None]
    plane = background[0] + background[1] * x + background[2] * y
    tilt_removed = (raw - plane).astype(np.float32)
    return Surface(
        raw=raw,
        levelled=tilt_removed - np.median(tilt_removed, axis=1, keepdims=True),
        background=background,
        pixel_size_nm=scan.pixel_size_nm,
        is_height=scan.is_height,
    )


def _robust_sigma(values: np.ndarray) -> float:
    """Standard deviation estimated from the median absolute deviation (ignores outliers and edges),
    over at most ~16000 evenly spaced values: the estimate needs no more, and medians are slow."""
    values = values.ravel()[:: max(1, values.size // 16384)]
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def _runs(mask: np.ndarray, min_length: int) -> np.ndarray:
    """Boolean map of the pixels that lie in runs of True at least `min_length` long along each row."""
    if not mask.any():
        return mask
    rows, cols = mask.shape
    padded = np.zeros((rows, cols + 1), dtype=np.int8)  # a False after every row: no run crosses rows
    padded[:, :-1] = mask
    edges = np.diff(padded.ravel(), prepend=0)
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)  # in order, each start pairs with the next end
    keep = (ends - starts) >= min_length
    marks = np.zeros(rows * (cols + 1) + 1, dtype=np.int8)  # +1 where a long run starts, -1 after it
    marks[starts[keep]] = 1
    marks[ends[keep]] = -1
    return (np.cumsum(marks[:-1], dtype=np.int8) > 0).reshape(rows, cols + 1)[:, :cols]


def scar_threshold(z: np.ndarray) -> float:
    """The least jump from both neighbouring lines that marks a band (see `_scar_map`)."""
    return max(SCAR_THRESHOLD_SIGMA * _robust_sigma(np.diff(z, axis=0)), SCAR_THRESHOLD_SQ * float(np.std(z)))


def _scar_map(z: np.ndarray, max_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixels in scars (bands 1-3 lines high) and in all streaks (bands up to `max_rows` high).

    A band is marked where it sits above (or below) both the line before and the line after by more
    than SCAR_THRESHOLD_SIGMA robust sigmas of the line-to-line step and SCAR_THRESHOLD_SQ of the RMS
    roughness, and where that jump is sharper across the lines than the height's curvature along them
    (the top of a round particle is as curved along the line as across it, a scar is not); marked
    pixels count where they form a stretch of the line at least 1/SCAR_MIN_FRACTION of it long.

    Only lines that can hold such a stretch are searched: a band's first line jumps from the line
    before by more than the threshold, so a line whose 1-`max_rows` lines above show no jump along a
    long enough stretch holds no scar. The daemon measures every scan, and most have few such lines."""
    rows, cols = z.shape
    threshold = scar_threshold(z)
    min_length = max(SCAR_MIN_PIXELS, cols // SCAR_MIN_FRACTION)
    scars = np.zeros_like(z, dtype=bool)
    streaks = np.zeros_like(z, dtype=bool)
    if threshold <= 0 or rows < 3:
        return scars, streaks
    jumps = np.abs(np.diff(z, axis=0)) > threshold  # jumps[s]: between line s and line s + 1
    reach = np.zeros_like(z, dtype=bool)  # line r: a jump at its column in one of the lines above
    for height in range(1, min(max_rows, rows - 2) + 1):
        reach[height:] |= jumps[: rows - height]
    candidates = np.flatnonzero(_runs(reach, min_length).any(axis=1))
    if candidates.size == 0:
        return scars, streaks
    # every band reaching a candidate line r starts at r - max_rows .. r - 1 and ends by r + max_rows
    for first, last in _spans(candidates - max_rows, candidates + max_rows + 1, rows):
        band_scars, band_streaks = _bands(z[first:last], threshold, max_rows)
        scars[first:last] |= band_scars
        streaks[first:last] |= band_streaks
    return _runs(scars, min_length), _runs(streaks, min_length)


def _spans(starts: np.ndarray, ends: np.ndarray, rows: int) -> list[tuple[int, int]]:
    """Overlapping [start, end) row intervals merged, clipped to 0..rows."""
    merged: list[list[int]] = []
    for start, end in zip(np.clip(starts, 0, rows), np.clip(ends, 0, rows)):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], int(end))
        else:
            merged.append([int(start), int(end)])
    return [(a, b) for a, b in merged]


def _bands(z: np.ndarray, threshold: float, max_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """The band test of `_scar_map` on every possible band of `z` (before the run-length test)."""
    rows = z.shape[0]
    scars = np.zeros_like(z, dtype=bool)
    streaks = np.zeros_like(z, dtype=bool)
    if rows < 3:
        return scars, streaks
    curvature = np.zeros_like(z)  # along the line
    curvature[:, 1:-1] = np.abs(z[:, :-2] + z[:, 2:] - 2 * z[:, 1:-1]) / 2
    # band h starts after line s: lines s+1 .. s+h, between line s and line s+h+1 (s = 0 .. rows-h-2)
    low = high = z[1 : rows - 1]
    bent = curvature[1 : rows - 1]
    for height in range(1, min(max_rows, rows - 2) + 1):
        if height > 1:
            newest = z[height : rows - 1]
            low = np.minimum(low[:-1], newest)
            high = np.maximum(high[:-1], newest)
            bent = np.maximum(bent[:-1], curvature[height : rows - 1])
        before, after = z[: rows - height - 1], z[height + 1 :]
        limit = np.maximum(threshold, SCAR_ISOTROPY * bent)
        band = ((low - np.maximum(before, after)) > limit) | ((np.minimum(before, after) - high) > limit)
        for k in range(height):
            streaks[1 + k : rows - height + k] |= band
            if height <= SCAR_MAX_ROWS:
                scars[1 + k : rows - height + k] |= band
    return scars, streaks


def line_artefacts(surf: Surface, retrace: Surface | None = None) -> dict[str, float]:
    """Line artefacts after median line alignment: the slow/fast roughness ratio, scar lines, streak area.

    Lines are aligned by the median of differences so that features crossing many lines do not leave
    bands that would read as scars. With the retrace, a band found at the same place in both
    directions is a feature of the surface (a thin ridge along the fast axis), not a scar: a tip that
    jumps does so differently in each direction."""
    z = surf.line_aligned
    slow = np.sqrt(np.mean(np.diff(z, axis=0) ** 2))
    fast = np.sqrt(np.mean(np.diff(z, axis=1) ** 2))
    scars, streaks = _scar_map(z, STREAK_MAX_ROWS)
    if retrace is not None and retrace.line_aligned.shape == z.shape and streaks.any():
        from scipy.ndimage import maximum_filter  # only needed here; keeps the import of this module light

        _, both = _scar_map(retrace.line_aligned, STREAK_MAX_ROWS)
        margin = max(1, int(z.shape[1] * MAX_SHIFT_FRACTION))
        features = maximum_filter(both.view(np.uint8), size=(3, 2 * margin + 1)) > 0  # grown by a line and the lag
        scars &= ~features
        streaks &= ~features
    return {
        "line_artefact_ratio": float(slow / fast) if fast > 0 else 1.0,
        "scar_fraction": float(scars.any(axis=1).mean()),
        "streak_fraction": float(streaks.mean()),
    }


def clipping(surf: Surface) -> dict[str, float | None]:
    """Saturation at the ends of the z range and flat runs of identical values along lines."""
    z = surf.raw
    if not surf.is_height:  # an export's colour scale clips by design; says nothing about the z piezo
        return {"saturation_fraction": None, "constant_run_fraction": None}
    low, high = float(z.min()), float(z.max())
    span = high - low
    if span <= 0:
        return {"saturation_fraction": 1.0, "constant_run_fraction": 1.0}
    tol = span * 1e-6
    at_ends = (z <= low + tol) | (z >= high - tol)
    flat = np.zeros_like(z, dtype=bool)
    flat[:, 1:] = np.diff(z, axis=1) == 0
    flat[:, :-1] |= flat[:, 1:]
    min_length = max(SCAR_MIN_PIXELS, z.shape[1] // SCAR_MIN_FRACTION)
    return {
        "saturation_fraction": float(at_ends.mean()),
        "constant_run_fraction": float(_runs(flat, min_length).mean()),
    }


def _noise_rms(z: np.ndarray) -> float:
    residual = z[1:-1, 1:-1] - (z[:-2, 1:-1] + z[2:, 1:-1] + z[1:-1, :-2] + z[1:-1, 2:]) / 4
    # white noise of sigma s leaves a residual of sigma s * sqrt(1 + 4/16); coarsely quantised data
    # (8-bit exports) has a median deviation of 0, and then the plain RMS is the honest estimate
    sigma = _robust_sigma(residual) or float(np.sqrt(np.mean(residual.astype(np.float64) ** 2)))
    return sigma / np.sqrt(1.25)


def noise(surf: Surface) -> dict[str, float]:
    """High-frequency noise (robust RMS, scan units) and the roughness over it (near 1 = a blank scan).

    The roughness here is taken after the bow along the lines is removed too, so that a blank scan
    with a bowed scanner still reads as blank."""
    rms = _noise_rms(surf.levelled)
    rows, cols = surf.levelled.shape
    x = np.linspace(-1, 1, cols, dtype=np.float32)[None, :]
    y = np.linspace(-1, 1, rows, dtype=np.float32)[:, None]
    c = surf.background
    unbowed = surf.levelled - (c[3] * x * x + c[4] * x * y).astype(np.float32)
    unbowed -= np.median(unbowed, axis=1, keepdims=True)
    roughness = float(np.std(unbowed))
    return {"noise_rms": rms, "signal_to_noise": roughness / rms if rms > 0 else float("inf")}


def tilt_and_bow(surf: Surface) -> dict[str, float | None]:
    """Tilt (degrees, needs calibrated heights and the pixel size) and bow (scan units) before levelling."""
    rows, cols = surf.raw.shape
    c = surf.background
    x = np.linspace(-1, 1, cols)[None, :]
    y = np.linspace(-1, 1, rows)[:, None]
    quadratic = c[3] * x * x + c[4] * x * y + c[5] * y * y
    tilt = None
    if surf.is_height and surf.pixel_size_nm:
        slope_x = c[1] / ((cols - 1) / 2) / surf.pixel_size_nm  # nm of height per nm along the row
        slope_y = c[2] / ((rows - 1) / 2) / surf.pixel_size_nm
        tilt = float(np.degrees(np.arctan(np.hypot(slope_x, slope_y))))
    return {"tilt_deg": tilt, "bow": float(quadratic.max() - quadratic.min())}


def surface_statistics(surf: Surface) -> dict[str, float]:
    """Sq, Sa, skewness and peak-to-valley of the levelled heights (ISO 25178 names)."""
    z = surf.levelled - surf.levelled.mean()
    sq = float(np.sqrt(np.mean(z**2)))
    return {
        "sq": sq,
        "sa": float(np.mean(np.abs(z))),
        "skewness": float(np.mean(z**3) / sq**3) if sq > 0 else 0.0,
        "z_range": float(z.max() - z.min()),
    }


def trace_retrace(surf: Surface, retrace: Surface) -> dict[str, float | None]:
    """Disagreement between the two scan directions after levelling and the best fast-axis shift.

    Both are levelled and line-aligned; the retrace is shifted along the line (tip lag) by the offset
    that minimises the difference, each line's median difference is removed, and the RMS difference
    is divided by the two directions' mean RMS roughness."""
    a, b = surf.levelled, retrace.levelled
    rows = min(a.shape[0], b.shape[0])
    if a.shape[1] != b.shape[1] or rows < 3:
        return {"trace_retrace_mismatch": None}
    a, b = a[:rows], b[:rows]
    cols = a.shape[1]
    margin = max(1, int(cols * MAX_SHIFT_FRACTION))
    if cols <= 4 * margin:
        return {"trace_retrace_mismatch": None}
    # the lag: the peak of the line-by-line cross-correlation, summed over lines, within +-margin
    size = 2 * cols
    spectrum = np.fft.rfft(a - a.mean(axis=1, keepdims=True), size) * np.conj(
        np.fft.rfft(b - b.mean(axis=1, keepdims=True), size)
    )
    correlation = np.fft.irfft(spectrum.sum(axis=0), size)
    lags = np.arange(-margin, margin + 1)
    shift = int(lags[np.argmax(correlation[lags])])  # correlation[k] peaks where b shifted by -k fits a
    core = a[:, margin : cols - margin]
    moved = b[:, margin - shift : cols - margin - shift]
    diff = core - moved
    diff = diff - np.median(diff, axis=1, keepdims=True)
    roughness = np.sqrt((np.var(core) + np.var(moved)) / 2)
    rms = float(np.sqrt(np.mean(diff**2)))
    return {"trace_retrace_mismatch": rms / roughness if roughness > 0 else None}


def measure(scan: Scan, retrace: Scan | None = None) -> dict[str, float | int | None]:
    """Every metric in METRICS for `scan` (None where one does not apply), in METRICS order."""
    values: dict[str, float | int | None] = dict.fromkeys(METRICS)
    values.update(completeness(scan))
    surf = surface(scan)
    if surf is None:
        return values
    retrace_surf = surface(retrace) if retrace is not None else None
    values.update(line_artefacts(surf, retrace_surf))
    for group in (clipping, noise, tilt_and_bow, surface_statistics):
        values.update(group(surf))
    if retrace_surf is not None:
        values.update(trace_retrace(surf, retrace_surf))
    return {name: _plain(value) for name, value in values.items()}


def _plain(value: Any) -> float | int | None:
    """A JSON-able number: Python int or float, None for missing or non-finite values."""
    if value is None:
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    value = float(value)
    return value if np.isfinite(value) else None


def load_retrace(scan: Scan) -> Scan | None:
    """The retrace (backward) scan of the same area, else None: the channel the reader named in
    `retrace_channel`, or the file named in `retrace_file` (relative to the scan's folder, as the
    synthetic generator writes trace and retrace side by side).

    A retrace that cannot be read is logged and skipped: the trace's own metrics still stand."""
    from afmwatch.readers import read_frames, read_scan  # readers sit below quality; imported late (light import)

    channel = scan.metadata.get("retrace_channel")
    other_file = scan.metadata.get("retrace_file")
    if channel and channel != scan.channel:
        source, kwargs = scan.path, {"channel": channel}
    elif isinstance(other_file, str) and (scan.path.parent / other_file).is_file():
        source, kwargs = scan.path.parent / other_file, {}
    else:
        return None
    try:
        if scan.frame:  # a later frame of a movie: compare with the same frame of the retrace
            frames = read_frames(source, **kwargs)
            retrace = frames[scan.frame] if scan.frame < len(frames) else None
        else:
            retrace = read_scan(source, **kwargs)
    except ScanError as exc:
        log.warning("retrace_unreadable", file=str(scan.path), retrace=str(source), reason=exc.reason, **kwargs)
        return None
    return retrace if retrace is not None and retrace.shape == scan.shape else None


def format_value(name: str, value: float | int | None, height_units: str = "nm") -> str:
    """A metric value as a person reads it: 3 significant digits with its units, fractions in percent;
    heights in `height_units` (the scan's: "a.u." for uncalibrated image exports)."""
    if value is None:
        return "n/a"
    units = METRICS[name].units if name in METRICS else ""
    units = height_units if units == "nm" else ("" if units == "ratio" else units)
    if units.startswith("fraction"):
        return f"{value * 100:.3g} %{units[len('fraction'):]}"
    text = str(value) if isinstance(value, int) else f"{value:.3g}"
    return f"{text} {units}".strip()
