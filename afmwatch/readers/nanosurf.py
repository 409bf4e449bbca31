"""Nanosurf .nid files, read with Nanosurf's own NSFopen."""

from __future__ import annotations

import re
import warnings
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
    direction_metadata,
    finite_or_error,
    library_call,
    nm_factor,
    parsed_once,
    preflight,
    small_json,
)
from afmwatch.scan import PermanentScanError, Scan, ScanError

# NSFopen 2.2.4 calls a pandas method pandas 3 deprecates; the warning is about NSFopen, not the file
warnings.filterwarnings("ignore", message="The inplace keyword", module=r"NSFopen\.")

_MAX_HEADER = 16 * 1024 * 1024
EXPECTED = "a Nanosurf .nid file"

# NSFopen's direction keys -> (our direction, suffix in the channel name; forward keeps the bare name)
_DIRECTIONS = {
    "Forward": (FORWARD, ""),
    "Backward": (BACKWARD, " Backward"),
    "2nd Forward": (FORWARD, " 2nd Forward"),
    "2nd Backward": (BACKWARD, " 2nd Backward"),
}
# The header's frame names for the same directions
_FRAMES = {
    "Scan forward": "Forward",
    "Scan backward": "Backward",
    "2nd scan forward": "2nd Forward",
    "2nd scan backward": "2nd Backward",
}
_VENDOR_KEYS = (
    "Op. mode",
    "Date",
    "Time",
    "Time/Line",
    "Cantilever type",
    "Measurement environment",
    "Setpoint",
    "Scan direction",
    "Software ver.",
)


def _data_sets(header: bytes) -> list[tuple[int, int, int]]:
    """(Lines, Points, SaveBits) of every data set the text header declares."""
    found = []
    for section in re.split(r"\r?\n(?=\[)", header.decode("latin-1")):
        fields = dict(re.findall(r"^(Points|Lines|SaveBits)=(\d+)", section, flags=re.MULTILINE))
        if section.startswith("[DataSet-") and {"Points", "Lines", "SaveBits"} <= fields.keys():
            found.append((int(fields["Lines"]), int(fields["Points"]), int(fields["SaveBits"])))
    return found


NID_MAGIC = b"[DataSet]"  # every Nanosurf .nid starts with its [DataSet] header section


