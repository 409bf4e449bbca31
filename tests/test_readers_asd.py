"""High-speed AFM .asd movies (afmwatch/readers/asd.py): no public sample, so a synthetic movie."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from readers_support import assert_scan_error

from afmwatch.config import ReadingConfig
from afmwatch.readers import list_channels, read_frames


def _asd_v1_bytes(levels: np.ndarray, x_nm: int, y_nm: int) -> bytes:
    """A version-1 .asd movie (topography then error channel) as AFMReader's decoder reads it."""
    frames, rows, cols = levels.shape
    header = struct.pack("<6i", 1, 0, 32, 0, 0, 0)  # version, header/frame-header length, encoding, no name/comment
    header += b"TP\0\0ER\0\0" + struct.pack("<8i", frames, frames, 0, 7, cols, rows, x_nm, y_nm)
    header += struct.pack("<?i8i3fi", False, 1, 2024, 5, 17, 12, 0, 0, 0, 0, 0.5, 10.0, 1.0, 0)
    header += bytes(12) + struct.pack("<iIi6f", 1, 0x1, 12, 1000.0, 1000.0, 2.0, 2.0, 3.0, 2.0)
    body = b""
    for _channel in range(2):
        for index, frame in enumerate(levels):
            body += struct.pack("<i4h2f?bhii", index, 0, 0, 0, 0, 0.0, 0.0, False, 0, 0, 0, 0)
            body += frame.astype("<i2").tobytes()
    return header + body


def test_asd_movie_reads_every_frame(tmp_path, rng):
    levels = rng.integers(0, 4096, size=(3, 24, 32)).astype(np.int16)
    path = tmp_path / "movie.asd"
    path.write_bytes(_asd_v1_bytes(levels, x_nm=160, y_nm=120))
    assert list_channels(path) == ["TP", "ER"]
    scans = read_frames(path)
    assert len(scans) == 3 and [s.frame for s in scans] == [0, 1, 2]
    first = scans[0]
    assert first.channel == "TP" and first.units == "nm" and first.format == "asd"
    assert first.shape == (24, 32)
    assert first.pixel_size_nm == pytest.approx(5.0)
    # unipolar 1 V converter, z gain x extension = 6 nm/V: height = -level / 4096 * 6 nm
    np.testing.assert_allclose(first.height, -levels[0] / 4096 * 6.0, rtol=1e-5)
    assert_scan_error(tmp_path / "movie.asd", "", reading=ReadingConfig(max_pixels=100))
