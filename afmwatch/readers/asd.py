"""High-speed AFM movies in .asd (Ando lab / RIBM, Oxford Instruments), every frame, read with AFMReader."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from afmwatch.config import ReadingConfig
from afmwatch.readers.common import (
    Channel,
    FileFormat,
    afmreader,
    check_pixels,
    choose_channel,
    frames_to_scans,
    library_call,
)
from afmwatch.scan import HEIGHT_UNITS, INTENSITY_UNITS, Scan, ScanError

_ASD_QUANTITIES = {"TP": "Topography", "ER": "Error", "PH": "Phase"}


def _asd_header(path: Path, reading: ReadingConfig) -> tuple[list[Channel], dict[str, Any]]:
    asd = afmreader("asd")
    with library_call(path, "AFMReader", "an .asd file"), open(path, "rb") as handle:
        version = asd.read_file_version(handle)
        readers = {
            0: asd.read_header_file_version_0,
            1: asd.read_header_file_version_1,
            2: asd.read_header_file_version_2,
        }
        if version not in readers:
            raise ScanError(path, f"unknown .asd file version {version}")
        header = readers[version](handle)
    rows, cols = int(header["y_pixels"]), int(header["x_pixels"])
    check_pixels(path, rows, cols, reading, frames=int(header.get("num_frames", 1)))
    channels = []
    for key in ("channel1", "channel2"):
        code = header.get(key)
        if isinstance(code, bytes):
            code = code.decode("latin-1")
        if code:
            channels.append(Channel(str(code), _ASD_QUANTITIES.get(str(code), str(code))))
    metadata = {
        "lines_set": rows,
        "points_set": cols,
        "scan_size_nm": [float(header["x_nm"]), float(header["y_nm"])] if "x_nm" in header else None,
        "instrument": "high-speed AFM (.asd)",
    }
    return channels, metadata


def channels_asd(path: Path) -> list[str]:
    return [c.name for c in _asd_header(path, ReadingConfig())[0]]


def read_asd(path: Path, reading: ReadingConfig, channel: str | None = None) -> list[Scan]:
    channels, metadata = _asd_header(path, reading)
    chosen = choose_channel(path, channels, reading.channels, channel)
    with library_call(path, "AFMReader", "an .asd file"):
        frames, pixel_size, _ = afmreader("asd").load_asd(path, chosen.name)
    units = HEIGHT_UNITS if chosen.name in ("TP", "ER") else INTENSITY_UNITS
    return frames_to_scans(
        path,
        frames,
        fmt="asd",
        chosen=chosen,
        channels=channels,
        pixel_size_nm=pixel_size,
        metadata=metadata,
        units=units,
    )


ASD = FileFormat(
    key="asd",
    name="high-speed AFM .asd",
    suffixes=(".asd",),
    expected="an .asd file",
    signatures=(),  # the first bytes are a version number; AFMReader's header readers judge the rest
    read=read_asd,
    list_channels=channels_asd,
)
