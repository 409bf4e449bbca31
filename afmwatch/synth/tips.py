"""Tip modelling as in Gwyddion (Tip > Dilation): the image a tip records is the surface dilated by it.

A tip is a small height map (nm) with its apex at 0 and its flanks below; the recorded image at x is
max over the tip's footprint u of surface(x + u) + tip(u). A blunt tip broadens every feature; a double
tip (two apices) repeats every feature at a fixed offset; a worn tip (flat, lopsided apex) stamps its
own shape on every feature. Tips that are a sum of a row profile and a column profile dilate in two
1-D passes, which keeps wide tips cheap.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage


def dilate(surface: np.ndarray, tip: np.ndarray) -> np.ndarray:
    """Grey dilation of `surface` by `tip` (apex 0, flanks negative; odd-sized, apex at the centre)."""
    if tip.shape[0] % 2 == 0 or tip.shape[1] % 2 == 0:
        raise ValueError(f"tip shape must be odd in both directions, got {tip.shape}")
    return ndimage.grey_dilation(surface, structure=tip, mode="nearest")


def parabolic_profile(radius_nm: float, pixel_size_nm: float, depth_nm: float) -> np.ndarray:
    """1-D section of a paraboloid tip of apex radius `radius_nm`, cut where it is `depth_nm` below the apex."""
    half = int(np.sqrt(2 * radius_nm * max(depth_nm, 1e-9)) / pixel_size_nm) + 1
    u = np.arange(-half, half + 1) * pixel_size_nm
    return -(u * u) / (2 * radius_nm)


def parabolic_tip(radius_nm: float, pixel_size_nm: float, depth_nm: float) -> np.ndarray:
    """A 2-D paraboloid tip (what Gwyddion's tip model calls a blunt, rounded apex)."""
    profile = parabolic_profile(radius_nm, pixel_size_nm, depth_nm)
    return profile[:, None] + profile[None, :]


def blunt_tip_image(
    surface: np.ndarray, radius_nm: float, pixel_size_nm: float, depth_nm: float | None = None
) -> np.ndarray:
    """The surface imaged by a paraboloid tip: equal to `dilate(surface, parabolic_tip(...))`.

    A paraboloid is a sum of two 1-D parabolas, so its dilation separates into a row pass and a column
    pass: the same result as the 2-D dilation at a fraction of the cost for wide tips. With `depth_nm`
    the tip is cut that far below its apex (exact when the surface's range is smaller; cheaper on a
    staircase whose range is many features high).
    """
    depth = float(np.ptp(surface)) if depth_nm is None else depth_nm
    profile = parabolic_profile(radius_nm, pixel_size_nm, depth)
    rows = ndimage.grey_dilation(surface, structure=profile[None, :], mode="nearest")
    return ndimage.grey_dilation(rows, structure=profile[:, None], mode="nearest")


def worn_profile(radius_nm: float, pixel_size_nm: float, depth_nm: float, steepness: float, flat_px: int) -> np.ndarray:
    """1-D section of a worn tip, odd-sized with the apex in the middle: a flat of `flat_px` pixels
    (a broken-off end), then parabolic flanks of radius `radius_nm` on one side and `radius_nm /
    steepness` on the other (a lopsided, chipped apex); cut `depth_nm` below the apex."""
    depth = max(depth_nm, 1e-9)
    half = int(np.sqrt(2 * radius_nm * depth) / pixel_size_nm) + 1
    u = np.arange(1, half + 1) * pixel_size_nm
    shallow = -(u * u) / (2 * radius_nm)
    steep = -(u * u) * steepness / (2 * radius_nm)
    flat = np.zeros(flat_px + 1)
    left, right = steep[::-1], shallow
    profile = np.concatenate([left, flat, right])
    # centre the apex's flat in an odd-sized array; the padding is never reached (far below the apex)
    centre = left.size + flat_px // 2
    pad = profile.size - 1 - 2 * centre
    below = -10 * depth - 1.0
    if pad > 0:
        profile = np.concatenate([np.full(pad, below), profile])
    elif pad < 0:
        profile = np.concatenate([profile, np.full(-pad, below)])
    return profile


def worn_tip_image(
    surface: np.ndarray,
    radius_nm: float,
    pixel_size_nm: float,
    steepness: tuple[float, float],
    flat_px: tuple[int, int],
    flip: tuple[bool, bool],
) -> np.ndarray:
    """The surface imaged by a worn tip: a flat-ended, lopsided paraboloid (the sum of a row and a column
    `worn_profile`, mirrored where `flip`). Every feature smaller than the tip comes out as the same
    flat-topped, one-sided mound, all pointing one way."""
    depth = float(np.ptp(surface))
    along_row = worn_profile(radius_nm, pixel_size_nm, depth, steepness[1], flat_px[1])
    along_column = worn_profile(radius_nm, pixel_size_nm, depth, steepness[0], flat_px[0])
    along_row = along_row[::-1] if flip[1] else along_row
    along_column = along_column[::-1] if flip[0] else along_column
    out = ndimage.grey_dilation(surface, structure=along_row[None, :], mode="nearest")
    return ndimage.grey_dilation(out, structure=along_column[:, None], mode="nearest")


def coarse_image(surface: np.ndarray, factor: int, image: Callable[[np.ndarray, int], np.ndarray]) -> np.ndarray:
    """`image(pooled, factor)` on pixels `factor` times larger, interpolated back to the surface's grid.

    For tips many pixels wide, whose images are smooth anyway: the surface is max-pooled first so no
    peak is lost, and the cost of a dilation falls by about factor**3.
    """
    if factor <= 1:
        return image(surface, 1)
    offset = factor // 2
    pooled = ndimage.maximum_filter(surface, size=factor, mode="nearest")[offset::factor, offset::factor]
    coarse = image(pooled, factor)
    rows, cols = surface.shape
    y = (np.arange(rows) - offset) / factor
    x = (np.arange(cols) - offset) / factor
    yy, xx = np.meshgrid(y, x, indexing="ij")
    return ndimage.map_coordinates(coarse, [yy, xx], order=1, mode="nearest")


def double_tip_image(surface: np.ndarray, offset_px: tuple[int, int], drop_nm: float) -> np.ndarray:
    """The surface imaged by a tip with a second apex `offset_px` (rows, cols) away and `drop_nm` lower.

    Dilation by a two-point tip: every feature appears again, shifted by the offset and lowered by
    the drop, wherever it stands higher than what the main apex records.
    """
    dy, dx = -offset_px[0], -offset_px[1]
    ghost = np.full_like(surface, -np.inf)
    rows, cols = surface.shape
    src_y = slice(max(dy, 0), rows + min(dy, 0))
    dst_y = slice(max(-dy, 0), rows + min(-dy, 0))
    src_x = slice(max(dx, 0), cols + min(dx, 0))
    dst_x = slice(max(-dx, 0), cols + min(-dx, 0))
    ghost[dst_y, dst_x] = surface[src_y, src_x] - drop_nm
    return np.maximum(surface, ghost)
