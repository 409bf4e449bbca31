"""Every supported file becomes a Scan: one FileFormat record per format, collected in FORMATS, and the
switchboard from a file's suffix to its record.

`read_scan(path)` gives the height channel (first frame of a stack), `read_frames(path)` every frame,
`list_channels(path)` the channel names. Before a format's reader runs, the file is checked here: it
exists, is a regular, non-empty, readable file, and starts with one of the format's signatures. Every
failure is a ScanError naming the file and the reason; no reader writes anything, next to the input
or anywhere else.
"""

from __future__ import annotations

import os
import re
import struct
from pathlib import Path
from typing import BinaryIO

import structlog

from afmwatch.config import ReadingConfig
from afmwatch.readers import asd, asylum, bruker, gwyddion, images, jpk, nanosurf, wsxm
from afmwatch.readers.common import CONTAINERS, FileFormat, preflight
from afmwatch.scan import PermanentScanError, Scan, ScanError

log = structlog.get_logger(__name__)

# Scan.format -> its record, in the order `afmwatch inspect` and the error messages list them
FORMATS: dict[str, FileFormat] = {
    record.key: record
    for record in (
        nanosurf.NID,
        asylum.IBW,
        jpk.JPK,
        jpk.H5_JPK,
        bruker.NANOSCOPE,
        gwyddion.GWY,
        wsxm.STP,
        wsxm.TOP,
        asd.ASD,
        images.TIFF,
        images.PNG,
        images.JPEG,
    )
}

# Scan.format -> what to call it
FORMAT_NAMES: dict[str, str] = {key: record.name for key, record in FORMATS.items()}

_NUMBERED = re.compile(r"\.(\d+)-\.(\d+)")


def _expanded(suffix: str) -> list[str]:
    """A record's suffix as the suffixes it stands for (".000-.999" is a thousand of them)."""
    numbered = _NUMBERED.fullmatch(suffix)
    if numbered is None:
        return [suffix]
    first, last = numbered.groups()
    return [f".{n:0{len(first)}d}" for n in range(int(first), int(last) + 1)]


_BY_SUFFIX: dict[str, FileFormat] = {
    expanded: record for record in FORMATS.values() for suffix in record.suffixes for expanded in _expanded(suffix)
}


def supported_suffixes() -> list[str]:
    """The file suffixes afmwatch reads (".000"-".999" stand for Bruker's numbered files)."""
    suffixes = [suffix for record in FORMATS.values() for suffix in record.suffixes]
    numbered = [suffix for suffix in suffixes if _NUMBERED.fullmatch(suffix)]
    return sorted(set(suffixes) - set(numbered)) + numbered


def is_supported(path: str | Path) -> bool:
    return Path(path).suffix.lower() in _BY_SUFFIX


def describe_content(head: bytes) -> str:
    """What the first bytes of a file look like, in words ("a PNG image", "text", ...)."""
    for signatures, what in CONTAINERS:
        if head.startswith(signatures):
            return what
    for record in FORMATS.values():
        if record.signatures and head.startswith(record.signatures):
            return record.expected
    if not head.strip(b"\x00"):
        return "only zero bytes"
    sample = head[:4096]
    printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in sample)
    return "text" if printable > 0.95 * len(sample) else "unrecognised binary data"


def file_format(path: Path) -> FileFormat:
    """The record for a file, once the file is there and its content is what its suffix promises."""
    record = _BY_SUFFIX.get(path.suffix.lower())
    if record is None:
        raise PermanentScanError(
            path,
            f"unsupported file type {path.suffix or '(no extension)'!r}; afmwatch reads "
            + ", ".join(supported_suffixes()),
        )
    head = preflight(path)
    if record.signatures and not head.startswith(record.signatures):
        raise PermanentScanError(path, f"not {record.expected}: the content looks like {describe_content(head)}")
    return record


def is_complete(path: Path, handle: BinaryIO) -> bool | None:
    """Whether the open file `handle` (named `path`) holds all the data its own structure declares:
    the format's `complete` check; None for a format without one, or when the check cannot tell."""
    record = _BY_SUFFIX.get(path.suffix.lower())
    if record is None or record.complete is None:
        return None
    try:
        size = os.fstat(handle.fileno()).st_size
        return record.complete(handle, size) if size else None  # empty: nothing to tell (the reader says so)
    except (OSError, struct.error, ValueError, OverflowError):
        return None


def read_frames(path: str | Path, reading: ReadingConfig | None = None, *, channel: str | None = None) -> list[Scan]:
    """Every frame of the chosen channel (one item for single-frame files)."""
    path = Path(path)
    reading = reading or ReadingConfig()
    scans = file_format(path).read(path, reading, channel)
    log.debug(
        "scan_read",
        file=str(path),
        format=scans[0].format,
        channel=scans[0].channel,
        shape=list(scans[0].shape),
        frames=len(scans),
        units=scans[0].units,
    )
    return scans


def read_scan(path: str | Path, reading: ReadingConfig | None = None, *, channel: str | None = None) -> Scan:
    """The chosen height channel of a file (the first frame of a multi-frame file)."""
    return read_frames(path, reading, channel=channel)[0]


def list_channels(path: str | Path) -> list[str]:
    """The channel names found in a file (what `channel=` accepts)."""
    path = Path(path)
    return file_format(path).list_channels(path)


__all__ = [
    "FORMATS",
    "FORMAT_NAMES",
    "FileFormat",
    "is_complete",
    "is_supported",
    "list_channels",
    "read_frames",
    "read_scan",
    "supported_suffixes",
]


def read_retrace(scan: Scan, reading: ReadingConfig | None = None, *, beside: Path | None = None) -> Scan | None:
    """The retrace (backward) scan of the same area, else None: the channel the reader named in
    `retrace_channel`, or the file named in `retrace_file` (relative to the scan's folder, or to
    `beside` when the scan was parsed from a copy elsewhere, as the synthetic generator writes trace
    and retrace side by side), read with the same `reading` settings as the trace (channels, `max_pixels`).

    A retrace that cannot be read is logged and skipped: the trace's own metrics still stand."""
    channel = scan.metadata.get("retrace_channel")
    other_file = scan.metadata.get("retrace_file")
    if channel and channel != scan.channel:
        source, kwargs = scan.path, {"channel": channel}
    elif isinstance(other_file, str) and ((beside or scan.path.parent) / other_file).is_file():
        source, kwargs = (beside or scan.path.parent) / other_file, {}
    else:
        return None
    try:
        if scan.frame:  # a later frame of a movie: compare with the same frame of the retrace
            frames = read_frames(source, reading, **kwargs)
            retrace = frames[scan.frame] if scan.frame < len(frames) else None
        else:
            retrace = read_scan(source, reading, **kwargs)
    except ScanError as exc:
        log.warning("retrace_unreadable", file=str(scan.path), retrace=str(source), reason=exc.reason, **kwargs)
        return None
    return retrace if retrace is not None and retrace.shape == scan.shape else None
