"""JPK (now Bruker) .jpk images (a TIFF container, channels listed with tifffile) and .h5-jpk
high-speed stacks (HDF5, channels listed with h5py), both read with AFMReader, which needs a channel
name: hence the listing first."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import numpy as np

from afmwatch.config import ReadingConfig
from afmwatch.readers.common import (
    BACKWARD,
    FORWARD,
    HDF5_SIGNATURES,
    TIFF_SIGNATURES,
    Channel,
    FileFormat,
    afmreader,
    check_pixels,
    check_tiff_complete,
    check_tiff_data,
    choose_channel,
    frames_to_scans,
    library_call,
    small_json,
    tiff_complete,
)
from afmwatch.scan import PermanentScanError, Scan


def _trace_name(name: str, direction: str) -> Channel:
    """AFMReader's JPK names: '<quantity>_trace' / '<quantity>_retrace'."""
    return Channel(f"{name}_{'trace' if direction == FORWARD else 'retrace'}", name, direction)


# --- .jpk (TIFF container) -----------------------------------------------------------------------


def _jpk_header(path: Path, reading: ReadingConfig) -> tuple[list[Channel], dict[str, Any]]:
    import tifffile

    check_tiff_complete(path)
    tags = afmreader("jpk")._load_jpk_tags()
    with library_call(path, "tifffile", "a JPK .jpk file"), tifffile.TiffFile(path) as tif:
        check_tiff_data(path, tif.pages)
        channels = []
        # page 0 is the thumbnail with the shared metadata; without useframes every page is a TiffPage
        for page in cast("list[tifffile.TiffPage]", tif.pages[1:]):
            check_pixels(path, *cast("tuple[int, int]", page.shape[:2]), reading)
            name = page.tags[tags["channel_name"]].value
            direction = FORWARD if page.tags[tags["trace_retrace"]].value == 0 else BACKWARD
            channels.append(_trace_name(str(name), direction))
        first = cast("tifffile.TiffPage", tif.pages[0]).tags
        u_length = first[tags["grid_ulength"]].value
        v_length = first[tags["grid_vlength"]].value
        metadata = {
            "points_set": int(first[tags["grid_ilength"]].value),
            "lines_set": int(first[tags["grid_jlength"]].value),
            "scan_size_nm": [float(u_length) * 1e9, float(v_length) * 1e9],
            "instrument": "JPK",
        }
    if not channels:
        raise PermanentScanError(path, "the .jpk file holds no image channels")
    return channels, metadata


def channels_jpk(path: Path) -> list[str]:
    return [c.name for c in _jpk_header(path, ReadingConfig())[0]]


def read_jpk(path: Path, reading: ReadingConfig, channel: str | None = None) -> list[Scan]:
    channels, metadata = _jpk_header(path, reading)
    chosen = choose_channel(path, channels, reading.channels, channel)
    with library_call(path, "AFMReader", "a JPK .jpk file"):
        image, pixel_size = afmreader("jpk").load_jpk(path, chosen.name)
    return frames_to_scans(
        path, image, fmt="jpk", chosen=chosen, channels=channels, pixel_size_nm=pixel_size, metadata=metadata
    )


# --- .h5-jpk (HDF5, high-speed stacks) -----------------------------------------------------------


def _h5jpk_header(path: Path, reading: ReadingConfig) -> tuple[list[Channel], dict[str, Any]]:
    import h5py

    h5_jpk = afmreader("h5_jpk")
    with library_call(path, "h5py", "a JPK .h5-jpk file"), h5py.File(path, "r") as handle:
        available = h5_jpk._available_channels(handle)
        metadata: dict[str, Any] = {"instrument": "JPK"}
        for name, location in available.items():
            group = handle[location.split("/")[0]]
            attrs = group.attrs
            points = int(attrs["position-pattern.grid.ilength"])
            lines = int(attrs.get("position-pattern.grid.jlength", points))
            dataset = handle[location].get(name.split("_")[0].capitalize())
            frames = int(dataset.shape[1]) if dataset is not None and dataset.ndim == 2 else 1
            check_pixels(path, lines, points, reading, frames=frames)
            metadata.update(
                points_set=points,
                lines_set=lines,
                scan_size_nm=[
                    float(attrs.get("position-pattern.grid.ulength", np.nan)) * 1e9,
                    float(attrs.get("position-pattern.grid.vlength", np.nan)) * 1e9,
                ],
            )
            instrument = attrs.get("description.instrument")
            if instrument is not None:
                metadata["instrument"] = f"JPK {small_json(instrument)}"
    channels = [
        _trace_name(name.rsplit("_", 1)[0], BACKWARD if name.endswith("_retrace") else FORWARD) for name in available
    ]
    if not channels:
        raise PermanentScanError(path, "the .h5-jpk file holds no image channels")
    return channels, metadata


def channels_h5jpk(path: Path) -> list[str]:
    return [c.name for c in _h5jpk_header(path, ReadingConfig())[0]]


def read_h5jpk(path: Path, reading: ReadingConfig, channel: str | None = None) -> list[Scan]:
    channels, metadata = _h5jpk_header(path, reading)
    chosen = choose_channel(path, channels, reading.channels, channel)
    with library_call(path, "AFMReader", "a JPK .h5-jpk file"):
        stack, pixel_size, timestamps = afmreader("h5_jpk").load_h5jpk(path, chosen.name)
    metadata["frame_times_s"] = [round(float(t), 4) for t in list(timestamps.values())[:1000]]
    return frames_to_scans(
        path, stack, fmt="h5-jpk", chosen=chosen, channels=channels, pixel_size_nm=pixel_size, metadata=metadata
    )


JPK = FileFormat(
    key="jpk",
    name="JPK .jpk",
    suffixes=(".jpk",),
    expected="a JPK .jpk file",
    signatures=TIFF_SIGNATURES,
    read=read_jpk,
    list_channels=channels_jpk,
    complete=tiff_complete,
)
H5_JPK = FileFormat(
    key="h5-jpk",
    name="JPK .h5-jpk (high-speed)",
    suffixes=(".h5-jpk",),
    expected="a JPK .h5-jpk file",
    signatures=HDF5_SIGNATURES,
    read=read_h5jpk,
    list_channels=channels_h5jpk,
)
