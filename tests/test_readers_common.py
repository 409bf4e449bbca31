"""What every format shares (afmwatch/readers/__init__.py, afmwatch/readers/common.py): the registry,
channel choice, the checks before a reader runs, and failures that name the file; nothing is ever
written next to (or into) the input. Each format's own tests are in test_readers_<vendor>.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from readers_support import assert_scan_error, sha256

from afmwatch.config import DEFAULT_CHANNELS, ReadingConfig
from afmwatch.readers import (
    FORMATS,
    is_supported,
    list_channels,
    read_frames,
    read_scan,
    supported_suffixes,
)
from afmwatch.readers.common import BACKWARD, Channel, choose_channel
from afmwatch.scan import ScanError

# One suffix of every format: bad input under any of them must fail the same way
SUFFIXES = [".001" if suffix == ".000-.999" else suffix for record in FORMATS.values() for suffix in record.suffixes]


@pytest.fixture(scope="module")
def sample_copies(samples: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The samples copied to a scratch folder, so tests can check nothing appears beside them."""
    target = tmp_path_factory.mktemp("samples")
    for source in samples.rglob("*"):
        if source.is_file() and is_supported(source):
            relative = source.relative_to(samples)
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target / relative)
    return target


# --- the registry ---------------------------------------------------------------------------------


def test_supported_suffixes():
    for name in ("a.nid", "a.NID", "a.h5-jpk", "a.000", "a.999", "a.spm", "a.tiff", "a.jpeg", "a.asd"):
        assert is_supported(name), name
    for name in ("a.txt", "a.0001", "a.json", "a", "a.afmwatch.json"):
        assert not is_supported(name), name
    assert ".nid" in supported_suffixes() and ".000-.999" in supported_suffixes()


def test_no_suffix_belongs_to_two_formats():
    claimed = Counter(suffix for record in FORMATS.values() for suffix in record.suffixes)
    assert [suffix for suffix, count in claimed.items() if count > 1] == []
    assert all(key == record.key for key, record in FORMATS.items())


# --- channel choice -------------------------------------------------------------------------------


def test_default_channels_put_trace_before_retrace_and_height_first():
    channels = [Channel("Phase", "Phase"), Channel("Z-Axis Backward", "Z-Axis", BACKWARD), Channel("Z-Axis", "Z-Axis")]
    assert choose_channel(Path("x.nid"), channels, DEFAULT_CHANNELS).name == "Z-Axis"
    only_retrace = [Channel("PhaseRetrace", "Phase", BACKWARD), Channel("HeightRetrace", "Height", BACKWARD)]
    assert choose_channel(Path("x.ibw"), only_retrace, DEFAULT_CHANNELS).name == "HeightRetrace"
    # preference order beats direction: a retrace height before a trace amplitude
    mixed = [Channel("AmplitudeTrace", "Amplitude"), Channel("HeightRetrace", "Height", BACKWARD)]
    assert choose_channel(Path("x.ibw"), mixed, DEFAULT_CHANNELS).name == "HeightRetrace"
    assert choose_channel(Path("x.nid"), channels, DEFAULT_CHANNELS, "z-axis backward").name == "Z-Axis Backward"


def test_no_height_channel_names_the_channels_found():
    channels = [Channel("Phase", "Phase"), Channel("Amplitude", "Amplitude")]
    with pytest.raises(ScanError, match=r"lab\.nid: no height channel; channels found: Phase, Amplitude"):
        choose_channel(Path("lab.nid"), channels, DEFAULT_CHANNELS)


def test_reading_config_channel_preference_is_used(samples):
    reading = ReadingConfig(channels=("Amplitude",))
    scan = read_scan(samples / "nid/sapphire.nid", reading)
    assert scan.channel == "Amplitude"


def test_forced_channel_and_retrace_partner(samples):
    path = samples / "nid/image.nid"
    trace = read_scan(path)
    assert trace.metadata["retrace_channel"] == "Z-Axis Backward"
    retrace = read_scan(path, channel=trace.metadata["retrace_channel"])
    assert retrace.direction == BACKWARD
    assert retrace.shape == trace.shape
    assert not np.array_equal(retrace.height, trace.height)
    assert read_scan(samples / "jpk/sample_0.jpk").metadata["retrace_channel"] == "height_retrace"
    with pytest.raises(ScanError, match=r"image\.nid: no channel named 'Nope'; channels found: Z-Axis, "):
        read_scan(path, channel="Nope")


