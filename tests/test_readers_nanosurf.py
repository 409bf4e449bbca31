"""Nanosurf .nid (afmwatch/readers/nanosurf.py)."""

from __future__ import annotations

import importlib
import os
import shutil
import sys

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
from afmwatch.readers.common import BACKWARD, FORWARD

SAMPLES = [
    ("nid/circles.nid", "nid", "Topography", FORWARD, (256, 256), 50_000 / 256, 1),
    ("nid/sapphire.nid", "nid", "Z-Axis", FORWARD, (256, 256), 2_500 / 256, 1),
    ("nid/SBS-PMMA.nid", "nid", "Z-Axis", FORWARD, (256, 256), 25_000 / 256, 1),
    ("nid/image.nid", "nid", "Z-Axis", FORWARD, (256, 256), 7_407.29 / 256, 1),
    ("nid/grid1.nid", "nid", "Z-Axis", FORWARD, (256, 256), 3_000 / 256, 1),
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
    nid = read_scan(samples / "nid/image.nid").metadata
    assert nid["lines_set"] == 256 and nid["points_set"] == 256 and nid["lines_acquired"] == 256
    assert nid["scan_size_nm"] == pytest.approx([7407.29, 7407.29])
    assert nid["instrument"].startswith("Nanosurf")


def test_unit_conversion_to_nm(samples):
    # image.nid stores metres: the Z-Axis spans 1.278-1.841 µm before levelling
    scan = read_scan(samples / "nid/image.nid")
    assert 1200 < float(np.nanmin(scan.height)) < 1300
    assert 1800 < float(np.nanmax(scan.height)) < 1900


def test_spectrum_file_has_no_image(samples):
    error = assert_scan_error(samples / "nid/thermal.nid", "holds no image")
    assert "Sweep" in str(error)


def test_file_vanishing_mid_read(samples, tmp_path, monkeypatch):
    nsfopen = importlib.import_module("NSFopen.read")  # the package, whose `read` the reader calls

    path = tmp_path / "vanishing.nid"
    shutil.copyfile(samples / "nid/image.nid", path)
    original = nsfopen.read

    def delete_then_read(filename, **kwargs):
        os.unlink(filename)
        return original(filename, **kwargs)

    monkeypatch.setattr(nsfopen, "read", delete_then_read)
    assert_scan_error(path, "vanished while it was being read")


def test_a_slow_format_is_parsed_once_for_its_trace_and_retrace(samples, monkeypatch, tmp_path):
    """The daemon reads a .nid's trace and then its retrace: one NSFopen parse, not two; a file that
    changed is parsed afresh."""
    from afmwatch.readers import common, read_retrace

    importlib.import_module("NSFopen.read")
    module = sys.modules["NSFopen.read"]  # the package's `read` attribute is the class, not the module
    calls = []
    real = module.read
    monkeypatch.setattr(module, "read", lambda name: calls.append(name) or real(name))
    path = tmp_path / "circles.nid"
    shutil.copyfile(samples / "nid" / "circles.nid", path)
    trace = read_scan(path)
    retrace = read_retrace(trace)
    assert retrace is not None and retrace.direction == BACKWARD and len(calls) == 1
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))  # the file was rewritten
    read_scan(path)
    assert len(calls) == 2
    with pytest.raises(ValueError):  # a parse that fails is never kept
        common.parsed_once(path, "test", lambda: (_ for _ in ()).throw(ValueError("bad")))
    assert common.parsed_once(path, "test", lambda: "parsed") == "parsed"
