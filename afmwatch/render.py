"""PNG previews of height maps, for sidecars, review folders and synthetic sets.

An operator's file manager cannot show an .ibw or .nid; a levelled, colour-mapped preview with a
scale bar and a caption can.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from afmwatch.durable import atomic_write_bytes


def afmhot_lut() -> np.ndarray:
    """Gwyddion/matplotlib 'afmhot' as a 256x3 uint8 table (black -> red -> yellow -> white)."""
    x = np.linspace(0.0, 1.0, 256)
    rgb = np.stack([2 * x, 2 * x - 0.5, 2 * x - 1.0], axis=1)
    return (np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)


def to_unit_range(height: np.ndarray, low_pct: float = 0.5, high_pct: float = 99.5) -> np.ndarray:
    """Map heights to 0..1 with robust percentile limits (a few spikes do not wash out the image)."""
    finite = height[np.isfinite(height)]
    if finite.size == 0:
        return np.zeros_like(height, dtype=np.float32)
    low, high = np.percentile(finite, [low_pct, high_pct])
    if high <= low:
        return np.zeros_like(height, dtype=np.float32)
    out = (np.nan_to_num(height, nan=low) - low) / (high - low)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def _nice_length(target_nm: float) -> float:
    """The largest 1/2/5 x 10^k length not above `target_nm`."""
    exponent = np.floor(np.log10(target_nm))
    for mantissa in (5.0, 2.0, 1.0):
        if mantissa * 10**exponent <= target_nm:
            return float(mantissa * 10**exponent)
    return float(10**exponent)


def _format_length(nm: float) -> str:
    return f"{nm / 1000:g} um" if nm >= 1000 else f"{nm:g} nm"  # the default font has no µ


def preview_image(
    height: np.ndarray,
    pixel_size_nm: float | None = None,
    caption: str | None = None,
    max_size: int = 512,
) -> Image.Image:
    """A colour-mapped RGB image with an optional scale bar (bottom left) and caption (top left)."""
    rgb = afmhot_lut()[(to_unit_range(height) * 255).astype(np.uint8)]
    image = Image.fromarray(rgb, mode="RGB")
    scale = min(1.0, max_size / max(image.size))
    if scale < 1.0:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=12)
    if pixel_size_nm and image.width >= 64:
        shown_px_nm = pixel_size_nm / scale
        bar_nm = _nice_length(image.width * shown_px_nm / 4)
        bar_px = max(1, round(bar_nm / shown_px_nm))
        y = image.height - 12
        draw.rectangle([8, y, 8 + bar_px, y + 4], fill=(255, 255, 255), outline=(0, 0, 0))
        draw.text((8, y - 12), _format_length(bar_nm), fill=(255, 255, 255), font=font, stroke_width=1, stroke_fill=(0, 0, 0))
    if caption:
        draw.text((6, 4), caption, fill=(255, 255, 255), font=font, stroke_width=1, stroke_fill=(0, 0, 0))
    return image


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)  # ~5x faster than the default 6, files barely larger
    return buffer.getvalue()


def write_preview(
    path: str | Path,
    height: np.ndarray,
    pixel_size_nm: float | None = None,
    caption: str | None = None,
    max_size: int = 512,
) -> Path:
    """Atomically write a PNG preview of a height map; returns the path."""
    path = Path(path)
    atomic_write_bytes(path, png_bytes(preview_image(height, pixel_size_nm, caption, max_size)))
    return path
