"""Every supported file becomes a Scan: the switchboard from file suffix to one reader per format.

`read_scan(path)` gives the height channel (first frame of a stack), `read_frames(path)` every frame,
`list_channels(path)` the channel names. Every failure is a ScanError naming the file and the reason;
no reader writes anything, next to the input or anywhere else.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import structlog

from afmwatch.config import ReadingConfig
from afmwatch.readers import afmreader_formats, gwyddion, images, nanosurf
from afmwatch.scan import Scan, ScanError

log = structlog.get_logger(__name__)

Reader = Callable[[Path, ReadingConfig, "str | None"], list[Scan]]

# suffix -> reader; Bruker's numbered files (.000-.999) use the ".spm" entry
READERS: dict[str, Reader] = {
    ".nid": nanosurf.read,
    ".ibw": afmreader_formats.read_ibw,
    ".jpk": afmreader_formats.read_jpk,
    ".h5-jpk": afmreader_formats.read_h5jpk,
    ".spm": afmreader_formats.read_bruker,
    ".gwy": gwyddion.read,
    ".stp": afmreader_formats.read_stp,
    ".top": afmreader_formats.read_top,
    ".asd": afmreader_formats.read_asd,
    ".tif": images.read_tiff,
    ".tiff": images.read_tiff,
    ".png": images.read_png,
    ".jpg": images.read_jpeg,
    ".jpeg": images.read_jpeg,
}

CHANNEL_LISTERS: dict[str, Callable[[Path], list[str]]] = {
    ".nid": nanosurf.channels,
    ".ibw": afmreader_formats.channels_ibw,
    ".jpk": afmreader_formats.channels_jpk,
    ".h5-jpk": afmreader_formats.channels_h5jpk,
    ".spm": afmreader_formats.channels_bruker,
    ".gwy": gwyddion.channels,
    ".stp": afmreader_formats.channels_wsxm,
    ".top": afmreader_formats.channels_wsxm,
    ".asd": afmreader_formats.channels_asd,
    ".tif": images.channels_tiff,
    ".tiff": images.channels_tiff,
    ".png": images.channels_png,
    ".jpg": images.channels_jpeg,
    ".jpeg": images.channels_jpeg,
}

# Scan.format -> what to call it
FORMAT_NAMES: dict[str, str] = {
    "nid": "Nanosurf .nid",
    "ibw": "Asylum Research .ibw",
    "jpk": "JPK .jpk",
    "h5-jpk": "JPK .h5-jpk (high-speed)",
    "spm": "Bruker Nanoscope",
    "gwy": "Gwyddion .gwy",
    "stp": "WSxM .stp",
    "top": "WSxM .top",
    "asd": "high-speed AFM .asd",
    "tiff": "TIFF",
    "png": "PNG image",
    "jpg": "JPEG image",
}

_BRUKER_NUMBERED = re.compile(r"^\.\d{3}$")


def _suffix(path: Path) -> str | None:
    """The READERS key for a path (".h5-jpk" is a double suffix; ".001" means Bruker)."""
    name = path.name.lower()
    if name.endswith(".h5-jpk"):
        return ".h5-jpk"
    suffix = path.suffix.lower()
    if _BRUKER_NUMBERED.match(suffix):
        return ".spm"
    return suffix if suffix in READERS else None


def supported_suffixes() -> list[str]:
    """The file suffixes afmwatch reads (".000"-".999" stand for Bruker's numbered files)."""
    return sorted(READERS) + [".000-.999"]


def is_supported(path: str | Path) -> bool:
    return _suffix(Path(path)) is not None


def _reader(path: Path) -> str:
    key = _suffix(path)
    if key is None:
        raise ScanError(
            path, f"unsupported file type {path.suffix or '(no extension)'!r}; afmwatch reads "
            + ", ".join(supported_suffixes())
        )
    return key


def read_frames(
    path: str | Path, reading: ReadingConfig | None = None, *, channel: str | None = None
) -> list[Scan]:
    """Every frame of the chosen channel (one item for single-frame files)."""
    path = Path(path)
    reading = reading or ReadingConfig()
    scans = READERS[_reader(path)](path, reading, channel)
    log.debug("scan_read", file=str(path), format=scans[0].format, channel=scans[0].channel,
              shape=list(scans[0].shape), frames=len(scans), units=scans[0].units)
    return scans


def read_scan(path: str | Path, reading: ReadingConfig | None = None, *, channel: str | None = None) -> Scan:
    """The chosen height channel of a file (the first frame of a multi-frame file)."""
    return read_frames(path, reading, channel=channel)[0]


def list_channels(path: str | Path) -> list[str]:
    """The channel names found in a file (what `channel=` accepts)."""
    path = Path(path)
    return CHANNEL_LISTERS[_reader(path)](path)


__all__ = [
    "READERS",
    "CHANNEL_LISTERS",
    "FORMAT_NAMES",
    "read_scan",
    "read_frames",
    "list_channels",
    "is_supported",
    "supported_suffixes",
]
