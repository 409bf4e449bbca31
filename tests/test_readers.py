"""Readers: every real sample becomes the right Scan; every bad input becomes a ScanError naming the
file; nothing is ever written next to (or into) the input."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest

from afmwatch.config import DEFAULT_CHANNELS, ReadingConfig
from afmwatch.readers import (
    is_supported,
    list_channels,
    read_frames,
    read_scan,
    supported_suffixes,
)
from afmwatch.readers.common import BACKWARD, FORWARD, Channel, choose_channel
from afmwatch.scan import ScanError
from afmwatch.writers import write_gwy, write_tiff

# file, format, chosen channel, direction, shape, pixel size (nm; None = the file gives no unit), frames.
# Shapes and pixel sizes are those in afm-samples/MANIFEST.md; where the manifest gives no pixel size,
# it is the scan range in the file's header divided by the points per line.
SAMPLES = [
    ("nid/circles.nid", "nid", "Topography", FORWARD, (256, 256), 50_000 / 256, 1),
    ("nid/sapphire.nid", "nid", "Z-Axis", FORWARD, (256, 256), 2_500 / 256, 1),
    ("nid/SBS-PMMA.nid", "nid", "Z-Axis", FORWARD, (256, 256), 25_000 / 256, 1),
    ("nid/image.nid", "nid", "Z-Axis", FORWARD, (256, 256), 7_407.29 / 256, 1),
    ("nid/grid1.nid", "nid", "Z-Axis", FORWARD, (256, 256), 3_000 / 256, 1),
    ("gwy/test.gwy", "gwy", "Test", FORWARD, (128, 128), None, 1),
    ("jpk/sample_0.jpk", "jpk", "height_trace", FORWARD, (256, 256), 1.277, 1),
    ("jpk/sample_0.h5-jpk", "h5-jpk", "height_trace", FORWARD, (128, 128), 1.172, 4),
    ("wsxm/sample_0.stp", "stp", "Topography", FORWARD, (512, 512), 0.977, 1),
    ("wsxm/sample_0.top", "top", "Topography", FORWARD, (512, 512), 0.977, 1),
    ("bruker/old_bruker.002", "spm", "Height", FORWARD, (256, 256), 58.59, 1),
    ("bruker/old_bruker.004", "spm", "Height", FORWARD, (256, 256), 58.59, 1),
    ("ibw/ARHeight_0000.ibw", "ibw", "HeightRetrace", BACKWARD, (256, 256), 39.06, 1),
]
IMAGE_SAMPLES = [
    "png/minicircle_colorbar_afmhot.png",
    "png/flattening_raw_afm_image.png",
    "png/flattening_scarred_image.png",
]
ALL_SAMPLES = [s[0] for s in SAMPLES] + IMAGE_SAMPLES + ["nid/thermal.nid"]

# The plot areas of the PNG samples, measured by viewing each image and reading the pixel rows and
# columns of the black 1-px axes frame (minicircle: columns 80 and 549, rows 86 and 554; raw AFM
# figure: columns 100 and 686, rows 111 and 697). The data area is inside the frame:
# [top, left, bottom, right], bottom/right exclusive.
TRUE_DATA_AREAS = {
    "png/minicircle_colorbar_afmhot.png": (87, 81, 554, 549),
    "png/flattening_raw_afm_image.png": (112, 101, 697, 686),
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def sample_copies(samples: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The samples copied to a scratch folder, so tests can check nothing appears beside them."""
    target = tmp_path_factory.mktemp("samples")
    for relative in ALL_SAMPLES:
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(samples / relative, target / relative)
    return target


@pytest.mark.parametrize("relative, fmt, channel, direction, shape, pixel_size, frames", SAMPLES)
def test_every_sample_reads_its_height_channel(samples, relative, fmt, channel, direction, shape, pixel_size, frames):
    scans = read_frames(samples / relative)
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
    assert read_scan(samples / relative).channel == channel


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
    for relative in ("nid/sapphire.nid", "jpk/sample_0.jpk", "jpk/sample_0.h5-jpk", "ibw/ARHeight_0000.ibw",
                     "bruker/old_bruker.002", "gwy/test.gwy", "wsxm/sample_0.stp"):
        assert list_channels(samples / relative) == list(read_scan(samples / relative).channels)
    assert "Z-Axis Sensor" in list_channels(samples / "nid/sapphire.nid")
    assert list_channels(samples / "ibw/ARHeight_0000.ibw") == [
        "HeightRetrace", "AmplitudeRetrace", "PhaseRetracee", "ZSensorRetrace"]


