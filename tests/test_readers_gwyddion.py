"""Gwyddion .gwy (afmwatch/readers/gwyddion.py)."""

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
from afmwatch.readers.common import FORWARD
from afmwatch.writers import write_gwy

SAMPLES = [
    ("gwy/test.gwy", "gwy", "Test", FORWARD, (128, 128), None, 1),
]


@pytest.mark.parametrize(SAMPLE_FIELDS, SAMPLES)
def test_every_sample_reads_its_height_channel(samples, relative, fmt, channel, direction, shape, pixel_size, frames):
    check_sample_reads(samples / relative, fmt, channel, direction, shape, pixel_size, frames)


@pytest.mark.parametrize("relative", [s[0] for s in SAMPLES])
@pytest.mark.parametrize("fraction", TRUNCATIONS)
def test_truncated_file(samples, tmp_path, relative, fraction):
    assert_scan_error(truncated_copy(samples / relative, tmp_path, fraction))


@pytest.mark.parametrize("relative", [s[0] for s in SAMPLES])
def test_max_pixels_enforced_for_every_format(samples, relative):
    assert_max_pixels_enforced(samples / relative)


def test_write_gwy_round_trip(tmp_path, rng):
    height = rng.normal(size=(40, 56)) * 5
    scan = read_scan(write_gwy(tmp_path / "scan.gwy", height, 2.5, title="Height"))
    assert scan.shape == (40, 56)
    assert scan.pixel_size_nm == pytest.approx(2.5)
    assert scan.units == "nm" and scan.channel == "Height"
    np.testing.assert_allclose(scan.height, height, rtol=1e-5, atol=1e-5)
