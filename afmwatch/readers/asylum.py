"""Asylum Research (Oxford Instruments) .ibw Igor binary waves, read with igor2, the library AFMReader
uses, with AFMReader's orientation and scaling (tested equal to AFMReader) from one parse per file."""

from __future__ import annotations

import re
import struct
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
    library_call,
    parsed_once,
    small_json,
)
from afmwatch.scan import Scan, ScanError

_IBW_NAME = re.compile(r"^(?P<quantity>.*?)(?P<direction>Retrace|Trace)e?$")


def _ibw_notes(wave: dict[str, Any]) -> dict[str, str]:
    """The wave note's `key: value` lines (Asylum's acquisition settings)."""
    note = wave["note"].decode("latin-1") if isinstance(wave["note"], bytes) else str(wave["note"])
    pairs = (line.split(":", 1) for line in note.replace("\n", "\r").split("\r") if ":" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def _ibw_header(path: Path, reading: ReadingConfig) -> tuple[list[Channel], dict[str, Any]]:
    from igor2 import binarywave

    with library_call(path, "igor2", "an Asylum Research .ibw file"):
        wave = parsed_once(path, "igor2", lambda: binarywave.load(str(path)))["wave"]  # one parse per file
        shape = wave["wData"].shape
        labels = [label.decode("latin-1") for group in wave["labels"] for label in group if label]
        notes = _ibw_notes(wave)
    if len(shape) < 2:
        raise ScanError(path, f"the wave holds {len(shape)}-D data, not an image")
    check_pixels(path, shape[1], shape[0], reading)
    channels = []
    for label in labels:
        match = _IBW_NAME.match(label)
        if match:
            direction = BACKWARD if match["direction"] == "Retrace" else FORWARD
            channels.append(Channel(label, match["quantity"], direction))
        else:
            channels.append(Channel(label, label))

    def number(key: str) -> float | None:
        try:
            return float(notes[key])
        except (KeyError, ValueError):
            return None

    lines, points = number("ScanLines"), number("ScanPoints")
    fast, slow = number("FastScanSize"), number("SlowScanSize")
    metadata = {
        "lines_set": int(lines) if lines else None,
        "points_set": int(points) if points else None,
        "scan_size_nm": [fast * 1e9, slow * 1e9] if fast and slow else None,
        "instrument": " ".join(["Asylum Research", notes.get("MicroscopeModel", "")]).strip(),
        "vendor": {
            k: small_json(notes[k])
            for k in ("ImagingMode", "Date", "Time", "ScanRate", "ScanAngle", "SetPoint", "DriveAmplitude")
            if k in notes
        },
    }
    return channels, metadata


def _ibw_image(path: Path, index: int) -> tuple[np.ndarray, float]:
    """Channel `index` in nm, and the pixel size in nm, exactly as AFMReader.load_ibw gives them
    (AFMReader 0.0.7: transposed, flipped up-down, metres to nm; pixel = SlowScanSize / rows), from
    the parse `_ibw_header` already made: igor2 is slow (about 20 ms for a 256 x 256 x 4 wave), and
    AFMReader would parse the file again."""
    from igor2 import binarywave

    wave = parsed_once(path, "igor2", lambda: binarywave.load(str(path)))["wave"]
    image = np.flipud(wave["wData"][:, :, index].T * 1e9)
    return image, float(_ibw_notes(wave)["SlowScanSize"]) / wave["wData"].shape[0] * 1e9


def channels_ibw(path: Path) -> list[str]:
    return [c.name for c in _ibw_header(path, ReadingConfig())[0]]


def read_ibw(path: Path, reading: ReadingConfig, channel: str | None = None) -> list[Scan]:
    channels, metadata = _ibw_header(path, reading)
    chosen = choose_channel(path, channels, reading.channels, channel)
    with library_call(path, "igor2", "an Asylum Research .ibw file"):
        image, pixel_size = _ibw_image(path, channels.index(chosen))
    return frames_to_scans(
        path, image, fmt="ibw", chosen=chosen, channels=channels, pixel_size_nm=pixel_size, metadata=metadata
    )


# Igor binary wave headers by version: their layout (after the version) and which of their sizes add
# up to the whole file (the wave with its data, then note, formula, units, labels, string indices)
_IBW_HEADERS = {
    1: ("iH", 8, (0,)),
    2: ("iiiH", 16, (0, 1)),
    3: ("iiiiH", 20, (0, 1, 2)),
    5: ("Hiiii4i4iiii", 64, tuple(range(1, 14))),
}


def ibw_complete(handle: BinaryIO, size: int) -> bool | None:
    """Complete when the file holds at least the header plus every part its binary header declares
    (wave header and data, note, formula, units, dimension labels); Asylum appends more after them."""
    handle.seek(0)
    head = handle.read(64)
    if len(head) < 2:
        return False
    for order in ("<", ">"):
        version = struct.unpack(order + "h", head[:2])[0]
        if version in _IBW_HEADERS:
            break
    else:
        return None  # not a version igor2 reads: the reader will say so
    layout, header_size, parts = _IBW_HEADERS[version]
    if len(head) < header_size:
        return False
    fields = struct.unpack(order + layout, head[2:header_size])
    if any(fields[i] < 0 for i in parts):
        return None
    return size >= header_size + sum(fields[i] for i in parts)


IBW = FileFormat(
    key="ibw",
    name="Asylum Research .ibw",
    suffixes=(".ibw",),
    expected="an Asylum Research .ibw file",
    signatures=(),  # the first bytes are a version number; igor2 judges the rest
    read=read_ibw,
    list_channels=channels_ibw,
    complete=ibw_complete,
)
