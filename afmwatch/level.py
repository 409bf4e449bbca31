"""Levelling as Gwyddion and TopoStats do it: plane fit, median row alignment, optional polynomial."""

from __future__ import annotations

import numpy as np

from afmwatch.scan import Scan


def _fit_surface(z: np.ndarray, order: int) -> np.ndarray:
    """Least-squares 2-D polynomial of total degree `order` over the finite pixels, evaluated everywhere."""
    rows, cols = z.shape
    y, x = np.mgrid[0:rows, 0:cols].astype(np.float64)
    x = x / max(cols - 1, 1) * 2 - 1
    y = y / max(rows - 1, 1) * 2 - 1
    terms = [x**i * y**j for i in range(order + 1) for j in range(order + 1 - i)]
    mask = np.isfinite(z)
    if mask.sum() < len(terms):
        return np.zeros_like(z, dtype=np.float64)
    design = np.stack([t[mask] for t in terms], axis=1)
    coeffs, *_ = np.linalg.lstsq(design, z[mask].astype(np.float64), rcond=None)
    return sum(c * t for c, t in zip(coeffs, terms))


def plane_fit(z: np.ndarray) -> np.ndarray:
    """Remove the best-fit plane (sample tilt)."""
    return (z - _fit_surface(z, 1)).astype(np.float32)


def polynomial_fit(z: np.ndarray, order: int = 2) -> np.ndarray:
    """Remove a 2-D polynomial background (scanner bow)."""
    return (z - _fit_surface(z, order)).astype(np.float32)


def align_rows(z: np.ndarray) -> np.ndarray:
    """Subtract each fast-scan row's median (Gwyddion's Align Rows, median method)."""
    medians = np.nanmedian(z, axis=1, keepdims=True)
    medians = np.where(np.isfinite(medians), medians, 0.0)
    return (z - medians).astype(np.float32)


def level_array(z: np.ndarray, polynomial_order: int = 0) -> np.ndarray:
    """The standard chain: plane, median row alignment, optional polynomial, zero median."""
    out = align_rows(plane_fit(z))
    if polynomial_order >= 2:
        out = polynomial_fit(out, polynomial_order)
    finite = np.isfinite(out)
    if finite.any():
        out = out - np.median(out[finite])
    return out.astype(np.float32)


def level(scan: Scan, polynomial_order: int = 0) -> Scan:
    """Level a Scan; returns a new Scan and records the levelling in its metadata."""
    levelled = level_array(scan.height, polynomial_order)
    meta = dict(scan.metadata, levelled=f"plane+align_rows+poly{polynomial_order}")
    return scan.with_height(levelled, metadata=meta)
