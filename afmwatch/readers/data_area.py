"""Where the scan is inside an image export, and what its colours mean.

Exports from analysis software (Gwyddion, TopoStats, matplotlib, vendor viewers) put the scan in a
framed plot area on a plain background, often with axes, a title and a colour scale bar. We find the
plot area as the largest solid rectangle that differs from the background, strip its frame line, and
look for a long thin solid rectangle beside or below it: the colour bar. When the bar is found and the
scan's colours are the bar's colours, each pixel becomes its position on the bar (0 = bottom of the
scale, 1 = top): a height-like channel in arbitrary units, since tick labels are text we do not read.
Boxes are [top, left, bottom, right] in pixels, bottom and right exclusive (numpy slicing).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Box = tuple[int, int, int, int]

_BACKGROUND_TOLERANCE = 16  # per-channel difference still counted as background (anti-aliasing)
_GAP_TOLERANCE = 60  # the same, for a gap blurred by JPEG compression
_MIN_SIDE = 16  # smallest plot or bar side considered, in pixels
_SOLID_FILL = 0.9  # a rectangle counts as solid when this share of its box is foreground
_MAX_FRAME = 3  # frame lines stripped per side, at most
_MAX_BAR_MISMATCH = 12.0  # median RGB distance from a scan pixel to its nearest bar colour


@dataclass(frozen=True)
class ExportLayout:
    """What was found in an image export."""

    data_area: Box
    colour_bar: Box | None = None
    bar_orientation: str | None = None  # "vertical" (max at top) or "horizontal" (max at right)


def _background(rgb: np.ndarray) -> np.ndarray | None:
    """The figure background colour, if the image has a plain border (a figure, not a bare scan)."""
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]]).astype(np.int16)
    colours, counts = np.unique(border, axis=0, return_counts=True)
    colour = colours[counts.argmax()]
    near = np.all(np.abs(border - colour) <= _BACKGROUND_TOLERANCE, axis=1)
    return colour if near.mean() >= 0.6 else None


def _trim_sparse(sub: np.ndarray, box: Box) -> Box:
    """Shrink a component's box past rows/columns it only touches with tick marks or labels
    (`sub` is the component's mask within `box`)."""
    top, left, bottom, right = box
    rows = np.flatnonzero(sub.mean(axis=1) >= 0.5)
    cols = np.flatnonzero(sub.mean(axis=0) >= 0.5)
    if rows.size == 0 or cols.size == 0:
        return box
    return top + rows[0], left + cols[0], top + rows[-1] + 1, left + cols[-1] + 1


def _is_frame_line(line: np.ndarray, inner: np.ndarray) -> bool:
    """A uniform line (the axes frame) that differs from the pixels just inside it."""
    line = line.astype(np.float32)
    median = np.median(line, axis=0)
    uniform = np.mean(np.all(np.abs(line - median) <= 24, axis=1)) >= 0.9
    distinct = np.abs(inner.astype(np.float32).mean(axis=0) - median).max() > 30
    return bool(uniform and distinct)


def _strip_frame(rgb: np.ndarray, box: Box) -> Box:
    top, left, bottom, right = box
    for _ in range(_MAX_FRAME):
        if bottom - top <= 2 * _MIN_SIDE or not _is_frame_line(rgb[top, left:right], rgb[top + 1, left:right]):
            break
        top += 1
    for _ in range(_MAX_FRAME):
        if bottom - top <= 2 * _MIN_SIDE or not _is_frame_line(
            rgb[bottom - 1, left:right], rgb[bottom - 2, left:right]
        ):
            break
        bottom -= 1
    for _ in range(_MAX_FRAME):
        if right - left <= 4 or not _is_frame_line(rgb[top:bottom, left], rgb[top:bottom, left + 1]):
            break
        left += 1
    for _ in range(_MAX_FRAME):
        if right - left <= 4 or not _is_frame_line(rgb[top:bottom, right - 1], rgb[top:bottom, right - 2]):
            break
        right -= 1
    return top, left, bottom, right


def _solid_rectangles(mask: np.ndarray) -> list[Box]:
    """Boxes of connected foreground regions that nearly fill their bounding box, largest first."""
    from scipy import ndimage

    labels, count = ndimage.label(mask)
    boxes = []
    for index, slices in enumerate(ndimage.find_objects(labels), start=1):
        if slices is None:
            continue
        box = (slices[0].start, slices[1].start, slices[0].stop, slices[1].stop)
        if min(box[2] - box[0], box[3] - box[1]) < 4 or max(box[2] - box[0], box[3] - box[1]) < _MIN_SIDE:
            continue
        top, left, bottom, right = _trim_sparse(labels[slices] == index, box)
        if min(bottom - top, right - left) < 4 or max(bottom - top, right - left) < _MIN_SIDE:
            continue
        if (labels[top:bottom, left:right] == index).mean() >= _SOLID_FILL:
            boxes.append((top, left, bottom, right))
    return sorted(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]), reverse=True)


