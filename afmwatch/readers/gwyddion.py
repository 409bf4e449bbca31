"""Gwyddion .gwy files, read with gwyfile. AFMReader's .gwy loader only accepts data in metres and
reshapes non-square fields wrongly, so gwyfile (which keeps each field's SI units) does this one."""

from __future__ import annotations

import re
import struct
from pathlib import Path
from typing import Any

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
    preflight,
)
from afmwatch.scan import HEIGHT_UNITS, INTENSITY_UNITS, PermanentScanError, Scan, ScanError

EXPECTED = "a Gwyddion .gwy file"
_BACKWARD_WORDS = re.compile(r"[\s_-]*\b(retrace|backward|bwd|reverse)\b[\s_-]*|(Retrace|Backward)$", re.I)


def _unit(field: Any, key: str) -> str:
    unit = field.get(key)
    return str(unit.get("unitstr", "")) if unit is not None else ""


def _check_complete(path: Path, head: bytes) -> None:
    """The top-level object states its size; a truncated file (on which gwyfile can loop forever)
    is shorter than that."""
    name_end = head.find(b"\0", 4, 4 + 256)
    if name_end < 0 or len(head) < name_end + 5:
        raise ScanError(path, "the .gwy header is damaged (no top-level object)")
    declared = name_end + 5 + struct.unpack("<I", head[name_end + 1 : name_end + 5])[0]
    actual = path.stat().st_size
    if actual < declared:
        raise ScanError(path, f"the file is truncated: {actual} bytes of the {declared} its header declares")


def _load(path: Path, reading: ReadingConfig) -> tuple[dict[str, Any], list[Channel]]:
    head = preflight(path)
    _check_complete(path, head)
    import gwyfile

    with library_call(path, "gwyfile", EXPECTED):
        container = gwyfile.load(str(path))
        fields = gwyfile.util.get_datafields(container)
        shapes = {title: (int(f["yres"]), int(f["xres"])) for title, f in fields.items()}
    if not fields:
        raise PermanentScanError(path, "the .gwy file holds no image channels")
    channels = []
    for title, (rows, cols) in shapes.items():
        check_pixels(path, rows, cols, reading)
        backward = _BACKWARD_WORDS.search(title) is not None
        quantity = _BACKWARD_WORDS.sub("", title).strip() or title
        channels.append(Channel(title, quantity, BACKWARD if backward else FORWARD))
    return fields, channels


def channels(path: Path) -> list[str]:
    return [c.name for c in _load(path, ReadingConfig())[1]]


def read(path: Path, reading: ReadingConfig, channel: str | None = None) -> list[Scan]:
    fields, all_channels = _load(path, reading)
    chosen = choose_channel(path, all_channels, reading.channels, channel)
    field = fields[chosen.name]
    with library_call(path, "gwyfile", EXPECTED):
        data = np.asarray(field.data, dtype=np.float64)
        x_real, y_real = float(field["xreal"]), float(field["yreal"])
    z_factor = nm_factor(_unit(field, "si_unit_z"))
    xy_factor = nm_factor(_unit(field, "si_unit_xy"))
    rows, cols = data.shape
    metadata: dict[str, Any] = {
        "lines_set": rows,
        "points_set": cols,
        "instrument": "Gwyddion",
        **direction_metadata(chosen, all_channels),
    }
    if xy_factor is not None:
        metadata["scan_size_nm"] = [x_real * xy_factor, y_real * xy_factor]
    else:
        metadata["vendor"] = {"xy_units": _unit(field, "si_unit_xy") or "none", "xreal": x_real}
    return [
        Scan(
            height=finite_or_error(path, data * (z_factor or 1.0)),
            pixel_size_nm=x_real * xy_factor / cols if xy_factor is not None else None,
            channel=chosen.name,
            path=path,
            format="gwy",
            direction=chosen.direction,
            units=HEIGHT_UNITS if z_factor is not None else INTENSITY_UNITS,
            channels=tuple(c.name for c in all_channels),
            metadata=metadata,
        )
    ]


GWY = FileFormat(
    key="gwy",
    name="Gwyddion .gwy",
    suffixes=(".gwy",),
    expected=EXPECTED,
    signatures=(b"GWYP",),
    read=read,
    list_channels=channels,
)
