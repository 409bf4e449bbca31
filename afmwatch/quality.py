"""Explainable scan-quality metrics: physical measurements a microscopist can check by eye.

Each metric is a number with units (see `METRICS`); `measure(scan, retrace)` returns them all as
`{name: value}`, with None where a metric does not apply (no retrace, no pixel size, nothing read).
They are plain numpy over one Scan, a few milliseconds for a 256 x 256 scan, so the daemon runs
them on every file. Rows that were never acquired (all NaN, or all exactly zero in a height channel,
as instruments leave an aborted scan) count as missing and are left out of every other metric.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, NamedTuple

import numpy as np
import scipy.fft
import structlog

from afmwatch.medians import nanmedian_rows, row_medians, small_median
from afmwatch.scan import Scan

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

# Tip changes (`tip_change`): each line is cut into TIP_SEGMENTS stretches. A tip that picks something up or
# loses it changes every stretch of the lines it scans, from one line to the next; a feature of the surface
# changes only its own stretch, and gradually. So every per-line profile below is a median over stretches.
TIP_SEGMENTS = 8
# A band is 5 to 60 lines (at 256 lines; the longest scales with sqrt(lines / 256): a tip change lasts a time);
# its edges lie at least TIP_EDGE_LINES (at 256 lines, in proportion beyond) from the first and last line.
TIP_MIN_LINES = 5
TIP_MAX_LINES = 60
TIP_EDGE_LINES = 10
# A stretch holds surface (not only noise) where its band-passed energy is above this many times the noise's.
TIP_CONTENT = 3.0
# A line's resolution needs surface in this fraction of its stretches, its breaks in this fraction (and
# at least 2 stretches): a break shows between sparse features too, a resolution is noisy on few.
TIP_DETAIL_STRETCHES = 0.5
TIP_BREAK_STRETCHES = 0.375
# A band where the surface vanished (smeared into the noise) counts where the lines around it show surface
# in TIP_DENSE of their stretches.
TIP_DENSE = 0.75
# A line-to-line break ("tear") stands out from the scan's line-to-line decorrelation by this many robust
# standard deviations (never less than TIP_TEAR_FLOOR) and by TIP_TEAR_JUMP in correlation.
TIP_TEAR_SIGMA = 4.0
TIP_TEAR_FLOOR = 0.03
TIP_TEAR_JUMP = 0.2
# A smeared band: the resolution profile steps down and up again by at least this much (natural log of the
# fine / coarse structure ratio; 0.1 is a 10 % loss of fine detail).
TIP_SMEAR_STEP = 0.1
# Lost resolution counts as evidence only in bands of TIP_SMEAR_MIN_LINES or more that lost at least
# TIP_SMEAR_MIN_LOSS (natural log: 14 % of the fine detail): shorter natural dips are common.
TIP_SMEAR_MIN_LINES = 10
TIP_SMEAR_MIN_LOSS = 0.15
# A band is reported (lines, start, end) from this evidence on; below it only the score.
TIP_REPORT = 4.0
# A single break this strong is a tip change on its own (the tip changed and stayed so to the edge of
# the scan); it counts TIP_BREAK_ALONE_WEIGHT of a band's break.
TIP_BREAK_ALONE = 15.0
TIP_BREAK_ALONE_WEIGHT = 0.5
# The spread a band's loss is measured against: at least this (natural log), and at least
# TIP_GLOBAL_SPREAD x the spread of the whole profile (surfaces whose lines differ a lot by nature).
TIP_PROFILE_FLOOR = 0.05
TIP_GLOBAL_SPREAD = 1.0

# Line breaks (`line_breaks`): how much each line differs from the next, against the scan's usual. The
# difference is cut into LINE_BREAK_SEGMENTS stretches, each stretch's mean removed (a line offset is not a
# break), and the median taken over the stretches: a tip change, a skipped or shifted line changes the whole
# width at once, the edge of a feature only its own stretch. The first and last lines (max(3, lines / 64))
# are not counted: piezo creep and the frame of an image export.
LINE_BREAK_SEGMENTS = 8
LINE_BREAK_EDGE = 3
# a band: two breaks TIP_MIN_LINES to TIP_MAX_LINES apart (more on scans of more than 256 lines), taken from
# the LINE_BREAK_CANDIDATES strongest lines
LINE_BREAK_CANDIDATES = 20


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
    "lines_missing": MetricInfo("lines", "lines set but never acquired (lines_set - lines_acquired)"),
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
    "tip_change_score": MetricInfo(
        "",
        "evidence of a tip change: a band of 5-60 lines that breaks off from the lines above and below it "
        "(smeared, doubled or offset) across the whole width, in robust standard deviations of the scan's "
        "own line-to-line variation; 0 when no band stands out, above 10 worth a look, above 15 a clear band",
    ),
    "tip_change_lines": MetricInfo("lines", "lines in the tip-change band (0 when there is none)"),
    "tip_change_start": MetricInfo("line", "first line of the tip-change band (counted from 1, as acquired)"),
    "tip_change_end": MetricInfo("line", "last line of the tip-change band"),
    "tip_change_sharpness": MetricInfo(
        "ratio",
        "fine detail in the tip-change band / in the lines around it: below 1 smeared, about 1 offset, above 1 doubled",
    ),
    "sharpness_change": MetricInfo(
        "ratio",
        "lasting change of resolution: fine / coarse detail after the line where it changes most over before "
        "it; 1 = none, 0.5 = the tip got blunter there, 2 = sharper",
    ),
    "sharpness_change_line": MetricInfo("line", "the line from which sharpness_change is measured"),
    "line_break": MetricInfo(
        "ln ratio",
        "the strongest change from one line to the next across the whole width (line offsets removed), "
        "natural log of its size over the scan's usual line-to-line change; about 0-2 on a clean scan, "
        "higher where the tip changed, a line was skipped or the image shifted",
    ),
    "line_break_band": MetricInfo(
        "ln ratio",
        "the same for a band: the weaker of the two strongest breaks 5-60 lines apart (the start and the end "
        "of a tip change); 0 when there is none",
    ),
    "trace_retrace_mismatch": MetricInfo(
        "ratio",
        "RMS difference between trace and retrace after levelling and aligning them, / their RMS "
        "roughness; 0 = identical, about 1.4 = unrelated (the tip lost the surface)",
    ),
    "sq": MetricInfo("nm", "Sq, RMS roughness after levelling (quadratic background + median line alignment)"),
    "sa": MetricInfo("nm", "Sa, mean absolute roughness after levelling"),
    "skewness": MetricInfo("", "Ssk, skewness of the levelled heights: > 0 peaks (particles), < 0 pits"),
    "z_range": MetricInfo("nm", "Sz, peak-to-valley of the levelled heights"),
}


@dataclass(frozen=True)
class Surface:
    """A scan prepared once for all metrics: missing lines removed, raw and levelled heights."""

    raw: np.ndarray  # acquired lines only, float64, remaining NaN filled with the median
    levelled: np.ndarray  # float32, quadratic background (tilt, bow) removed, then each line's median
    background: np.ndarray  # quadratic fit of raw: 1, x, y, x^2, xy, y^2 over x, y in [-1, 1]
    pixel_size_nm: float | None  # along the lines
    is_height: bool
    line_spacing_nm: float | None = None  # between the lines, where it differs (non-square pixels)

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
    steps = row_medians(np.diff(z, axis=0))
    offsets = np.concatenate([[0.0], np.cumsum(steps)])
    return z - offsets[:, None].astype(z.dtype)


def completeness(scan: Scan) -> dict[str, float | int]:
    """How much of the scan was recorded: lines set (metadata), lines acquired, their ratio, lines missing.

    Lines set come from the file's `lines_set` metadata (the operator's setting), else the rows in
    the file; lines acquired from `lines_acquired` metadata and the rows that hold data, whichever
    is smaller. An aborted scan reads e.g. 118 of 256, completeness 0.46."""
    z = scan.height
    acquired = int((~_missing_rows(scan)).sum())
    if (meta_acquired := _metadata_int(scan.metadata, "lines_acquired")) is not None:
        acquired = min(acquired, meta_acquired)
    lines_set = max(_metadata_int(scan.metadata, "lines_set") or z.shape[0], acquired)
    return {
        "completeness": acquired / lines_set,
        "lines_set": lines_set,
        "lines_acquired": acquired,
        "lines_missing": lines_set - acquired,
    }


def _line_spacing(scan: Scan) -> float | None:
    """Distance between lines (nm): the slow-axis scan size over the lines set, where the file says both
    (a 512 x 128 scan of a square area has lines 4 pixels apart), else the pixel size."""
    size: Any = scan.metadata.get("scan_size_nm")  # None or malformed falls to the except below
    lines = _metadata_int(scan.metadata, "lines_set") or scan.shape[0]
    try:
        spacing = float(size[1]) / lines
    except (TypeError, ValueError, IndexError, KeyError):
        return scan.pixel_size_nm
    return spacing if np.isfinite(spacing) and spacing > 0 else scan.pixel_size_nm


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
    # tilt and scanner bow: raw data carries both, and microscopists remove them before judging a scan,
    # so a bowed blank scan still looks blank and a bow never counts as roughness
    c = background
    fitted = c[0] + c[1] * x + c[2] * y + c[3] * x * x + c[4] * x * y + c[5] * y * y
    tilt_removed = (raw - fitted).astype(np.float32)
    return Surface(
        raw=raw,
        levelled=tilt_removed - row_medians(tilt_removed)[:, None],
        background=background,
        pixel_size_nm=scan.pixel_size_nm,
        line_spacing_nm=_line_spacing(scan),
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

    The roughness is taken after tilt and bow are removed (`surface`), so that a blank scan with a
    bowed scanner still reads as blank."""
    rms = _noise_rms(surf.levelled)
    roughness = float(np.std(surf.levelled))
    return {"noise_rms": rms, "signal_to_noise": roughness / rms if rms > 0 else float("inf")}