def test_metadata_standard_keys(samples):
    nid = read_scan(samples / "nid/image.nid").metadata
    assert nid["lines_set"] == 256 and nid["points_set"] == 256 and nid["lines_acquired"] == 256
    assert nid["scan_size_nm"] == pytest.approx([7407.29, 7407.29])
    assert nid["instrument"].startswith("Nanosurf")
    bruker = read_scan(samples / "bruker/old_bruker.002").metadata
    assert bruker["lines_set"] == 256 and bruker["lines_acquired"] == 256
    assert bruker["scan_size_nm"] == pytest.approx([15_000, 15_000])
    ibw = read_scan(samples / "ibw/ARHeight_0000.ibw").metadata
    assert ibw["lines_set"] == 256 and ibw["scan_size_nm"] == pytest.approx([10_000, 10_000])
    assert "retrace_channel" not in ibw  # no trace channel in this file
    stp = read_scan(samples / "wsxm/sample_0.stp").metadata
    assert stp["scan_size_nm"] == [500.0, 500.0]


def test_top_heights_use_the_full_z_amplitude(samples):
    # The header says 'Z Amplitude: 59.7449 nm'; the .top stores relative int16 levels over that range
    top = read_scan(samples / "wsxm/sample_0.top")
    assert top.z_range() == pytest.approx(59.7449, rel=1e-4)


def test_unit_conversion_to_nm(samples):
    # image.nid stores metres: the Z-Axis spans 1.278-1.841 µm before levelling
    scan = read_scan(samples / "nid/image.nid")
    assert 1200 < float(np.nanmin(scan.height)) < 1300
    assert 1800 < float(np.nanmax(scan.height)) < 1900


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

SUFFIXES = [".nid", ".ibw", ".jpk", ".h5-jpk", ".spm", ".001", ".gwy", ".stp", ".top", ".asd", ".tif", ".png", ".jpg"]


def assert_scan_error(path: Path, pattern: str = "", **kwargs) -> ScanError:
    digest = sha256(path) if path.is_file() else None
    with pytest.raises(ScanError) as caught:
        read_scan(path, **kwargs)
    assert str(caught.value).startswith(f"{path.name}: ")
    assert pattern.lower() in str(caught.value).lower()
    if digest is not None and path.exists():
        assert sha256(path) == digest
    return caught.value


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


@pytest.mark.parametrize("relative", [s[0] for s in SAMPLES] + IMAGE_SAMPLES)
@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.999])
def test_truncated_file(samples, tmp_path, relative, fraction):
    data = (samples / relative).read_bytes()
    path = tmp_path / f"cut_{Path(relative).name}"
    path.write_bytes(data[: int(len(data) * fraction)])
    if relative.endswith(".ibw") and fraction == 0.999:
        # an .ibw ends with its notes: cutting 0.1 % leaves every pixel, so the heights must be intact
        assert np.array_equal(read_scan(path).height, read_scan(samples / relative).height)
        return
    assert_scan_error(path)


def test_bruker_header_cut_short_is_refused_not_looped_on(samples, tmp_path):
    # pySPM reads header lines until '*File list end' (at byte 12328 here) and never stops without it
    path = tmp_path / "cut.002"
    path.write_bytes((samples / "bruker/old_bruker.002").read_bytes()[:5000])
    assert_scan_error(path, "Bruker header is incomplete")


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


def test_spectrum_file_has_no_image(samples):
    error = assert_scan_error(samples / "nid/thermal.nid", "holds no image")
    assert "Sweep" in str(error)


def test_missing_file(tmp_path):
    assert_scan_error(tmp_path / "gone.nid", "does not exist")


def test_folder_named_like_a_scan(tmp_path):
    (tmp_path / "folder.nid").mkdir()
    assert_scan_error(tmp_path / "folder.nid", "folder")