def _find_bar(rgb: np.ndarray, plot: Box, candidates: list[Box]) -> tuple[Box, str] | None:
    top, left, bottom, right = plot
    height, width = bottom - top, right - left
    best = None
    for box in candidates:
        b_top, b_left, b_bottom, b_right = box
        b_height, b_width = b_bottom - b_top, b_right - b_left
        if b_left >= right and b_height >= 0.5 * height and b_height >= 3 * b_width:
            orientation, gap = "vertical", b_left - right
        elif b_top >= bottom and b_width >= 0.5 * width and b_width >= 3 * b_height:
            orientation, gap = "horizontal", b_top - bottom
        else:
            continue
        if best is None or gap < best[2]:
            best = (box, orientation, gap)
    if best is None:
        return None
    box = _strip_frame(rgb, best[0])
    return box, best[1]


def _split_off_bar(rgb: np.ndarray, box: Box, background: np.ndarray) -> list[Box]:
    """Split a plot that JPEG ringing has joined to its colour bar across the narrow background gap
    between them; returns the pieces, largest first (just `box` when there is no such gap)."""
    top, left, bottom, right = box
    near = np.all(np.abs(rgb[top:bottom, left:right].astype(np.int16) - background) <= _GAP_TOLERANCE, axis=2)
    for axis in (0, 1):  # columns (a bar on the right), then rows (a bar below)
        gap = near.mean(axis=axis) > 0.8
        length = len(gap)
        in_last_part = np.flatnonzero(gap[int(length * 0.85) : length - 4])
        if in_last_part.size == 0:
            continue
        begin = end = int(length * 0.85) + int(in_last_part[0])
        while begin > 0 and gap[begin - 1]:
            begin -= 1
        while end < length and gap[end]:
            end += 1
        if end >= length:
            continue  # background up to the edge: nothing beyond the gap
        if axis == 0:
            return [(top, left, bottom, left + begin), (top, left + end, bottom, right)]
        return [(top, left, top + begin, right), (top + end, left, bottom, right)]
    return [box]


def find_layout(rgb: np.ndarray) -> ExportLayout:
    """The plot area (and colour bar) of an RGB export; the whole image when it has no figure border."""
    rows, cols = rgb.shape[:2]
    whole = ExportLayout((0, 0, rows, cols))
    if min(rows, cols) < 2 * _MIN_SIDE:
        return whole
    background = _background(rgb)
    if background is None:
        return whole
    foreground = np.any(np.abs(rgb.astype(np.int16) - background) > _BACKGROUND_TOLERANCE, axis=2)
    candidates = _solid_rectangles(foreground)
    if not candidates:
        return whole
    candidates = _split_off_bar(rgb, candidates[0], background) + candidates[1:]
    plot = candidates[0]
    if min(plot[2] - plot[0], plot[3] - plot[1]) < _MIN_SIDE:
        return whole
    bar = _find_bar(rgb, plot, candidates[1:])
    plot = _strip_frame(rgb, plot)
    if bar is None:
        return ExportLayout(plot)
    return ExportLayout(plot, bar[0], bar[1])


def crop_right(rows: int, cols: int, fraction: float = 0.3) -> Box:
    """The original study's fixed crop: drop the right `fraction` of the image (where the colour bar was)."""
    return 0, 0, rows, max(1, int(round(cols * (1.0 - fraction))))


def bar_colours(rgb: np.ndarray, bar: Box, orientation: str) -> np.ndarray:
    """The bar's colours from the bottom of the scale to the top (N x 3, float)."""
    top, left, bottom, right = bar
    patch = rgb[top:bottom, left:right].astype(np.float32)
    if orientation == "vertical":
        # middle half of the columns, away from anti-aliased edges; row 0 is the top of the scale
        width = right - left
        colours = np.median(patch[:, width // 4 : max(width // 4 + 1, 3 * width // 4)], axis=1)[::-1]
    else:
        height = bottom - top
        colours = np.median(patch[height // 4 : max(height // 4 + 1, 3 * height // 4)], axis=0)
    return colours


def colours_to_values(rgb: np.ndarray, colours: np.ndarray) -> tuple[np.ndarray, float] | None:
    """Each pixel's position on the colour scale (0..1), and the median colour mismatch; None when
    the bar is not a smooth scale or the image is not painted with it."""
    from scipy.spatial import cKDTree

    if len(colours) < _MIN_SIDE:
        return None
    steps = np.linalg.norm(np.diff(colours, axis=0), axis=1)
    if np.ptp(colours, axis=0).max() < 64 or np.percentile(steps, 95) > 40:
        return None  # too few distinct colours, or jumps: labels or a legend, not a scale
    pixels = rgb.reshape(-1, 3).astype(np.float32)
    distance, index = cKDTree(colours).query(pixels)
    mismatch = float(np.median(distance))
    if mismatch > _MAX_BAR_MISMATCH:
        return None
    values = index.astype(np.float32) / (len(colours) - 1)
    return values.reshape(rgb.shape[:2]), mismatch
