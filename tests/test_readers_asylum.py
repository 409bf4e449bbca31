"""Asylum Research .ibw (afmwatch/readers/asylum.py)."""

from __future__ import annotations

import numpy as np
import pytest
from readers_support import (
    SAMPLE_FIELDS,
    TRUNCATIONS,
    assert_max_pixels_enforced,
    assert_scan_error,
    check_sample_reads,
    truncated_copy,
)

from afmwatch.readers import read_scan
from afmwatch.readers.common import BACKWARD

SAMPLES = [
    ("ibw/ARHeight_0000.ibw", "ibw", "HeightRetrace", BACKWARD, (256, 256), 39.06, 1),
]


@pytest.mark.parametrize(SAMPLE_FIELDS, SAMPLES)
def test_every_sample_reads_its_height_channel(samples, relative, fmt, channel, direction, shape, pixel_size, frames):
    check_sample_reads(samples / relative, fmt, channel, direction, shape, pixel_size, frames)


@pytest.mark.parametrize("relative", [s[0] for s in SAMPLES])
@pytest.mark.parametrize("fraction", TRUNCATIONS)
def test_truncated_file(samples, tmp_path, relative, fraction):
    path = truncated_copy(samples / relative, tmp_path, fraction)
    if fraction == 0.999:
        # an .ibw ends with its notes: cutting 0.1 % leaves every pixel, so the heights must be intact
        assert np.array_equal(read_scan(path).height, read_scan(samples / relative).height)
        return
    assert_scan_error(path)


@pytest.mark.parametrize("relative", [s[0] for s in SAMPLES])
def test_max_pixels_enforced_for_every_format(samples, relative):
    assert_max_pixels_enforced(samples / relative)


def test_metadata_standard_keys(samples):
    ibw = read_scan(samples / "ibw/ARHeight_0000.ibw").metadata
    assert ibw["lines_set"] == 256 and ibw["scan_size_nm"] == pytest.approx([10_000, 10_000])
    assert "retrace_channel" not in ibw  # no trace channel in this file


def test_ibw_heights_and_pixel_size_are_what_afmreader_gives(samples):
    from AFMReader.ibw import load_ibw

    path = samples / "ibw" / "ARHeight_0000.ibw"
    scan = read_scan(path)
    image, pixel_nm = load_ibw(path, scan.channel)
    assert np.array_equal(scan.height, image.astype(np.float32)) and scan.pixel_size_nm == pytest.approx(pixel_nm)