def test_list_channels_matches_what_the_reader_reports(samples):
    for relative in (
        "nid/sapphire.nid",
        "jpk/sample_0.jpk",
        "jpk/sample_0.h5-jpk",
        "ibw/ARHeight_0000.ibw",
        "bruker/old_bruker.002",
        "gwy/test.gwy",
        "wsxm/sample_0.stp",
    ):
        assert list_channels(samples / relative) == list(read_scan(samples / relative).channels)
    assert "Z-Axis Sensor" in list_channels(samples / "nid/sapphire.nid")
    assert list_channels(samples / "ibw/ARHeight_0000.ibw") == [
        "HeightRetrace",
        "AmplitudeRetrace",
        "PhaseRetracee",
        "ZSensorRetrace",
    ]


def test_reading_never_modifies_or_adds_files(sample_copies):
    before = {p: sha256(p) for p in sample_copies.rglob("*") if p.is_file()}
    for path in list(before):
        try:
            read_frames(path)
            list_channels(path)
        except ScanError:
            pass
    after = {p: sha256(p) for p in sample_copies.rglob("*") if p.is_file()}
    assert after == before


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_zero_byte_file(tmp_path, suffix):
    path = tmp_path / f"empty{suffix}"
    path.touch()
    assert_scan_error(path, "empty (0 bytes)")


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_random_bytes(tmp_path, suffix, rng):
    path = tmp_path / f"noise{suffix}"
    path.write_bytes(rng.bytes(50_000))
    assert_scan_error(path)


@pytest.mark.parametrize(
    "source, disguise, says",
    [
        ("png/minicircle_colorbar_afmhot.png", "scan.nid", "looks like a PNG image"),
        ("nid/image.nid", "scan.jpk", "looks like a Nanosurf .nid file"),
        ("jpk/sample_0.jpk", "scan.png", "looks like a TIFF file"),
        ("gwy/test.gwy", "scan.spm", "looks like a Gwyddion .gwy file"),
        ("bruker/old_bruker.002", "scan.stp", "looks like a Bruker Nanoscope file"),
        ("wsxm/sample_0.stp", "scan.h5-jpk", "looks like a WSxM file"),
        ("nid/image.nid", "scan.ibw", ""),
        ("nid/image.nid", "scan.asd", ""),
    ],
)
def test_wrong_extension(samples, tmp_path, source, disguise, says):
    path = tmp_path / disguise
    shutil.copyfile(samples / source, path)
    assert_scan_error(path, says)


def test_unsupported_extension(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not a scan")
    assert_scan_error(path, "unsupported file type '.txt'")


def test_missing_file(tmp_path):
    assert_scan_error(tmp_path / "gone.nid", "does not exist")


def test_folder_named_like_a_scan(tmp_path):
    (tmp_path / "folder.nid").mkdir()
    assert_scan_error(tmp_path / "folder.nid", "folder")


def test_no_read_permission(samples):
    """As root file modes do not stop reading, so the read runs in a child that drops to 'nobody'."""
    folder = Path(tempfile.mkdtemp(prefix="afmwatch-perm-"))
    try:
        folder.chmod(0o755)
        readable = folder / "readable.nid"
        locked = folder / "locked.nid"
        shutil.copyfile(samples / "nid/image.nid", readable)
        shutil.copyfile(samples / "nid/image.nid", locked)
        locked.chmod(0o000)
        script = textwrap.dedent(f"""
            import os
            from afmwatch.readers import read_scan
            from afmwatch.scan import ScanError
            read_scan({str(readable)!r})  # imports every library while still allowed to
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            try:
                read_scan({str(locked)!r})
            except ScanError as exc:
                print("SCANERROR", exc)
        """)
        root = Path(__file__).resolve().parents[1]
        env = {**os.environ, "PYTHONPATH": str(root)}
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
        assert result.returncode == 0, result.stderr
        assert "SCANERROR locked.nid: no permission to read the file" in result.stdout
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_damaged_files_make_no_noise_on_the_terminal(samples, tmp_path, capfd):
    for relative in ("jpk/sample_0.jpk", "ibw/ARHeight_0000.ibw", "wsxm/sample_0.stp", "bruker/old_bruker.002"):
        data = (samples / relative).read_bytes()
        path = tmp_path / Path(relative).name
        path.write_bytes(data[: len(data) // 2])
        with pytest.raises(ScanError):
            read_scan(path)
    read_scan(samples / "jpk/sample_0.jpk")
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""
