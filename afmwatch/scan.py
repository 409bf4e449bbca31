"""The Scan: one height map in physical units, the shared currency of every stage."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from afmwatch.errors import AfmwatchError

HEIGHT_UNITS = "nm"
INTENSITY_UNITS = "a.u."


class ScanError(AfmwatchError):
    """A file could not be turned into a Scan; the message names the file and the reason."""

    def __init__(self, path: str | Path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path.name}: {reason}")

    def __reduce__(self):  # raised in a reader process, re-raised in the service: keep path and reason
        return (type(self), (self.path, self.reason))


class PermanentScanError(ScanError):
    """A file that will never become a Scan however often it is read: a wrong or unknown format, a
    valid file without an image (a thermal tune), an image over the size limits, no permission. The
    daemon sends it to failed/ at once; a plain ScanError (truncated, damaged, still being written)
    may pass and is tried again."""


@dataclass(frozen=True)
class Scan:
    """A height map (float32, rows x cols, fast-scan axis horizontal) with what is known about it.

    `units` is "nm" for calibrated heights and "a.u." for image exports whose colour bar could not be
    read; `pixel_size_nm` is None when the file does not say. `frame` is set for multi-frame files.
    """

    height: np.ndarray
    pixel_size_nm: float | None
    channel: str
    path: Path
    format: str
    direction: str = "forward"
    units: str = HEIGHT_UNITS
    channels: tuple[str, ...] = ()
    frame: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    # levelled heights by polynomial order, filled by `afmwatch.level.levelled_heights` (levelled once, shared)
    level_cache: dict[int, np.ndarray] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        height = np.asarray(self.height)
        if height.ndim != 2:
            raise ScanError(self.path, f"expected a 2-D height map, got shape {height.shape}")
        if height.dtype != np.float32:
            object.__setattr__(self, "height", height.astype(np.float32))

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.height.shape)

    @property
    def is_height(self) -> bool:
        return self.units == HEIGHT_UNITS

    def z_range(self) -> float:
        """Peak-to-valley of the finite values, in the scan's units."""
        finite = self.height[np.isfinite(self.height)]
        return float(finite.max() - finite.min()) if finite.size else 0.0

    def with_height(self, height: np.ndarray, **changes: Any) -> Scan:
        """A copy with new height data (and optionally other fields); the original stays untouched."""
        return dataclasses.replace(self, height=np.asarray(height, dtype=np.float32), **changes)
