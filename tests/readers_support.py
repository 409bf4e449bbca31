"""What the per-format reader tests share: how a sample row is checked, how a bad file must fail."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from afmwatch.config import ReadingConfig
from afmwatch.readers import read_frames, read_scan
from afmwatch.scan import ScanError

# A sample row: file, format, chosen channel, direction, shape, pixel size (nm; None = the file gives no
# unit), frames. Shapes and pixel sizes are those in afm-samples/MANIFEST.md; where the manifest gives no
# pixel size, it is the scan range in the file's header divided by the points per line.
SAMPLE_FIELDS = "relative, fmt, channel, direction, shape, pixel_size, frames"

TRUNCATIONS = [0.1, 0.5, 0.999]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_sample_reads(path: Path, fmt, channel, direction, shape, pixel_size, frames) -> None:
    """A real sample becomes the right Scan: its height channel, in nm, with the pixel size it states."""
    scans = read_frames(path)
    scan = scans[0]
    assert len(scans) == frames
    assert scan.format == fmt
    assert scan.channel == channel
    assert scan.direction == direction
    assert scan.shape == shape
    assert scan.height.dtype == np.float32
    assert np.isfinite(scan.height).all()
    assert scan.channel in scan.channels
    if pixel_size is None:
        assert scan.pixel_size_nm is None
    else:
        assert scan.pixel_size_nm == pytest.approx(pixel_size, rel=2e-3)
        assert scan.units == "nm"
        # a real height map in nm: between an atomic step and the scanner's range
        assert 0.1 < scan.z_range() < 10_000
    if frames > 1:
        assert [s.frame for s in scans] == list(range(frames))
        assert not np.array_equal(scans[0].height, scans[1].height)
    json.dumps(scan.metadata, allow_nan=False)  # goes into sidecars as it is
    assert read_scan(path).channel == channel


def assert_scan_error(path: Path, pattern: str = "", **kwargs) -> ScanError:
    """Reading fails with a ScanError that starts with the file's name and leaves the file as it was."""
    digest = sha256(path) if path.is_file() else None
    with pytest.raises(ScanError) as caught:
        read_scan(path, **kwargs)
    assert str(caught.value).startswith(f"{path.name}: ")
    assert pattern.lower() in str(caught.value).lower()
    if digest is not None and path.exists():
        assert sha256(path) == digest
    return caught.value


def truncated_copy(source: Path, folder: Path, fraction: float) -> Path:
    """The first `fraction` of a sample's bytes, as a transfer cut short would leave it."""
    data = source.read_bytes()
    path = folder / f"cut_{source.name}"
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def assert_max_pixels_enforced(path: Path) -> None:
    with pytest.raises(ScanError, match=r"more than reading\.max_pixels = 1000|too many"):
        read_scan(path, ReadingConfig(max_pixels=1000))
