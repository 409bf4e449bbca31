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


AFMHOT_PALETTE = afmhot_lut().ravel().tolist()
WHITE, BLACK = 255, 0  # palette indices


def to_unit_range(height: np.ndarray, low_pct: float = 0.5, high_pct: float = 99.5) -> np.ndarray:
    """Map heights to 0..1 with robust percentile limits (a few spikes do not wash out the image)."""
    low, high = display_limits(height, low_pct, high_pct)
    if high <= low:
        return np.zeros_like(height, dtype=np.float32)
    out = (np.nan_to_num(height, nan=low) - low) / (high - low)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def display_limits(height: np.ndarray, low_pct: float = 0.5, high_pct: float = 99.5) -> tuple[float, float]:
    """The percentile limits of the colour scale, from at most about 16,000 evenly spaced pixels:
    a display range needs no more, and the daemon renders every scan. (0, 0) when nothing is finite."""
    sample = height.ravel()[:: max(1, height.size // 16384)]
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        sample = height[np.isfinite(height)]  # a few finite pixels the stride stepped over
        if sample.size == 0:
            return 0.0, 0.0
    low, high = np.percentile(sample, [low_pct, high_pct])
    return float(low), float(high)


def grey_levels(height: np.ndarray) -> np.ndarray:
    """Heights as 0..255 (uint8) between the display limits; missing pixels at the lowest level."""
    low, high = display_limits(height)
    if high <= low:
        return np.zeros(height.shape, dtype=np.uint8)
    scaled = (height - np.float32(low)) * np.float32(255.0 / (high - low))
    np.clip(scaled, 0.0, 255.0, out=scaled)
    return np.nan_to_num(scaled, copy=False, nan=0.0).astype(np.uint8)


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
    """A colour-mapped (palette) image with an optional scale bar (bottom left) and caption (top left)."""
    levels = Image.fromarray(grey_levels(height), mode="L")
    scale = min(1.0, max_size / max(levels.size))
    if scale < 1.0:  # shrink the grey levels (the colour map is monotonic), then colour them
        levels = levels.resize((max(1, round(levels.width * scale)), max(1, round(levels.height * scale))))
    # A palette image: a third of the pixel data of RGB and no per-row PNG filter search, so encoding
    # is several times faster. Index 255 of afmhot is white and 0 black, for the scale bar and text.
    image = Image.fromarray(np.asarray(levels), mode="P")
    image.putpalette(AFMHOT_PALETTE)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=12)
    if pixel_size_nm and image.width >= 64:
        shown_px_nm = pixel_size_nm / scale
        bar_nm = _nice_length(image.width * shown_px_nm / 4)
        bar_px = max(1, round(bar_nm / shown_px_nm))
        y = image.height - 12
        draw.rectangle([8, y, 8 + bar_px, y + 4], fill=WHITE, outline=BLACK)
        _label(draw, (8, y - 14), _format_length(bar_nm), font)
    if caption:
        for i, line in enumerate(_fit_lines(draw, caption, font, image.width - 12)):
            _label(draw, (6, 4 + 16 * i), line, font)
    return image


def _fit_lines(
    draw: ImageDraw.ImageDraw,
    text: str,
    font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
    width: float,
    max_lines: int = 2,
) -> list[str]:
    """`text` broken at spaces into lines no wider than `width` pixels; the last line shortened with
    "..." if it does not fit (a caption must never run off the preview)."""
    lines: list[str] = []
    for word in text.split(" "):
        if lines and draw.textlength(f"{lines[-1]} {word}", font=font) <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    if len(lines) > max_lines:
        lines = lines[: max_lines - 1] + [" ".join(lines[max_lines - 1 :])]
    last = lines[-1]
    if draw.textlength(last, font=font) > width:
        while last and draw.textlength(last + "...", font=font) > width:
            last = last[:-1]
        lines[-1] = last.rstrip() + "..."
    return lines


def _label(
    draw: ImageDraw.ImageDraw, at: tuple[int, int], text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont
) -> None:
    """White text on a black box: readable on any colour, and a third of the cost of outlined text."""
    left, top, right, bottom = draw.textbbox(at, text, font=font)
    draw.rectangle([left - 2, top - 2, right + 1, bottom + 1], fill=BLACK)
    draw.text(at, text, fill=WHITE, font=font)


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
