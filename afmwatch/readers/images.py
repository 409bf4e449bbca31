"""PNG, JPEG and TIFF: afmwatch's own float TIFFs (exact), other float TIFFs (raw data), and image
exports (a rendered scan, perhaps with axes and a colour bar) read with Pillow and tifffile."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import numpy as np

from afmwatch.config import ReadingConfig
from afmwatch.readers import data_area
from afmwatch.readers.common import (
    BIGTIFF_SIGNATURES,
    TIFF_SIGNATURES,
    FileFormat,
    check_decoded_bytes,
    check_pixels,
    check_tiff_complete,
    check_tiff_data,
    finite_or_error,
    library_call,
    nm_factor,
    tiff_complete,
)
from afmwatch.scan import HEIGHT_UNITS, INTENSITY_UNITS, PermanentScanError, Scan, ScanError

COLOUR_BAR_CHANNEL = "height (colour bar)"
INTENSITY_CHANNEL = "intensity"
DATA_CHANNEL = "data"


def _export_scan(path: Path, pixels: np.ndarray, reading: ReadingConfig, fmt: str, channel: str | None) -> Scan:
    """A Scan from a rendered export (H x W grey or H x W x 3 RGB, 8 or 16 bit)."""
    rows, cols = pixels.shape[:2]
    if np.issubdtype(pixels.dtype, np.integer):
        scale = float(np.iinfo(pixels.dtype).max)
    else:  # 32-bit grey or float pixels: their own maximum is full scale
        scale = float(np.nanmax(np.abs(pixels))) or 1.0
    rgb = pixels if pixels.ndim == 3 else np.repeat(pixels[:, :, None], 3, axis=2)
    rgb8 = (rgb.astype(np.float64) * (255.0 / scale)).round().clip(0, 255).astype(np.uint8)

    layout = data_area.ExportLayout((0, 0, rows, cols))
    if reading.data_area == "auto":
        layout = data_area.find_layout(rgb8)
    elif reading.data_area == "crop-right-30":
        layout = data_area.ExportLayout(data_area.crop_right(rows, cols))
    top, left, bottom, right = (int(v) for v in layout.data_area)

    metadata: dict[str, Any] = {"data_area": [top, left, bottom, right], "data_area_mode": reading.data_area}
    values = None
    if layout.colour_bar is not None and channel in (None, COLOUR_BAR_CHANNEL):
        colours = data_area.bar_colours(rgb8, layout.colour_bar, layout.bar_orientation or "vertical")
        mapped = data_area.colours_to_values(rgb8[top:bottom, left:right], colours)
        if mapped is not None:
            values, mismatch = mapped
            metadata.update(
                image_values="colour-bar",
                colour_bar=[int(v) for v in layout.colour_bar],
                colour_bar_mismatch=round(mismatch, 2),
            )
    if values is None:
        if channel not in (None, INTENSITY_CHANNEL):
            raise ScanError(path, f"no channel named {channel!r}; this image export has: {INTENSITY_CHANNEL}")
        weights = np.array([0.299, 0.587, 0.114])
        values = (rgb[top:bottom, left:right].astype(np.float64) @ weights) / scale
        metadata["image_values"] = "intensity"
    chosen = COLOUR_BAR_CHANNEL if metadata["image_values"] == "colour-bar" else INTENSITY_CHANNEL
    return Scan(
        height=finite_or_error(path, values),
        pixel_size_nm=None,
        channel=chosen,
        path=path,
        format=fmt,
        units=INTENSITY_UNITS,
        channels=(chosen,),
        metadata=metadata,
    )


def _sample_bytes(mode: str) -> int:
    """Bytes per sample of a Pillow image mode (what decoding allocates per pixel and band)."""
    if mode.startswith("I;16"):
        return 2
    return 4 if mode in ("I", "F") else 1


def _pillow_pixels(path: Path, reading: ReadingConfig, expected: str) -> np.ndarray:
    from PIL import Image

    with library_call(path, "Pillow", expected):
        try:
            opened = Image.open(path)
        except Image.DecompressionBombError as exc:
            raise PermanentScanError(path, f"refused as a likely decompression bomb; Pillow said: {exc}") from None
        with opened as image:
            check_pixels(path, image.height, image.width, reading)
            check_decoded_bytes(
                path, (image.height, image.width, len(image.getbands())), _sample_bytes(image.mode), reading
            )
            if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                pixels = np.asarray(image).astype(np.uint16 if image.mode.startswith("I;16") else np.int64)
            elif image.mode in ("RGBA", "LA", "P", "PA") or "transparency" in image.info:
                rgba = image.convert("RGBA")
                white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                pixels = np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
            elif image.mode == "L":
                pixels = np.asarray(image)
            else:
                pixels = np.asarray(image.convert("RGB"))
    if pixels.dtype == np.int64:  # 32-bit integer grey: keep as raw intensity
        pixels = pixels.astype(np.float64)
    return pixels


def read_png(path: Path, reading: ReadingConfig, channel: str | None = None) -> list[Scan]:
    return [_export_scan(path, _pillow_pixels(path, reading, "a PNG image"), reading, "png", channel)]


def read_jpeg(path: Path, reading: ReadingConfig, channel: str | None = None) -> list[Scan]:
    return [_export_scan(path, _pillow_pixels(path, reading, "a JPEG image"), reading, "jpg", channel)]


def _afmwatch_description(description: str) -> dict[str, Any] | None:
    from afmwatch.writers import TIFF_DESCRIPTION_KEY

    try:
        parsed = json.loads(description)
    except (TypeError, ValueError):
        return None
    block = parsed.get(TIFF_DESCRIPTION_KEY) if isinstance(parsed, dict) else None
    return block if isinstance(block, dict) else None


def _imagej_pixel_size(page: Any) -> float | None:
    """Pixel size from ImageJ's calibration (unit=nm/micron plus XResolution), if present."""
    description = page.description or ""
    if not description.startswith("ImageJ="):
        return None
    unit = dict(line.split("=", 1) for line in description.splitlines() if "=" in line).get("unit", "")
    factor = nm_factor({"micron": "um", "\\u00B5m": "um"}.get(unit, unit))
    resolution = page.tags.get("XResolution")
    if factor is None or resolution is None:
        return None
    numerator, denominator = resolution.value
    return factor * denominator / numerator if numerator else None


