"""Previews: colours follow afmhot, missing pixels are dark, labels are readable, sizes are bounded."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from afmwatch.render import afmhot_lut, grey_levels, png_bytes, preview_image, to_unit_range


def ramp(rows: int = 256, cols: int = 256) -> np.ndarray:
    """Heights rising from left to right (nm)."""
    return np.tile(np.linspace(0.0, 50.0, cols, dtype=np.float32), (rows, 1))


def rgb_of(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB")).astype(int)


def test_colours_follow_afmhot_from_lowest_to_highest():
    rgb = rgb_of(preview_image(ramp()))
    row = rgb[128]  # no caption or scale bar on this row
    lut = afmhot_lut().astype(int)
    assert np.abs(row[0] - lut[0]).max() <= 3 and np.abs(row[-1] - lut[-1]).max() <= 3
    brightness = row.sum(axis=1)
    assert np.all(np.diff(brightness) >= 0) and brightness[-1] > brightness[0] + 600


def test_missing_pixels_show_as_the_lowest_colour_and_nan_everywhere_gives_black():
    height = ramp()
    height[100:110, 200:240] = np.nan
    rgb = rgb_of(preview_image(height))
    assert rgb[100:110, 200:240].max() <= 3
    assert rgb_of(preview_image(np.full((64, 64), np.nan, dtype=np.float32))).max() == 0


def test_grey_levels_match_the_unit_range_and_ignore_a_few_spikes():
    rng = np.random.default_rng(3)
    height = rng.normal(0.0, 1.0, (300, 300)).astype(np.float32)
    assert np.array_equal(grey_levels(height), (to_unit_range(height) * 255).astype(np.uint8))
    spiked = height.copy()
    spiked[5, 5] = 1e6  # one spike must not wash the image out
    change = np.abs(grey_levels(spiked).astype(int) - grey_levels(height))
    assert change[5, 5] > 0 and np.delete(change.ravel(), 5 * 300 + 5).max() <= 2  # the spike alone, saturated
    assert not grey_levels(np.ones((10, 10), dtype=np.float32)).any()


def test_caption_is_white_on_a_black_box_and_the_scale_bar_appears_with_a_pixel_size():
    flat = np.full((256, 256), 7.0, dtype=np.float32)  # one colour: anything black or white is a label
    plain = rgb_of(preview_image(flat))
    labelled = rgb_of(preview_image(flat, pixel_size_nm=10.0, caption="bad: scar_fraction"))
    assert np.array_equal(np.unique(plain.reshape(-1, 3), axis=0).shape, (1, 3))
    top, bottom = labelled[:20, :150], labelled[-30:, :100]
    for corner in (top, bottom):
        assert (corner == 255).all(axis=2).any() and (corner == 0).all(axis=2).any()
    assert (rgb_of(preview_image(flat, caption="x"))[-30:] == plain[-30:]).all()  # no bar without a size


def test_previews_are_palette_pngs_no_larger_than_max_size():
    image = preview_image(ramp(1024, 2048), pixel_size_nm=5.0, caption="good 0.97")
    assert image.size == (512, 256)
    decoded = Image.open(io.BytesIO(png_bytes(image)))
    assert decoded.format == "PNG" and decoded.mode == "P" and decoded.size == (512, 256)