def tilt_and_bow(surf: Surface) -> dict[str, float | None]:
    """Tilt (degrees, needs calibrated heights and the pixel size; the line spacing across the lines) and
    bow (scan units) before levelling."""
    rows, cols = surf.raw.shape
    c = surf.background
    x = np.linspace(-1, 1, cols)[None, :]
    y = np.linspace(-1, 1, rows)[:, None]
    quadratic = c[3] * x * x + c[4] * x * y + c[5] * y * y
    tilt = None
    if surf.is_height and surf.pixel_size_nm:
        slope_x = c[1] / ((cols - 1) / 2) / surf.pixel_size_nm  # nm of height per nm along the row
        slope_y = c[2] / ((rows - 1) / 2) / (surf.line_spacing_nm or surf.pixel_size_nm)
        tilt = float(np.degrees(np.arctan(np.hypot(slope_x, slope_y))))
    return {"tilt_deg": tilt, "bow": float(quadratic.max() - quadratic.min())}


def surface_statistics(surf: Surface) -> dict[str, float]:
    """Sq, Sa, skewness and peak-to-valley of the levelled heights (ISO 25178 names)."""
    # float64: the cubes of a flat substrate's float32 heights fall into subnormals, 10 x slower
    # products, not powers: z**3 is a general power in NumPy, 6 ms of a 256 x 256 scan's 35
    z = surf.levelled.astype(np.float64)
    z -= z.mean()
    squares = z * z
    sq = float(np.sqrt(squares.mean()))
    return {
        "sq": sq,
        "sa": float(np.abs(z).mean()),
        "skewness": float((squares * z).mean() / sq**3) if sq > 0 else 0.0,
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
    # scipy's FFT: the same single precision as NumPy's for these float32 lines, four times as fast
    size = 2 * cols
    spectrum = scipy.fft.rfft(a - a.mean(axis=1, keepdims=True), size) * np.conj(
        scipy.fft.rfft(b - b.mean(axis=1, keepdims=True), size)
    )
    correlation = scipy.fft.irfft(spectrum.sum(axis=0), size)
    lags = np.arange(-margin, margin + 1)
    shift = int(lags[np.argmax(correlation[lags])])  # correlation[k] peaks where b shifted by -k fits a
    core = a[:, margin : cols - margin]
    moved = b[:, margin - shift : cols - margin - shift]
    diff = core - moved
    diff = diff - row_medians(diff)[:, None]
    roughness = np.sqrt((np.var(core) + np.var(moved)) / 2)
    rms = float(np.sqrt(np.mean(diff**2)))
    return {"trace_retrace_mismatch": rms / roughness if roughness > 0 else None}


def _stretches(a: np.ndarray) -> np.ndarray:
    """rows x cols -> rows x TIP_SEGMENTS x width (the few columns left over are dropped)."""
    rows, cols = a.shape
    width = cols // TIP_SEGMENTS
    return a[:, : width * TIP_SEGMENTS].reshape(rows, TIP_SEGMENTS, width)


def _band_pass(z: np.ndarray, lag: int) -> np.ndarray:
    """Height differences `lag` pixels apart along each line, per stretch, the stretch's mean removed: a
    band-pass around features about 2 x lag wide that ignores line offsets and slopes."""
    g = _stretches(z[:, lag:] - z[:, :-lag])
    return g - g.mean(axis=2, keepdims=True)


def _tip_lags(z: np.ndarray, noise_energy: float) -> tuple[int, int]:
    """(fine, coarse) lags: the smallest at which the surface outweighs the noise in the busier stretches
    (their 75th percentile, on about 64 lines), and 4 x that. Smaller lags see only noise."""
    rows, cols = z.shape
    sample = z[:: max(1, rows // 64)]
    lags = [lag for lag in (1, 2, 4, 8, 16, 32, 64) if lag <= max(1, cols // 16)]
    fine = lags[-1]
    for lag in lags:
        energy = np.mean(_band_pass(sample, lag) ** 2, axis=2) - noise_energy
        if np.quantile(energy, 0.75) > noise_energy:
            fine = lag
            break
    return fine, max(fine, min(4 * fine, cols // 8))


def _line_median(values: np.ndarray, least: float) -> np.ndarray:
    """Median over the stretches of each line, NaN where fewer than `least` of them (and 2) hold a value."""
    enough = np.isfinite(values).sum(axis=1) >= max(2, least * values.shape[1])
    out = np.full(values.shape[0], np.nan)
    if enough.any():
        out[enough] = nanmedian_rows(values[enough])
    return out


def _coherence(g: np.ndarray, content: np.ndarray) -> np.ndarray:
    """coherence[r]: correlation of line r with line r + 1 (band-passed stretches `g` holding surface)."""
    products = np.sum(g[1:] * g[:-1], axis=2)
    norms = np.sqrt(np.sum(g[1:] ** 2, axis=2) * np.sum(g[:-1] ** 2, axis=2))
    both = content[1:] & content[:-1] & (norms > 0)
    correlation = np.divide(products, norms, out=np.zeros_like(products), where=both)
    return _line_median(np.where(both, correlation, np.nan), TIP_BREAK_STRETCHES)


def _break_strength(coherence: np.ndarray) -> np.ndarray:
    """How far each line-to-line decorrelation (1 - coherence) stands out: robust standard deviations
    above the scan's median (never less than TIP_TEAR_FLOOR), 0 where it rises by less than TIP_TEAR_JUMP."""
    breaks = 1 - coherence
    known = np.isfinite(breaks)
    if known.sum() < 4 * TIP_MIN_LINES:
        return np.zeros_like(breaks)
    base = float(small_median(breaks[known]))
    spread = max(1.4826 * float(small_median(np.abs(breaks[known] - base))), TIP_TEAR_FLOOR)
    strength = np.where(known, (breaks - base) / spread, 0.0)
    return np.where(np.nan_to_num(breaks) >= base + TIP_TEAR_JUMP, strength, 0.0)


class TipProfiles(NamedTuple):
    """Per-line profiles of a scan for tip changes (see `tip_profiles`)."""

    sharpness: np.ndarray
    resolution: np.ndarray
    breaks: np.ndarray
    surface: np.ndarray  # fraction of the line's stretches that hold surface, not only noise


def tip_profiles(z: np.ndarray) -> TipProfiles:
    """Three profiles along the slow axis of line-aligned heights `z`, each a median over the stretches of
    a line and relative to the usual at the same place (the median down the scan):

    sharpness[r]: fine detail in line r, natural log of its RMS (noise included: never below the noise);
    resolution[r]: fine / coarse detail, natural log of the RMS ratio, where the stretch holds surface
    (not only noise), so that more or fewer features do not change it (NaN where fewer than half do);
    a blunter tip lowers both;
    breaks[r]: how far the decorrelation of line r from line r + 1 stands out (`_break_strength`), the
    larger at the fine and the coarse scale; a tip change breaks every stretch at once. Breaks within
    TIP_EDGE_LINES of the first or last line (more on scans of more than 256 lines) are not counted;
    surface[r]: the fraction of line r's stretches that hold surface."""
    noise_energy = max(2 * _noise_rms(z) ** 2, 1e-12 * float(np.var(z)), 1e-30)  # of a lag difference
    fine, coarse = _tip_lags(z, noise_energy)
    g_coarse = _band_pass(z, coarse)
    g_fine = _band_pass(z, fine) if fine != coarse else g_coarse
    coarse_energy = np.mean(g_coarse**2, axis=2)
    fine_energy = np.mean(g_fine**2, axis=2)
    level = 0.5 * np.log(fine_energy + noise_energy)
    sharpness = row_medians(level - row_medians(level.T))
    content = coarse_energy > TIP_CONTENT * noise_energy
    fine_detail = np.maximum(fine_energy - noise_energy, 0.05 * noise_energy)
    ratio = fine_detail / np.maximum(coarse_energy - noise_energy, 1e-30)
    detail = np.where(content, 0.5 * np.log(ratio), np.nan)
    usual = np.zeros(detail.shape[1])
    seen = content.any(axis=0)
    usual[seen] = nanmedian_rows(detail[:, seen].T)
    resolution = _line_median(detail - usual, TIP_DETAIL_STRETCHES)
    breaks = _break_strength(_coherence(g_coarse, content))
    if fine != coarse:
        fine_content = fine_energy > TIP_CONTENT * noise_energy
        breaks = np.maximum(breaks, _break_strength(_coherence(g_fine, fine_content)))
    # the first and last lines of a scan (piezo creep, the frame of an image export) say nothing of the tip
    edge = max(TIP_EDGE_LINES, TIP_EDGE_LINES * z.shape[0] // 256)
    breaks[: edge - 1] = 0.0
    breaks[breaks.size - edge + 1 :] = 0.0
    return TipProfiles(sharpness, resolution, breaks, content.mean(axis=1))


def _tears(breaks: np.ndarray, max_lines: int) -> list[tuple[int, int]]:
    """Bands [start, end) whose first and last lines break off from the lines outside them while the lines
    inside hang together, and single breaks strong enough on their own (the band then runs to the edge
    of the scan): candidate tip changes."""
    edges = np.flatnonzero(breaks >= TIP_TEAR_SIGMA)
    partner: dict[int, tuple[float, int, int]] = {}  # each break keeps its strongest partner
    bands = []
    for i in edges:
        for j in edges[(edges - i >= TIP_MIN_LINES) & (edges - i <= max_lines)]:
            strength = float(min(breaks[i], breaks[j]))
            # a band of streaks or noise breaks between all its lines: that is not one tip
            if small_median(breaks[i + 1 : j]) <= 0.35 * strength:
                for key in (int(i), int(j)):
                    if key not in partner or strength > partner[key][0]:
                        partner[key] = (strength, int(i) + 1, int(j) + 1)
        if breaks[i] >= TIP_BREAK_ALONE and 2 * TIP_MIN_LINES <= i + 1 <= breaks.size + 1 - 2 * TIP_MIN_LINES:
            bands += [(int(i) + 1, breaks.size + 1), (0, int(i) + 1)]  # the tip changed for what follows
    return bands + [(start, end) for _, start, end in partner.values()]


def _window_medians(values: np.ndarray, width: int) -> np.ndarray:
    """medians[i] = median of values[i : i + width] (NaN-aware; NaN with fewer than 2 values)."""
    windows = np.lib.stride_tricks.sliding_window_view(values, width)
    enough = np.isfinite(windows).sum(axis=1) >= 2
    out = np.full(windows.shape[0], np.nan)
    if enough.any():
        out[enough] = nanmedian_rows(windows[enough])
    return out


def _steps(profile: np.ndarray, width: int = 4) -> np.ndarray:
    """steps[r]: median of profile[r : r + width] - median of profile[r - width : r] (0 where unknown)."""
    steps = np.zeros(profile.size + 1)
    if profile.size < 2 * width:
        return steps
    medians = _window_medians(profile, width)
    r = np.arange(width, profile.size - width + 1)
    steps[r] = np.nan_to_num(medians[r] - medians[r - width])
    return steps


def _plateau(profile: np.ndarray, start: int, end: int, floor: float) -> tuple[float, float]:
    """(loss, evidence) of a band: how much lower `profile` is in it than in the lines around it (the
    smaller of the medians around it, one side at the edge of the scan, minus the mean inside), and that
    loss over the spread of those lines about their medians, or `floor` if larger."""
    lines = end - start
    margin = int(np.clip(lines, 8, 30))
    inside = profile[start:end]
    outside = [profile[max(0, start - margin) : start], profile[end : end + margin]]
    inside = inside[np.isfinite(inside)]
    outside = [o[np.isfinite(o)] for o in outside if o.size]
    if inside.size < 0.6 * lines or not outside or any(o.size < 4 for o in outside):
        return 0.0, 0.0
    # the mean inside: lines of the band that lost nothing (a band drawn too long) pull it back
    middle = float(np.mean(inside))
    levels = [float(small_median(o)) for o in outside]
    loss = min(levels) - middle
    residuals = np.concatenate([inside - small_median(inside)] + [o - m for o, m in zip(outside, levels)])
    return loss, loss / max(_mad(residuals), floor)


def _mad(values: np.ndarray) -> float:
    return 1.4826 * float(small_median(np.abs(values - small_median(values)))) if values.size else 0.0


def _centre(steps: np.ndarray, line: int, width: int = 4) -> int:
    """The middle of the lines near `line` whose step is within 10 % of the largest there: a sharp step
    gives several equal window differences, and the edge lies in their middle."""
    near = np.arange(max(0, line - width), min(steps.size, line + width + 1))
    size = np.abs(steps[near])
    chosen = near[size >= 0.9 * size.max()]
    return int(round(chosen.sum() / chosen.size))  # np.mean's value, without its overhead


def _smears(profile: np.ndarray, max_lines: int) -> list[tuple[int, int]]:
    """Bands [start, end) where `profile` steps down and, 5 to `max_lines` lines later, up again."""
    if np.isfinite(profile).sum() < 4 * TIP_MIN_LINES:
        return []
    steps = _steps(profile)
    level = float(small_median(profile[np.isfinite(profile)]))
    downs = np.flatnonzero((steps <= -TIP_SMEAR_STEP) & (steps <= np.roll(steps, 1)) & (steps <= np.roll(steps, -1)))
    ups = np.flatnonzero((steps >= TIP_SMEAR_STEP) & (steps >= np.roll(steps, 1)) & (steps >= np.roll(steps, -1)))
    if downs.size == 0 or ups.size == 0:
        return []
    # each step pairs with the strongest opposite step in reach (fewer, better candidates)
    apart = ups[None, :] - downs[:, None]
    reach = (apart >= TIP_MIN_LINES) & (apart <= max_lines)
    strength = np.where(reach, steps[ups][None, :] - steps[downs][:, None], -np.inf)
    best_up, best_down = np.argmax(strength, axis=1), np.argmax(strength, axis=0)
    pairs = {(int(downs[i]), int(ups[j])) for i, j in enumerate(best_up) if np.isfinite(strength[i, j])}
    pairs |= {(int(downs[i]), int(ups[j])) for j, i in enumerate(best_down) if np.isfinite(strength[i, j])}
    bands = []
    for a, b in pairs:
        a, b = _centre(steps, a), _centre(steps, b)
        if not TIP_MIN_LINES <= b - a <= max_lines:
            continue
        inside = profile[a:b]
        inside = inside[np.isfinite(inside)]
        if inside.size and small_median(inside) <= level - TIP_SMEAR_STEP:
            bands.append((a, b))
    return bands


def sharpness_step(resolution: np.ndarray) -> tuple[int, float] | None:
    """(line, ratio): where the resolution changes most lastingly (the split that maximises the difference
    of the mean resolution before and after it, weighted by how many lines each side holds), and the
    ratio of the median fine / coarse detail after it to before it. The resolution, not the sharpness:
    a scan whose first lines cross no feature is not sharper below them. None with too few known lines."""
    known = np.flatnonzero(np.isfinite(resolution))
    if known.size < 4 * TIP_MIN_LINES:
        return None
    values = resolution[known]
    n = values.size
    before = np.cumsum(values)[:-1]
    counts = np.arange(1, n)
    after = values.sum() - before
    contrast = np.abs(after / (n - counts) - before / counts) * np.sqrt(counts * (n - counts) / n)
    ends = slice(2 * TIP_MIN_LINES - 1, n - 2 * TIP_MIN_LINES)  # at least 10 known lines on each side
    split = int(np.argmax(contrast[ends])) + ends.start + 1
    ratio = float(np.exp(small_median(values[split:]) - small_median(values[:split])))
    return int(known[split]), ratio


def tip_change_bands(z: np.ndarray, profiles: TipProfiles | None = None) -> list[dict[str, float]]:
    """Every candidate tip-change band [start, end) of line-aligned heights `z` with its evidence: `tear`
    (how strongly its first and last lines break off from the lines outside, `_break_strength`; a band
    that runs to an edge of the scan has one break, counted at TIP_BREAK_ALONE_WEIGHT), `loss` (resolution
    lost in the band, natural log) and `smear` (that loss over its spread), `dull` and `blur` (the same for
    sharpness), `vanished` (1 where the surface shows in nearly every stretch around the band and in few
    inside it: smeared into the noise). `profiles`: `tip_profiles(z)` if known."""
    rows = z.shape[0]
    sharpness, resolution, breaks, shown = profiles if profiles is not None else tip_profiles(z)
    max_lines = int(round(TIP_MAX_LINES * max(1.0, np.sqrt(rows / 256))))
    candidates = set(_tears(breaks, max_lines))
    candidates |= set(_smears(resolution, max_lines)) | set(_smears(sharpness, max_lines))
    # a band's loss counts against the larger of its own spread and the whole profile's
    floors = [max(TIP_PROFILE_FLOOR, TIP_GLOBAL_SPREAD * _mad(p[np.isfinite(p)])) for p in (resolution, sharpness)]
    found = []
    for start, end in sorted(candidates):
        lines = end - start
        inner = [line for line in (start, end) if 0 < line < rows]
        edges = [breaks[max(0, line - 2) : line + 1].max(initial=0.0) for line in inner]
        # the band's breaks must stand out from any other break around it: many breaks are streaks
        margin = int(np.clip(lines, 4 * TIP_MIN_LINES, 30))
        around = np.zeros(rows - 1, dtype=bool)
        around[max(0, start - margin) : end + margin] = True
        for line in inner:
            around[max(0, line - 2) : line + 1] = False
        others = breaks[around].max(initial=0.0)
        tear = max(min(edges) - others, 0.0) * (1.0 if len(edges) == 2 else TIP_BREAK_ALONE_WEIGHT)
        loss, smear = _plateau(resolution, start, end, floors[0])
        dull, blur = _plateau(sharpness, start, end, floors[1])
        outside = np.concatenate([shown[max(0, start - margin) : start], shown[end : end + margin]])
        elsewhere = np.concatenate([shown[: max(0, start - margin)], shown[end + margin :]])
        vanished = (
            outside.size >= 2 * TIP_MIN_LINES
            and np.mean(outside >= TIP_DENSE) >= 0.9
            and np.mean(shown[start:end]) <= 0.5 * np.mean(outside)
            # nowhere else: a grating's gaps between rows of pillars come back again and again
            and np.count_nonzero(elsewhere <= 0.5 * np.mean(outside)) < 0.1 * max(elsewhere.size, 1)
        )
        found.append(
            {
                "start": start,
                "end": end,
                "tear": float(tear),
                "loss": loss,
                "smear": smear,
                "dull": dull,
                "blur": blur,
                "vanished": float(vanished),
            }
        )
    return found


def _evidence(band: dict[str, float]) -> float:
    """One number for a band: its breaks and its changed detail combined (root of the sum of squares).
    Detail lost over TIP_SMEAR_MIN_LINES or more lines counts (detail gained too, between two breaks),
    weighted by sqrt(lines / 20): natural dips of a few lines are common, a tip that stays blunt for
    dozens of lines is not."""
    lines = band["end"] - band["start"]
    smear = 0.0
    if lines >= TIP_SMEAR_MIN_LINES:
        if band["loss"] >= TIP_SMEAR_MIN_LOSS:
            smear = band["smear"]
        # sharpness alone also drops where features are missing: it counts where the resolution drops
        # too, or where the surface vanished from a band of a scan that shows it everywhere else
        if (band["loss"] >= TIP_SMEAR_MIN_LOSS / 2 or band["vanished"]) and band["dull"] >= TIP_SMEAR_MIN_LOSS:
            smear = max(smear, band["blur"])
        # between two breaks, finer detail counts too: a second apex doubles every edge
        if band["tear"] > 0 and -band["loss"] >= TIP_SMEAR_MIN_LOSS:
            smear = max(smear, -band["smear"])
    return float(np.hypot(band["tear"], smear * np.sqrt(min(lines, TIP_MAX_LINES) / 20)))


def tip_change(surf: Surface) -> dict[str, float | int | None]:
    """The strongest tip-change band (see `tip_change_bands`) and the lasting change of resolution.

    Uses only the one image (many files hold one scan direction). A band is reported when its evidence
    reaches TIP_REPORT; the score is reported either way."""
    z = surf.line_aligned  # float32: the stretch sums below are short enough for its precision
    values: dict[str, float | int | None] = {
        "tip_change_score": None,
        "tip_change_lines": None,
        "tip_change_start": None,
        "tip_change_end": None,
        "tip_change_sharpness": None,
        "sharpness_change": None,
        "sharpness_change_line": None,
    }
    if z.shape[0] < 4 * TIP_MIN_LINES or z.shape[1] < 8 * TIP_SEGMENTS:
        return values
    profiles = tip_profiles(z)
    best = max(tip_change_bands(z, profiles), key=_evidence, default=None)
    score = _evidence(best) if best else 0.0
    values.update(tip_change_score=score, tip_change_lines=0)
    if best and score >= TIP_REPORT:
        values.update(
            tip_change_lines=best["end"] - best["start"],
            tip_change_start=best["start"] + 1,
            tip_change_end=best["end"],
            tip_change_sharpness=float(np.exp(-max(best["loss"], best["dull"]))),
        )
    step = sharpness_step(profiles.resolution)
    if step is not None:
        values.update(sharpness_change=step[1], sharpness_change_line=step[0] + 1)
    return values


def line_break_profile(z: np.ndarray) -> np.ndarray:
    """profile[r]: natural log of the change from line r to line r + 1 of line-aligned heights `z` over the
    scan's median change (median over LINE_BREAK_SEGMENTS stretches, each stretch's mean change removed);
    0 at the first and last lines, which are not counted."""
    rows, cols = z.shape
    width = cols // LINE_BREAK_SEGMENTS
    change = np.diff(np.asarray(z, dtype=np.float64), axis=0)[:, : width * LINE_BREAK_SEGMENTS]
    change = change.reshape(rows - 1, LINE_BREAK_SEGMENTS, width)
    change = change - change.mean(axis=2, keepdims=True)
    energy = np.median(np.mean(change**2, axis=2), axis=1)
    usual = max(float(np.median(energy)), 1e-30)
    profile = np.log(np.maximum(energy, 1e-30) / usual)
    edge = max(LINE_BREAK_EDGE, rows // 64)
    profile[:edge] = 0.0
    profile[-edge:] = 0.0
    return profile


def line_breaks(surf: Surface) -> dict[str, float | None]:
    """`line_break` and `line_break_band` (see METRICS) from `line_break_profile`. Uses only the one image
    (many files hold one scan direction)."""
    z = surf.line_aligned
    if z.shape[0] < 4 * TIP_MIN_LINES or z.shape[1] < 2 * LINE_BREAK_SEGMENTS:
        return {"line_break": None, "line_break_band": None}
    profile = line_break_profile(z)
    strongest = np.argsort(profile)[::-1][:LINE_BREAK_CANDIDATES]
    apart = strongest[None, :] - strongest[:, None]
    longest = max(TIP_MAX_LINES, int(TIP_MAX_LINES * np.sqrt(z.shape[0] / 256)))
    pairs = (apart >= TIP_MIN_LINES) & (apart <= longest)
    weaker = np.minimum(profile[strongest][:, None], profile[strongest][None, :])
    band = float(weaker[pairs].max()) if pairs.any() else 0.0
    return {"line_break": float(profile.max()), "line_break_band": max(band, 0.0)}  # max: the edges' zeros


# Metrics only a file with both scan directions has (many hold one: Asylum's often only the retrace
# channels, image exports always).
BOTH_DIRECTIONS = frozenset({"trace_retrace_mismatch"})


def holds_one_direction(metrics: Mapping[str, Any]) -> bool:
    """Whether these metrics were measured without a retrace (no both-direction metric)."""
    return any(metrics.get(name) is None for name in BOTH_DIRECTIONS)


def measure(scan: Scan, retrace: Scan | None = None) -> dict[str, float | int | None]:
    """Every metric in METRICS for `scan` (None where one does not apply), in METRICS order."""
    return _measure(scan, retrace, alone_too=False)[0]


def measure_directions(
    scan: Scan, retrace: Scan | None
) -> tuple[dict[str, float | int | None], dict[str, float | int | None]]:
    """The metrics of `scan` with its retrace and without it, as a file that holds one scan direction
    is measured (no trace/retrace mismatch; scars not checked against the other direction). Training
    a metrics model for each kind of file costs one measurement of what the two share."""
    return _measure(scan, retrace, alone_too=True)


def _measure(
    scan: Scan, retrace: Scan | None, alone_too: bool
) -> tuple[dict[str, float | int | None], dict[str, float | int | None]]:
    """(with the retrace, without it); the second is the first when there is no retrace or `alone_too`
    is False."""
    values: dict[str, float | int | None] = dict.fromkeys(METRICS)
    values.update(completeness(scan))
    surf = surface(scan)
    if surf is None:
        return values, values
    for group in (clipping, noise, tilt_and_bow, surface_statistics, tip_change, line_breaks):
        values.update(group(surf))
    retrace_surf = surface(retrace) if retrace is not None else None
    both = dict(values, **line_artefacts(surf, retrace_surf))
    if retrace_surf is not None:
        both.update(trace_retrace(surf, retrace_surf))
    alone = dict(values, **line_artefacts(surf)) if alone_too and retrace_surf is not None else both
    plain = {name: _plain(value) for name, value in both.items()}
    return plain, (plain if alone is both else {name: _plain(value) for name, value in alone.items()})


def _plain(value: Any) -> float | int | None:
    """A JSON-able number: Python int or float, None for missing or non-finite values."""
    if value is None:
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    value = float(value)
    return value if np.isfinite(value) else None


def format_value(name: str, value: float | int | None, height_units: str = "nm") -> str:
    """A metric value as a person reads it: 3 significant digits with its units, fractions in percent;
    heights in `height_units` (the scan's: "a.u." for uncalibrated image exports)."""
    if value is None:
        return "n/a"
    units = METRICS[name].units if name in METRICS else ""
    units = height_units if units == "nm" else ("" if units == "ratio" else units)
    if units.startswith("fraction"):
        return f"{value * 100:.3g} %{units[len('fraction') :]}"
    text = str(value) if isinstance(value, int) else f"{value:.3g}"
    return f"{text} {units}".strip()
