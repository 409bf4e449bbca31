"""Writers for height maps: float32 TIFF with the pixel size, and Gwyddion .gwy for users' own tools.

The TIFF stores the pixel size twice: as standard X/YResolution (pixels per centimetre, read by
ImageJ, Gwyddion and tifffile) and in an afmwatch JSON ImageDescription with units and metadata,
which `afmwatch.readers` reads back exactly.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from afmwatch.durable import atomic_write, atomic_write_bytes
from afmwatch.scan import HEIGHT_UNITS

TIFF_DESCRIPTION_KEY = "afmwatch"
NM_PER_CM = 1e7


def tiff_bytes(
    height: np.ndarray,
    pixel_size_nm: float | None,
    *,
    units: str = HEIGHT_UNITS,
    channel: str = "Height",
    metadata: dict[str, Any] | None = None,
) -> bytes:
    """Encode a height map as a float32 TIFF (in memory)."""
    description = {
        TIFF_DESCRIPTION_KEY: {
            "pixel_size_nm": pixel_size_nm,
            "units": units,
            "channel": channel,
            "metadata": metadata or {},
        }
    }
    kwargs: dict[str, Any] = {}
    if pixel_size_nm:
        per_cm = NM_PER_CM / pixel_size_nm
        kwargs.update(resolution=(per_cm, per_cm), resolutionunit="CENTIMETER")
    buffer = io.BytesIO()
    tifffile.imwrite(
        buffer,
        np.ascontiguousarray(height, dtype=np.float32),
        description=json.dumps(description, default=str),
        metadata=None,
        **kwargs,
    )
    return buffer.getvalue()


def write_tiff(path: str | Path, height: np.ndarray, pixel_size_nm: float | None, **kwargs: Any) -> Path:
    """Atomically write a float32 TIFF height map; returns the path."""
    path = Path(path)
    atomic_write_bytes(path, tiff_bytes(height, pixel_size_nm, **kwargs))
    return path


def write_gwy(path: str | Path, height: np.ndarray, pixel_size_nm: float, *, title: str = "Height") -> Path:
    """Atomically write a Gwyddion .gwy file (SI units: metres) with one data channel."""
    from gwyfile.objects import GwyContainer, GwyDataField

    rows, cols = height.shape
    field = GwyDataField(
        np.ascontiguousarray(height, dtype=np.float64) * 1e-9,
        xreal=cols * pixel_size_nm * 1e-9,
        yreal=rows * pixel_size_nm * 1e-9,
        si_unit_xy="m",
        si_unit_z="m",
    )
    container = GwyContainer()
    container["/0/data"] = field
    container["/0/data/title"] = title
    path = Path(path)
    with atomic_write(path) as handle:
        handle.write(b"GWYP" + container.serialize())
    return path
