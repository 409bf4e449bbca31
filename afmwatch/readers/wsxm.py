"""WSxM .stp (doubles) and .top (int16) images, read with AFMReader after checking the text header."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from afmwatch.config import ReadingConfig
from afmwatch.readers.common import (
    BACKWARD,
    FORWARD,
    Channel,
    FileFormat,
    afmreader,
    check_pixels,
    choose_channel,
    frames_to_scans,
    header_int,
    library_call,
    nm_factor,
    preflight,
    small_json,
)
from afmwatch.scan import Scan, ScanError

SIGNATURES = (b"WSxM file copyright",)
EXPECTED = "a WSxM file"


def _wsxm_header(path: Path, reading: ReadingConfig) -> tuple[list[Channel], dict[str, Any]]:
    head = preflight(path)
    text = head.decode("latin-1")
    size = header_int(path, text, r"Image header size: (\d+)", "its header size")
    if size > len(head):
        raise ScanError(path, f"the header claims {size} bytes, more than a WSxM header can be")
    header = text[:size]
    rows = header_int(path, header, r"Number of rows: (\d+)", "the number of rows")
    cols = header_int(path, header, r"Number of columns: (\d+)", "the number of columns")
    check_pixels(path, rows, cols, reading)
    fields = dict(re.findall(r"^\s*([^:\n\[]+?):\s*(.*?)\s*$", header, flags=re.MULTILINE))
    quantity = fields.get("Acquisition channel", "Topography")
    direction = BACKWARD if fields.get("X scanning direction", "").lower().startswith("backward") else FORWARD
    sizes = []
    for axis in ("X Amplitude", "Y Amplitude"):
        match = re.match(r"([-+0-9.eE]+)\s*(\S+)", fields.get(axis, ""))
        factor = nm_factor(match[2]) if match else None
        sizes.append(float(match[1]) * factor if match and factor else None)
    metadata = {
        "lines_set": rows,
        "points_set": cols,
        "scan_size_nm": sizes if None not in sizes else None,
        "instrument": " ".join(["WSxM", fields.get("Head type", "")]).strip(),
        "vendor": {
            k: small_json(fields[k])
            for k in ("Acquisition time", "Set Point", "X-Frequency", "Z Amplitude")
            if k in fields
        },
    }
    return [Channel(quantity, quantity, direction)], metadata


def channels_wsxm(path: Path) -> list[str]:
    return [c.name for c in _wsxm_header(path, ReadingConfig())[0]]


def _read_wsxm(path: Path, reading: ReadingConfig, channel: str | None, fmt: str) -> list[Scan]:
    channels, metadata = _wsxm_header(path, reading)
    chosen = choose_channel(path, channels, reading.channels, channel)
    with library_call(path, "AFMReader", f"a WSxM .{fmt} file"):
        if fmt == "stp":
            image, pixel_size = afmreader("stp").load_stp(path)
        else:
            image, pixel_size = afmreader("top").load_top(path)
    if fmt == "top":
        image = image * _top_z_correction(metadata.get("vendor", {}).get("Z Amplitude", ""))
    return frames_to_scans(
        path, image, fmt=fmt, chosen=chosen, channels=channels, pixel_size_nm=pixel_size, metadata=metadata
    )


def _top_z_correction(z_amplitude: str) -> float:
    """AFMReader 0.0.7 scales .top heights to the integer part of 'Z Amplitude' in any unit
    ("59.7449 nm" -> 59); rescale to the full value in nm."""
    match = re.match(r"(\d+)(\.\d*)?\s*(\S+)", str(z_amplitude))
    factor = nm_factor(match[3]) if match else None
    if match is None or factor is None or int(match[1]) == 0:
        return 1.0
    return float(match[1] + (match[2] or "")) * factor / int(match[1])


def read_stp(path: Path, reading: ReadingConfig, channel: str | None = None) -> list[Scan]:
    return _read_wsxm(path, reading, channel, "stp")


def read_top(path: Path, reading: ReadingConfig, channel: str | None = None) -> list[Scan]:
    return _read_wsxm(path, reading, channel, "top")


STP = FileFormat(
    key="stp",
    name="WSxM .stp",
    suffixes=(".stp",),
    expected=EXPECTED,
    signatures=SIGNATURES,
    read=read_stp,
    list_channels=channels_wsxm,
)
TOP = FileFormat(
    key="top",
    name="WSxM .top",
    suffixes=(".top",),
    expected=EXPECTED,
    signatures=SIGNATURES,
    read=read_top,
    list_channels=channels_wsxm,
)
