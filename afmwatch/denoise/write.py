"""Writing a denoised scan: a float32 TIFF height map, optionally a Gwyddion .gwy, and a PNG preview.

Outputs are new files named `<scan>.denoised.<ext>`; nothing existing is ever overwritten (a free
name `<scan>.denoised-1.<ext>` is taken instead) and the original scan is never opened for writing.
"""

from __future__ import annotations

from pathlib import Path

import structlog

from afmwatch.render import write_preview
from afmwatch.scan import HEIGHT_UNITS, Scan
from afmwatch.writers import write_gwy, write_tiff

FORMATS = ("tiff", "gwy", "png")
# Links to the other scan direction: the denoised file holds one channel, so they would point nowhere.
DIRECTION_LINKS = ("retrace_channel", "trace_channel", "retrace_file", "trace_file")
SUFFIXES = {"tiff": ".tiff", "gwy": ".gwy", "png": ".png"}

log = structlog.get_logger(__name__)


def denoised_stem(scan: Scan, out_dir: Path, formats: tuple[str, ...]) -> str:
    """`<name>.denoised` (frame number added for multi-frame files), suffixed until no output exists."""
    base = scan.path.name + (f".frame{scan.frame}" if scan.frame is not None else "") + ".denoised"
    stem, n = base, 0
    while any((out_dir / f"{stem}{SUFFIXES[f]}").exists() for f in formats):
        n += 1
        stem = f"{base}-{n}"
    return stem


def write_denoised(scan: Scan, out_dir: str | Path, formats: tuple[str, ...] | list[str] = FORMATS) -> list[Path]:
    """Write the denoised `scan` into `out_dir` in the given formats ("tiff", "gwy", "png"); returns the paths.

    A .gwy needs calibrated heights and a pixel size; without them it is skipped with a warning
    (the TIFF still carries everything that is known).
    """
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown denoised output format(s) {', '.join(unknown)}; known: {', '.join(FORMATS)}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = denoised_stem(scan, out_dir, tuple(formats))
    denoiser = scan.metadata.get("denoiser", {})
    written: list[Path] = []
    for fmt in formats:
        path = out_dir / f"{stem}{SUFFIXES[fmt]}"
        if fmt == "tiff":
            metadata = {k: v for k, v in scan.metadata.items() if k not in DIRECTION_LINKS}
            metadata.update(source_file=str(scan.path), source_format=scan.format)
            written.append(
                write_tiff(path, scan.height, scan.pixel_size_nm, units=scan.units, channel=scan.channel,
                           metadata=metadata)
            )
        elif fmt == "gwy":
            if scan.units != HEIGHT_UNITS or not scan.pixel_size_nm:
                log.warning("denoised_gwy_skipped", file=str(scan.path), reason="heights or pixel size not calibrated")
                continue
            written.append(write_gwy(path, scan.height, scan.pixel_size_nm, title=f"{scan.channel} (denoised)"))
        else:
            caption = f"{scan.path.name} denoised ({denoiser.get('name', 'denoiser')})"
            written.append(write_preview(path, scan.height, scan.pixel_size_nm, caption))
    return written
