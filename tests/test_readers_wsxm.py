"""WSxM .stp and .top (afmwatch/readers/wsxm.py)."""

from __future__ import annotations

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

SAMPLES = [
    ("wsxm/sample_0.stp", "stp", "Topography", FORWARD, (512, 512), 0.977, 1),
    ("wsxm/sample_0.top", "top", "Topography", FORWARD, (512, 512), 0.977, 1),
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


def test_metadata_standard_keys(samples):
    stp = read_scan(samples / "wsxm/sample_0.stp").metadata
    assert stp["scan_size_nm"] == [500.0, 500.0]


def test_top_heights_use_the_full_z_amplitude(samples):
    # The header says 'Z Amplitude: 59.7449 nm'; the .top stores relative int16 levels over that range
    top = read_scan(samples / "wsxm/sample_0.top")
    assert top.z_range() == pytest.approx(59.7449, rel=1e-4)
