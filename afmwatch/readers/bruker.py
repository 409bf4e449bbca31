"""Bruker Nanoscope .spm and numbered .000-.999 files, read with pySPM (the library AFMReader uses),
called directly because AFMReader's wrapper cannot pick the retrace direction."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from afmwatch.config import ReadingConfig
from afmwatch.readers.common import (
    BACKWARD,
    FORWARD,
    Channel,
    FileFormat,
    check_pixels,
    choose_channel,
    frames_to_scans,
    header_int,
    library_call,
    nm_factor,
    preflight,
)
from afmwatch.scan import HEIGHT_UNITS, INTENSITY_UNITS, Scan, ScanError


def _bruker_header(
    path: Path, reading: ReadingConfig
) -> tuple[Any, list[Channel], dict[str, int | None], dict[str, Any]]:
    """pySPM's parsed file, its image channels, each channel's valid (recorded) line count, metadata."""
    head = preflight(path)
    # pySPM reads header lines until '*File list end' and loops forever on a file without one
    if b"*File list end" not in head:
        header_length = header_int(path, head.decode("latin-1"), r"\\Data length: (\d+)", "its header length")
        with open(path, "rb") as handle:
            if b"*File list end" not in handle.read(min(header_length, 16 * 1024 * 1024)):
                raise ScanError(path, "the Bruker header is incomplete (no '*File list end'); truncated file?")
    import pySPM

    with library_call(path, "pySPM", "a Bruker Nanoscope file"):
        bruker = pySPM.Bruker(str(path))
    layers = []
    for layer in bruker.layers:
        match = re.search(rb'"([^"]*)"', (layer.get(b"@2:Image Data") or [b""])[0])
        if match is None:
            continue
        check_pixels(
            path, int(layer.get(b"Number of lines", [b"0"])[0]), int(layer.get(b"Samps/line", [b"0"])[0]), reading
        )
        backward = layer.get(b"Line Direction", [b"Trace"])[0].strip() == b"Retrace"
        valid_lines = layer.get(b"Valid data len Y")
        layers.append((match[1].decode("latin-1"), backward, int(valid_lines[0]) if valid_lines else None))
    quantities = [quantity for quantity, _, _ in layers]
    channels, valid = [], {}
    for quantity, backward, valid_lines in layers:
        name = f"{quantity} Retrace" if backward and quantities.count(quantity) > 1 else quantity
        channels.append(Channel(name, quantity, BACKWARD if backward else FORWARD))
        valid[name] = valid_lines
    scanner = bruker.scanners[0] if bruker.scanners else {}

    def text(key: bytes) -> str | None:
        value = scanner.get(key)
        return value[0].decode("latin-1").strip() if value else None

    metadata = {
        "lines_set": int(lines_text) if (lines_text := text(b"Lines")) else None,
        "points_set": int(points_text) if (points_text := text(b"Samps/line")) else None,
        "instrument": "Bruker Nanoscope",
        "vendor": {k.decode(): text(k) for k in (b"Operating mode", b"Scan rate", b"Scan size") if text(k) is not None},
    }
    return bruker, channels, valid, metadata


def channels_bruker(path: Path) -> list[str]:
    return [c.name for c in _bruker_header(path, ReadingConfig())[1]]


def read_bruker(path: Path, reading: ReadingConfig, channel: str | None = None) -> list[Scan]:
    bruker, channels, valid, metadata = _bruker_header(path, reading)
    chosen = choose_channel(path, channels, reading.channels, channel)
    valid_lines = valid[chosen.name]
    with library_call(path, "pySPM", "a Bruker Nanoscope file"):
        image = bruker.get_channel(chosen.quantity, backward=chosen.direction == BACKWARD)
        (x_step, x_unit), _ = image.pxs()
        z_unit = image.zscale
        size = image.size["real"]
        pixels = np.flipud(np.array(image.pixels, dtype=np.float64))
    z_factor = nm_factor(z_unit)
    xy_factor = nm_factor(x_unit)
    if valid_lines is not None:
        metadata["lines_acquired"] = valid_lines
    if xy_factor is not None and nm_factor(size["unit"]) is not None:
        metadata["scan_size_nm"] = [size["x"] * nm_factor(size["unit"]), size["y"] * nm_factor(size["unit"])]
    return frames_to_scans(
        path,
        pixels * (z_factor or 1.0),
        fmt="spm",
        chosen=chosen,
        channels=channels,
        pixel_size_nm=x_step * xy_factor if xy_factor else None,
        metadata=metadata,
        units=HEIGHT_UNITS if z_factor is not None else INTENSITY_UNITS,
    )


_MAX_HEADER = 16 * 1024 * 1024


def nanoscope_complete(handle: BinaryIO, size: int) -> bool | None:
    """Complete when the text header has ended ('*File list end') and every image's data (its
    'Data offset' plus 'Data length') lies inside the file."""
    handle.seek(0)
    header = handle.read(min(size, _MAX_HEADER))
    end = header.find(b"*File list end")
    if end < 0:
        return False if size < _MAX_HEADER else None
    ends = [
        int(offset) + int(length)
        for section in header[:end].split(b"\\*")
        for offset, length in re.findall(rb"\\Data offset: (\d+).*?\\Data length: (\d+)", section, flags=re.S)
    ]
    return all(stop <= size for stop in ends)


NANOSCOPE = FileFormat(
    key="spm",
    name="Bruker Nanoscope",
    suffixes=(".spm", ".000-.999"),  # Nanoscope numbers each capture: scan.000, scan.001, ...
    expected="a Bruker Nanoscope file",
    signatures=(b"\\*File list",),
    read=read_bruker,
    list_channels=channels_bruker,
    complete=nanoscope_complete,
)