def nid_complete(handle: BinaryIO, size: int) -> bool | None:
    """Complete when the text header has ended (the '#!' marker) and the binary data after it is as
    long as every data set it declares (lines x points x bits) together."""
    handle.seek(0)
    header = handle.read(min(size, _MAX_HEADER))
    start = header[: len(NID_MAGIC)]
    if not NID_MAGIC.startswith(start) or not start:
        return None  # not a NID header (nor the first bytes of one): the reader says what it is
    marker = header.find(b"#!")
    if marker < 0:
        return False if size < _MAX_HEADER else None
    required = sum(lines * points * bits // 8 for lines, points, bits in _data_sets(header[:marker]))
    return size - (marker + 2) >= required


def _check_sizes(path: Path, head: bytes, reading: ReadingConfig) -> None:
    """Image sizes within limits, and all the data the header announces present. NSFopen reads the
    data backwards from the end of the file, so a truncated file would silently shift header bytes
    into the image."""
    marker = head.find(b"#!")
    if marker < 0:
        with open(path, "rb") as handle:
            whole_header = handle.read(_MAX_HEADER)
        marker = whole_header.find(b"#!")
        if marker < 0:
            raise ScanError(path, "the header never ends (no '#!' data marker); the file is truncated or damaged")
        head = whole_header
    required = 0
    for lines, points, bits in _data_sets(head[:marker]):
        check_pixels(path, lines, points, reading)
        required += points * lines * bits // 8
    present = path.stat().st_size - (marker + 2)
    if present < required:
        raise ScanError(path, f"the file is truncated: {present} bytes of data, the header announces {required}")


def _load(path: Path, reading: ReadingConfig) -> Any:
    head = preflight(path)
    _check_sizes(path, head, reading)
    from NSFopen.read import read as nsf_read

    with library_call(path, "NSFopen", EXPECTED):
        nid = parsed_once(path, "NSFopen", lambda: nsf_read(str(path)))  # the retrace reuses this parse
        if nid.data is None:
            raise ScanError(path, f"NSFopen could not read it as {EXPECTED}")
        keys = list(nid.data.index)
        header = nid.param["HeaderDump"]
    return nid, keys, header


def _utf8(text: str) -> str:
    """NSFopen decodes the UTF-8 header as Latin-1 ("Âµm"); undo that where it applies."""
    try:
        return text.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text


def _image_channels(keys: list[tuple[str, str, str]]) -> list[tuple[Channel, tuple[str, str, str]]]:
    found = []
    for key in keys:
        mode, nsf_direction, name = key
        if mode != "Image" or nsf_direction not in _DIRECTIONS:
            continue
        direction, suffix = _DIRECTIONS[nsf_direction]
        found.append((Channel(name + suffix, name, direction), key))
    return found


def _dataset_headers(header: Any) -> dict[tuple[str, str], dict[str, str]]:
    """(direction key, channel name) -> that data set's header section (units, ranges, lines)."""
    sections = {}
    for _title, section in header.items():  # a pandas object: .values is its array, not a method
        if isinstance(section, dict) and "Dim2Name" in section and section.get("Frame") in _FRAMES:
            sections[(_FRAMES[section["Frame"]], section["Dim2Name"])] = section
    return sections


def channels(path: Path) -> list[str]:
    _, keys, _ = _load(path, ReadingConfig())
    return [c.name for c, _ in _image_channels(keys)] or [" / ".join(k) for k in keys]


def read(path: Path, reading: ReadingConfig, channel: str | None = None) -> list[Scan]:
    nid, keys, header = _load(path, reading)
    image_channels = _image_channels(keys)
    if not image_channels:
        modes = sorted({k[0] for k in keys})
        raise PermanentScanError(
            path, f"holds no image, only {', '.join(modes)} data (e.g. a thermal tune or a spectrum)"
        )
    all_channels = [c for c, _ in image_channels]
    chosen = choose_channel(path, all_channels, reading.channels, channel)
    key = {c.name: k for c, k in image_channels}[chosen.name]
    section = _dataset_headers(header).get((key[1], key[2]), {})

    values = np.asarray(nid.data[key], dtype=np.float64)
    unit = _utf8(section.get("Dim2Unit", "m"))
    factor = nm_factor(unit)
    units = "nm" if factor is not None else unit
    height = finite_or_error(path, values * (factor or 1.0))

    lines: int
    points: int
    lines, points = height.shape
    xy_factor = nm_factor(section.get("Dim0Unit", "m")) or 1e9
    size_x = float(section.get("Dim0Range", "nan")) * xy_factor
    size_y = float(section.get("Dim1Range", "nan")) * (nm_factor(section.get("Dim1Unit", "m")) or 1e9)
    pixel_size = size_x / points if np.isfinite(size_x) and size_x > 0 else None

    info = header.get("DataSet-Info", {}) if hasattr(header, "get") else {}
    metadata: dict[str, Any] = {
        "lines_set": int(section.get("Lines", lines)),
        "points_set": int(section.get("Points", points)),
        "scan_size_nm": [size_x, size_y] if pixel_size else None,
        "instrument": " ".join(
            part for part in ("Nanosurf", info.get("Head type", ""), info.get("Scan head", "")) if part
        ),
        **direction_metadata(chosen, all_channels),
        "vendor": {k: small_json(_utf8(str(info[k]))) for k in _VENDOR_KEYS if k in info},
    }
    if "CurLine" in section:
        # CurLine is the index of the last line recorded: counting up from 0 or down from the top
        last = int(section["CurLine"])
        downward = str(info.get("Scan direction", "Up")).lower().startswith("down")
        acquired = metadata["lines_set"] - last if downward else last + 1
        metadata["lines_acquired"] = max(0, min(acquired, metadata["lines_set"]))
    return [
        Scan(
            height=height,
            pixel_size_nm=pixel_size,
            channel=chosen.name,
            path=path,
            format="nid",
            direction=chosen.direction,
            units=units,
            channels=tuple(c.name for c in all_channels),
            metadata={k: v for k, v in metadata.items() if v is not None},
        )
    ]


NID = FileFormat(
    key="nid",
    name="Nanosurf .nid",
    suffixes=(".nid",),
    expected=EXPECTED,
    signatures=(b"[DataSet]",),
    read=read,
    list_channels=channels,
    complete=nid_complete,
)
