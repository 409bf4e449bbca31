"""Writing a denoised scan: a float32 TIFF height map, optionally a Gwyddion .gwy, a PNG preview and
the panel (input / denoised / removed on one colour scale, `afmwatch.denoise.panel`).

Outputs are new files named `<scan>.denoised.<ext>`; nothing existing is ever overwritten (a free
name `<scan>.denoised-1.<ext>` is taken instead) and the original scan is never opened for writing.
A copy the guard (`afmwatch.denoise.guard`) found to change the surface beyond the noise is named
`<scan>.denoised.SURFACE-CHANGED.<ext>` (one whose heights it could not check, the input being mostly
noise, `<scan>.denoised.UNVERIFIED.<ext>`), carries the guard's numbers in its TIFF metadata and says so
in its preview: it is for looking at, not for measuring.
"""

from __future__ import annotations

from pathlib import Path

import structlog

from afmwatch.denoise.guard import VERDICT_TAGS, GuardReport
from afmwatch.denoise.panel import write_panel
from afmwatch.render import write_preview
from afmwatch.scan import HEIGHT_UNITS, Scan
from afmwatch.writers import write_gwy, write_tiff

FORMATS = ("tiff", "gwy", "png", "panel")
# Links to the other scan direction: the denoised file holds one channel, so they would point nowhere.
DIRECTION_LINKS = ("retrace_channel", "trace_channel", "retrace_file", "trace_file")
SUFFIXES = {"tiff": ".tiff", "gwy": ".gwy", "png": ".png", "panel": ".panel.png"}

log = structlog.get_logger(__name__)


def denoised_stem(scan: Scan, out_dir: Path, formats: tuple[str, ...], tag: str | None = None) -> str:
    """`<name>.denoised` (frame number added for multi-frame files; `.SURFACE-CHANGED` or `.UNVERIFIED`
    added when the guard says the copy is not a measurement), suffixed until no output exists."""
    base = scan.path.name + (f".frame{scan.frame}" if scan.frame is not None else "") + ".denoised"
    if tag:
        base += f".{tag}"
    stem, n = base, 0
    while any((out_dir / f"{stem}{SUFFIXES[f]}").exists() for f in formats):
        n += 1
        stem = f"{base}-{n}"
    return stem


def write_denoised(
    scan: Scan,
    out_dir: str | Path,
    formats: tuple[str, ...] | list[str] = FORMATS,
    *,
    original: Scan | None = None,
    guard: GuardReport | None = None,
) -> list[Path]:
    """Write the denoised `scan` into `out_dir` in the given formats ("tiff", "gwy", "png", "panel");
    returns the paths.

    `original` is the scan that was denoised (as the denoiser saw it: levelled or not); the panel needs
    it. `guard` is the guard's report on the copy: a flagged copy gets the warning in its name, its TIFF
    metadata and its preview caption. A .gwy needs calibrated heights and a pixel size; without them it
    is skipped with a warning (the TIFF still carries everything that is known).
    """
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown denoised output format(s) {', '.join(unknown)}; known: {', '.join(FORMATS)}")
    if "panel" in formats and original is None:
        raise ValueError("the panel needs the scan as it was before denoising")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tag = VERDICT_TAGS.get(guard.verdict) if guard is not None else None
    stem = denoised_stem(scan, out_dir, tuple(formats), tag)
    denoiser = scan.metadata.get("denoiser", {})
    title = f"{scan.path.name} denoised ({denoiser.get('name', 'denoiser')})"
    written: list[Path] = []
    for fmt in formats:
        path = out_dir / f"{stem}{SUFFIXES[fmt]}"
        if fmt == "tiff":
            metadata = {k: v for k, v in scan.metadata.items() if k not in DIRECTION_LINKS}
            metadata.update(source_file=str(scan.path), source_format=scan.format)
            if guard is not None:
                metadata["denoise_guard"] = guard.to_dict()
            written.append(
                write_tiff(
                    path, scan.height, scan.pixel_size_nm, units=scan.units, channel=scan.channel, metadata=metadata
                )
            )
        elif fmt == "gwy":
            if scan.units != HEIGHT_UNITS or not scan.pixel_size_nm:
                log.warning("denoised_gwy_skipped", file=str(scan.path), reason="heights or pixel size not calibrated")
                continue
            written.append(write_gwy(path, scan.height, scan.pixel_size_nm, title=f"{scan.channel} (denoised)"))
        elif fmt == "png":
            caption = title + (f" - {tag.replace('-', ' ')}, not a measurement" if tag else "")
            written.append(write_preview(path, scan.height, scan.pixel_size_nm, caption))
        else:
            assert original is not None  # checked above
            written.append(
                write_panel(
                    path,
                    original.height,
                    scan.height,
                    units=scan.units,
                    pixel_size_nm=scan.pixel_size_nm,
                    title=title,
                    guard=guard,
                )
            )
    return written