def read_tiff(path: Path, reading: ReadingConfig, channel: str | None = None) -> list[Scan]:
    """afmwatch TIFFs read back exactly; other float/16-bit single-channel TIFFs are raw data (a.u.);
    8-bit or RGB TIFFs are image exports (data area and colour bar as for PNG)."""
    import tifffile

    check_tiff_complete(path)
    with library_call(path, "tifffile", "a TIFF file"), tifffile.TiffFile(path) as tif:
        if not tif.pages:
            raise PermanentScanError(path, "the TIFF holds no image")
        page = cast("tifffile.TiffPage", tif.pages[0])  # without useframes, not a TiffFrame
        check_tiff_data(path, [page])
        shape = page.shape
        check_pixels(path, int(shape[0]), int(shape[1]) if len(shape) > 1 else 1, reading)
        check_decoded_bytes(path, shape, page.dtype.itemsize if page.dtype is not None else 8, reading)
        pixels = page.asarray()
        description = page.description or ""
        imagej_pixel_size = _imagej_pixel_size(page)
    pixels = np.squeeze(pixels)
    if pixels.ndim == 3 and pixels.shape[2] == 4:
        pixels = pixels[:, :, :3]
    if pixels.ndim == 3 and pixels.shape[0] in (3, 4) and pixels.shape[2] not in (3, 4):
        pixels = np.moveaxis(pixels[:3], 0, -1)
    own = _afmwatch_description(description)
    if own is not None:
        stored_channel = str(own.get("channel", "Height"))
        if channel not in (None, stored_channel):
            raise ScanError(path, f"no channel named {channel!r}; this afmwatch TIFF holds: {stored_channel}")
        pixel_size = own.get("pixel_size_nm")
        metadata = stored if isinstance(stored := own.get("metadata"), dict) else {}
        return [
            Scan(
                height=finite_or_error(path, pixels),
                pixel_size_nm=float(pixel_size) if pixel_size else None,
                channel=stored_channel,
                path=path,
                format="tiff",
                units=str(own.get("units", HEIGHT_UNITS)),
                channels=(stored_channel,),
                metadata=dict(metadata),
            )
        ]
    if pixels.ndim == 2 and (np.issubdtype(pixels.dtype, np.floating) or pixels.dtype.itemsize > 1):
        if channel not in (None, DATA_CHANNEL):
            raise ScanError(path, f"no channel named {channel!r}; this TIFF holds: {DATA_CHANNEL}")
        return [
            Scan(
                height=finite_or_error(path, pixels.astype(np.float64)),
                pixel_size_nm=imagej_pixel_size,
                channel=DATA_CHANNEL,
                path=path,
                format="tiff",
                units=INTENSITY_UNITS,
                channels=(DATA_CHANNEL,),
                metadata={"image_values": "raw"},
            )
        ]
    if pixels.ndim not in (2, 3) or (pixels.ndim == 3 and pixels.shape[2] != 3):
        raise ScanError(path, f"the TIFF holds an array of shape {pixels.shape}, not a 2-D image")
    return [_export_scan(path, pixels, reading, "tiff", channel)]


def channels_png(path: Path) -> list[str]:
    return list(read_png(path, ReadingConfig())[0].channels)


def channels_jpeg(path: Path) -> list[str]:
    return list(read_jpeg(path, ReadingConfig())[0].channels)


def channels_tiff(path: Path) -> list[str]:
    return list(read_tiff(path, ReadingConfig())[0].channels)


TIFF = FileFormat(
    key="tiff",
    name="TIFF",
    suffixes=(".tif", ".tiff"),
    expected="a TIFF file",
    signatures=TIFF_SIGNATURES + BIGTIFF_SIGNATURES,
    read=read_tiff,
    list_channels=channels_tiff,
    complete=tiff_complete,
)
PNG = FileFormat(
    key="png",
    name="PNG image",
    suffixes=(".png",),
    expected="a PNG image",
    signatures=(b"\x89PNG\r\n\x1a\n",),
    read=read_png,
    list_channels=channels_png,
)
JPEG = FileFormat(
    key="jpg",
    name="JPEG image",
    suffixes=(".jpg", ".jpeg"),
    expected="a JPEG image",
    signatures=(b"\xff\xd8\xff",),
    read=read_jpeg,
    list_channels=channels_jpeg,
)
