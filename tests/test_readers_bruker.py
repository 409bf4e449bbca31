"""Bruker Nanoscope .spm and .000-.999 (afmwatch/readers/bruker.py)."""

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
    ("bruker/old_bruker.002", "spm", "Height", FORWARD, (256, 256), 58.59, 1),
    ("bruker/old_bruker.004", "spm", "Height", FORWARD, (256, 256), 58.59, 1),
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
    bruker = read_scan(samples / "bruker/old_bruker.002").metadata
    assert bruker["lines_set"] == 256 and bruker["lines_acquired"] == 256
    assert bruker["scan_size_nm"] == pytest.approx([15_000, 15_000])


def test_bruker_header_cut_short_is_refused_not_looped_on(samples, tmp_path):
    # pySPM reads header lines until '*File list end' (at byte 12328 here) and never stops without it
    path = tmp_path / "cut.002"
    path.write_bytes((samples / "bruker/old_bruker.002").read_bytes()[:5000])
    assert_scan_error(path, "Bruker header is incomplete")
