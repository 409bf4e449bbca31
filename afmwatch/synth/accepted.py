"""Flaws that microscopists accept, drawn alike in good and bad scans so that they never tell one from the other.

A real good scan is seldom spotless: when a scan starts, the piezo still creeps from the move to the first
line and the feedback settles, so the first few percent of the lines land sideways and tilt, and fade into
the scan (AFM-PRIMER: drift and creep). Nobody rejects a scan for that. A generator whose good scans never
show it teaches a model that any disturbed band is a fault.
"""

from __future__ import annotations

import hashlib

import numpy as np
from scipy import ndimage

from afmwatch.synth.artefacts import Params
from afmwatch.synth.surfaces import Surface


def settling(z: np.ndarray, rng: np.random.Generator, surface: Surface) -> tuple[np.ndarray, Params]:
    """The start of a scan: over the first 3-12 % of the lines the image is shifted sideways (creep, from a
    third to one and a half feature widths, at most 5 % of the line) and carries a height offset and a tilt
    along the line (the feedback settling), each fading exponentially to a twentieth by the band's end."""
    rows, cols = z.shape
    width_px = max(surface.feature_width_nm / surface.pixel_size_nm, 1.0)
    h = surface.feature_height_nm
    lines = max(3, int(round(rng.uniform(0.03, 0.12) * rows)))
    shift = float(rng.choice([-1.0, 1.0]) * min(max(rng.uniform(0.3, 1.5) * width_px, 1.0), 0.05 * cols))
    offset = float(rng.choice([-1.0, 1.0]) * rng.uniform(0.2, 1.0) * h)
    tilt = float(rng.choice([-1.0, 1.0]) * rng.uniform(0.1, 0.5) * h)
    y = np.arange(rows, dtype=np.float64)
    envelope = np.exp(-3.0 * y / lines)
    yy, xx = np.meshgrid(y, np.arange(cols, dtype=np.float64), indexing="ij")
    out = ndimage.map_coordinates(z, [yy, xx + shift * envelope[:, None]], order=1, mode="nearest")
    along = np.linspace(-0.5, 0.5, cols)
    out = out + envelope[:, None] * (offset + tilt * along[None, :])
    params = {"name": "settling", "lines": lines, "shift_px": shift, "height_offset_nm": offset, "tilt_nm": tilt}
    return out, params


def side_rng(rng: np.random.Generator) -> np.random.Generator:
    """A generator for the accepted flaws derived from `rng`'s state without drawing from it, so a scan
    made with them is the same scan as without them, plus the flaws."""
    state = repr(rng.bit_generator.state).encode()
    return np.random.default_rng(int.from_bytes(hashlib.sha256(state).digest()[:8], "little"))


def add_accepted(
    z: np.ndarray, rng: np.random.Generator, rate: float, surface: Surface
) -> tuple[np.ndarray, list[Params]]:
    """With probability `rate`, the scan-start settling; returns the height map and what was added."""
    if rate <= 0 or rng.random() >= rate:
        return z, []
    out, params = settling(z, rng, surface)
    return out, [params]