def _png_bytes(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height (the pixel data is a few bytes, as in a bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def test_decompression_bomb_refused_by_max_pixels(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_bytes(9_000, 9_000))  # 81 Mpx: above max_pixels, below Pillow's own limit
    assert_scan_error(path, "9000 x 9000 pixels, more than reading.max_pixels")


def test_decompression_bomb_refused_by_pillow_when_max_pixels_is_lifted(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_bytes(60_000, 60_000))
    assert_scan_error(path, "likely decompression bomb", reading=ReadingConfig(max_pixels=10**12))


@pytest.mark.parametrize("relative", [s[0] for s in SAMPLES] + IMAGE_SAMPLES[:1])
def test_max_pixels_enforced_for_every_format(samples, relative):
    with pytest.raises(ScanError, match=r"more than reading\.max_pixels = 1000|too many"):
        read_scan(samples / relative, ReadingConfig(max_pixels=1000))


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


def test_image_vanishing_mid_read(samples, tmp_path, monkeypatch):
    from PIL import Image

    path = tmp_path / "vanishing.png"
    shutil.copyfile(samples / IMAGE_SAMPLES[0], path)
    original = Image.open

    def delete_then_open(filename, *args, **kwargs):
        os.unlink(filename)
        return original(filename, *args, **kwargs)

    monkeypatch.setattr(Image, "open", delete_then_open)
    assert_scan_error(path, "vanished")


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
    assert captured.err == ""
    assert "scan_read" not in captured.out or "INFO" not in captured.out


# --- image exports --------------------------------------------------------------------------------


@pytest.mark.parametrize("relative", sorted(TRUE_DATA_AREAS))
def test_png_data_area_found_within_a_few_pixels(samples, relative):
    scan = read_scan(samples / relative)
    found = scan.metadata["data_area"]
    truth = TRUE_DATA_AREAS[relative]
    assert np.abs(np.subtract(found, truth)).max() <= 2, (found, truth)
    assert scan.shape == (found[2] - found[0], found[3] - found[1])
    # the colour bar beside the plot is read: afmhot colours become heights on the bar's scale
    assert scan.metadata["image_values"] == "colour-bar"
    assert scan.units == "a.u."
    assert scan.channel == "height (colour bar)"


def test_jpeg_export_with_colour_bar(samples, tmp_path):
    """JPEG ringing blurs the thin gap between plot and colour bar; they must still be told apart."""
    from PIL import Image

    path = tmp_path / "minicircle.jpg"
    Image.open(samples / "png/minicircle_colorbar_afmhot.png").convert("RGB").save(path, quality=70)
    scan = read_scan(path)
    truth = TRUE_DATA_AREAS["png/minicircle_colorbar_afmhot.png"]
    assert np.abs(np.subtract(scan.metadata["data_area"], truth)).max() <= 2
    assert scan.metadata["image_values"] == "colour-bar"


def test_borderless_export_is_all_data_and_kept_as_intensity(samples):
    scan = read_scan(samples / "png/flattening_scarred_image.png")
    assert scan.metadata["data_area"] == [0, 0, 680, 678]
    assert scan.metadata["image_values"] == "intensity"
    assert scan.channel == "intensity" and scan.units == "a.u."


def test_crop_right_30_and_whole_options(samples):
    path = samples / "png/minicircle_colorbar_afmhot.png"
    cropped = read_scan(path, ReadingConfig(data_area="crop-right-30"))
    assert cropped.shape == (640, 448)
    assert cropped.metadata["data_area"] == [0, 0, 640, 448]
    assert cropped.metadata["image_values"] == "intensity"
    whole = read_scan(path, ReadingConfig(data_area="whole"))
    assert whole.shape == (640, 640)


def _render_export(
    path: Path, height: np.ndarray, cmap: str, colorbar: bool, orientation: str = "vertical"
) -> tuple[int, int, int, int]:
    """A matplotlib figure like analysis software exports; returns the true plot area in pixels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(4, 3.2), dpi=100)
    image = axes.imshow(height, cmap=cmap, interpolation="nearest")
    axes.set_title("Height")
    axes.set_xlabel("x / nm")
    if colorbar:
        figure.colorbar(image, ax=axes, label="nm", orientation=orientation)
    figure.canvas.draw()
    box = axes.get_window_extent()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    rows = int(round(figure.get_figheight() * 100))
    return int(round(rows - box.y1)), int(round(box.x0)), int(round(rows - box.y0)), int(round(box.x1))


@pytest.mark.parametrize("cmap, orientation", [("afmhot", "vertical"), ("viridis", "vertical"), ("gray", "horizontal")])
def test_colour_bar_turns_colours_back_into_heights(tmp_path, cmap, orientation):
    yy, xx = np.mgrid[0:120, 0:160]
    height = np.sin(xx / 9.0) + 0.5 * np.cos(yy / 13.0) + 0.01 * xx
    path = tmp_path / f"export_{cmap}.png"
    top, left, bottom, right = _render_export(path, height, cmap, colorbar=True, orientation=orientation)
    scan = read_scan(path)
    found = scan.metadata["data_area"]
    assert np.abs(np.subtract(found, (top, left, bottom, right))).max() <= 3, (found, (top, left, bottom, right))
    assert scan.metadata["image_values"] == "colour-bar"
    # compare in the interior, resampled to the original grid
    rows = np.linspace(2, scan.shape[0] - 3, 40).astype(int)
    cols = np.linspace(2, scan.shape[1] - 3, 50).astype(int)
    recovered = scan.height[np.ix_(rows, cols)]
    expected = height[np.ix_((rows * 120 / scan.shape[0]).astype(int), (cols * 160 / scan.shape[1]).astype(int))]
    assert np.corrcoef(recovered.ravel(), expected.ravel())[0, 1] > 0.98


def test_colour_mapped_export_without_bar_is_intensity(tmp_path):
    yy, xx = np.mgrid[0:64, 0:64]
    path = tmp_path / "no_bar.png"
    _render_export(path, np.sin(xx / 5.0) * np.cos(yy / 7.0), "viridis", colorbar=False)
    scan = read_scan(path)
    assert scan.metadata["image_values"] == "intensity"
    assert scan.channel == "intensity"


def test_jpeg_export(tmp_path):
    from PIL import Image

    values = (np.add.outer(np.arange(64), np.arange(80)) % 256).astype(np.uint8)
    path = tmp_path / "grey.jpg"
    Image.fromarray(values).save(path, quality=95)
    scan = read_scan(path)
    assert scan.format == "jpg" and scan.shape == (64, 80) and scan.units == "a.u."


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


# --- TIFF and Gwyddion round trips ----------------------------------------------------------------


def test_write_tiff_round_trip(tmp_path, rng):
    height = rng.normal(size=(48, 64)).astype(np.float32) * 3
    path = write_tiff(tmp_path / "scan.tiff", height, 1.953125, channel="ZSensor", metadata={"lines_set": 48})
    scan = read_scan(path)
    assert scan.format == "tiff"
    assert scan.pixel_size_nm == 1.953125
    assert scan.units == "nm" and scan.channel == "ZSensor"
    assert scan.metadata["lines_set"] == 48
    np.testing.assert_array_equal(scan.height, height)
    intensity = read_scan(write_tiff(tmp_path / "au.tif", height, None, units="a.u."))
    assert intensity.units == "a.u." and intensity.pixel_size_nm is None


def test_write_gwy_round_trip(tmp_path, rng):
    height = rng.normal(size=(40, 56)) * 5
    scan = read_scan(write_gwy(tmp_path / "scan.gwy", height, 2.5, title="Height"))
    assert scan.shape == (40, 56)
    assert scan.pixel_size_nm == pytest.approx(2.5)
    assert scan.units == "nm" and scan.channel == "Height"
    np.testing.assert_allclose(scan.height, height, rtol=1e-5, atol=1e-5)


def test_plain_float_tiff_is_raw_data(tmp_path, rng):
    import tifffile

    path = tmp_path / "raw.tif"
    tifffile.imwrite(path, rng.normal(size=(32, 32)).astype(np.float32))
    scan = read_scan(path)
    assert scan.channel == "data" and scan.units == "a.u." and scan.pixel_size_nm is None


def test_supported_suffixes():
    for name in ("a.nid", "a.NID", "a.h5-jpk", "a.000", "a.999", "a.spm", "a.tiff", "a.jpeg", "a.asd"):
        assert is_supported(name), name
    for name in ("a.txt", "a.0001", "a.json", "a", "a.afmwatch.json"):
        assert not is_supported(name), name
    assert ".nid" in supported_suffixes() and ".000-.999" in supported_suffixes()


def test_a_slow_format_is_parsed_once_for_its_trace_and_retrace(samples, monkeypatch, tmp_path):
    """The daemon reads a .nid's trace and then its retrace: one NSFopen parse, not two; a file that
    changed is parsed afresh."""
    from afmwatch.quality import load_retrace
    from afmwatch.readers import common

    importlib.import_module("NSFopen.read")
    module = sys.modules["NSFopen.read"]  # the package's `read` attribute is the class, not the module
    calls = []
    real = module.read
    monkeypatch.setattr(module, "read", lambda name: calls.append(name) or real(name))
    path = tmp_path / "circles.nid"
    shutil.copyfile(samples / "nid" / "circles.nid", path)
    trace = read_scan(path)
    retrace = load_retrace(trace)
    assert retrace is not None and retrace.direction == BACKWARD and len(calls) == 1
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))  # the file was rewritten
    read_scan(path)
    assert len(calls) == 2
    with pytest.raises(ValueError):  # a parse that fails is never kept
        common.parsed_once(path, "test", lambda: (_ for _ in ()).throw(ValueError("bad")))
    assert common.parsed_once(path, "test", lambda: "parsed") == "parsed"


def test_ibw_heights_and_pixel_size_are_what_afmreader_gives(samples):
    from AFMReader.ibw import load_ibw

    path = samples / "ibw" / "ARHeight_0000.ibw"
    scan = read_scan(path)
    image, pixel_nm = load_ibw(path, scan.channel)
    assert np.array_equal(scan.height, image.astype(np.float32)) and scan.pixel_size_nm == pytest.approx(pixel_nm)
