"""Image exports and TIFFs: PNG, JPEG and TIFF (afmwatch/readers/images.py, afmwatch/readers/data_area.py)."""

from __future__ import annotations

import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from readers_support import TRUNCATIONS, assert_max_pixels_enforced, assert_scan_error, truncated_copy

from afmwatch.config import ReadingConfig
from afmwatch.readers import read_scan
from afmwatch.writers import write_tiff

IMAGE_SAMPLES = [
    "png/minicircle_colorbar_afmhot.png",
    "png/flattening_raw_afm_image.png",
    "png/flattening_scarred_image.png",
]

# The plot areas of the PNG samples, measured by viewing each image and reading the pixel rows and
# columns of the black 1-px axes frame (minicircle: columns 80 and 549, rows 86 and 554; raw AFM
# figure: columns 100 and 686, rows 111 and 697). The data area is inside the frame:
# [top, left, bottom, right], bottom/right exclusive.
TRUE_DATA_AREAS = {
    "png/minicircle_colorbar_afmhot.png": (87, 81, 554, 549),
    "png/flattening_raw_afm_image.png": (112, 101, 697, 686),
}


@pytest.mark.parametrize("relative", IMAGE_SAMPLES)
@pytest.mark.parametrize("fraction", TRUNCATIONS)
def test_truncated_file(samples, tmp_path, relative, fraction):
    assert_scan_error(truncated_copy(samples / relative, tmp_path, fraction))


@pytest.mark.parametrize("relative", IMAGE_SAMPLES[:1])
def test_max_pixels_enforced_for_every_format(samples, relative):
    assert_max_pixels_enforced(samples / relative)


def _png_bytes(width: int, height: int) -> bytes:
    """A PNG whose header declares width x height (the pixel data is a few bytes, as in a bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def test_decompression_bomb_refused_by_max_pixels(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_bytes(9_000, 9_000))  # 81 Mpx: above max_pixels, below Pillow's own limit
    assert_scan_error(path, "9000 x 9000 pixels, more than reading.max_pixels")


def test_decompression_bomb_refused_by_pillow_when_max_pixels_is_lifted(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_bytes(60_000, 60_000))
    assert_scan_error(path, "likely decompression bomb", reading=ReadingConfig(max_pixels=10**12))


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


# --- TIFF ---------------------------------------------------------------------------------------------


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


def test_plain_float_tiff_is_raw_data(tmp_path, rng):
    import tifffile

    path = tmp_path / "raw.tif"
    tifffile.imwrite(path, rng.normal(size=(32, 32)).astype(np.float32))
    scan = read_scan(path)
    assert scan.channel == "data" and scan.units == "a.u." and scan.pixel_size_nm is None
