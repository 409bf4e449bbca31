"""Formats read through AFMReader (TopoStats' reader library) and the libraries it builds on:
JPK .jpk (tifffile) and .h5-jpk (h5py), Asylum .ibw (igor2), WSxM .stp/.top, Oxford/RIBM .asd, and
Bruker Nanoscope .spm/.000-.999 (pySPM, called directly because AFMReader's wrapper cannot pick the
retrace direction). AFMReader needs a channel name, so channels are listed first with the
underlying library. Rows follow AFMReader's orientation (flipped so the first row is the top of the
image as the instrument software shows it).
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from afmwatch.config import ReadingConfig
from afmwatch.readers.common import (
    BACKWARD,
    FORWARD,
    Channel,
    check_pixels,
    check_tiff_complete,
    check_tiff_data,
    choose_channel,
    direction_metadata,
    finite_or_error,
    header_int,
    library_call,
    parsed_once,
    nm_factor,
    preflight,
    require_signature,
    small_json,
)
from afmwatch.scan import HEIGHT_UNITS, INTENSITY_UNITS, Scan, ScanError

TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*")
HDF5_SIGNATURES = (b"\x89HDF\r\n\x1a\n",)
WSXM_SIGNATURES = (b"WSxM file copyright",)
BRUKER_SIGNATURES = (b"\\*File list",)

# AFMReader converts these quantities to nm; others (phase, volts) stay in the file's own scale.
_NM_QUANTITIES = ("height", "measuredheight", "zsensor", "amplitude", "error", "deflection", "topography")


def _afmreader(name: str) -> ModuleType:
    """Import an AFMReader module with its loguru chatter (coloured lines on stderr) switched off."""
    module = importlib.import_module(f"AFMReader.{name}")
    from loguru import logger

    logger.disable("AFMReader")
    return module


def _units_for(quantity: str) -> str:
    key = re.sub(r"[^a-z]", "", quantity.lower())
    return HEIGHT_UNITS if any(key.startswith(q) for q in _NM_QUANTITIES) else INTENSITY_UNITS


def _scans(
    path: Path,
    frames: np.ndarray,
    *,
    fmt: str,
    chosen: Channel,
    channels: list[Channel],
    pixel_size_nm: float | None,
    metadata: dict[str, Any],
    units: str | None = None,
) -> list[Scan]:
    """One Scan per frame (a 2-D array is one frame)."""
    stack = np.asarray(frames)
    if stack.ndim == 2:
        stack = stack[None]
    if stack.ndim != 3:
        raise ScanError(path, f"expected an image or a stack of images, got an array of shape {stack.shape}")
    multi = len(stack) > 1
    metadata = {k: v for k, v in {**metadata, **direction_metadata(chosen, channels)}.items() if v is not None}
    if multi:
        metadata["frames"] = len(stack)
    return [
        Scan(
            height=finite_or_error(path, frame),
            pixel_size_nm=float(pixel_size_nm) if pixel_size_nm else None,
            channel=chosen.name,
            path=path,
            format=fmt,
            direction=chosen.direction,
            units=units or _units_for(chosen.quantity),
            channels=tuple(c.name for c in channels),
            frame=index if multi else None,
            metadata=dict(metadata),
        )
        for index, frame in enumerate(stack)
    ]


def _trace_name(name: str, direction: str) -> Channel:
    """AFMReader's JPK names: '<quantity>_trace' / '<quantity>_retrace'."""
    return Channel(f"{name}_{'trace' if direction == FORWARD else 'retrace'}", name, direction)


# --- JPK .jpk (TIFF container) ------------------------------------------------------------------


def _jpk_header(path: Path, reading: ReadingConfig) -> tuple[list[Channel], dict[str, Any]]:
    import tifffile

    require_signature(path, preflight(path), TIFF_SIGNATURES, "a JPK .jpk file")
    check_tiff_complete(path)
    tags = _afmreader("jpk")._load_jpk_tags()
    with library_call(path, "tifffile", "a JPK .jpk file"):
        with tifffile.TiffFile(path) as tif:
            check_tiff_data(path, tif.pages)
            channels = []
            for page in tif.pages[1:]:  # page 0 is the thumbnail with the shared metadata
                check_pixels(path, *page.shape[:2], reading)
                name = page.tags[tags["channel_name"]].value
                direction = FORWARD if page.tags[tags["trace_retrace"]].value == 0 else BACKWARD
                channels.append(_trace_name(str(name), direction))
            first = tif.pages[0].tags
            u_length = first[tags["grid_ulength"]].value
            v_length = first[tags["grid_vlength"]].value
            metadata = {
                "points_set": int(first[tags["grid_ilength"]].value),
                "lines_set": int(first[tags["grid_jlength"]].value),
                "scan_size_nm": [float(u_length) * 1e9, float(v_length) * 1e9],
                "instrument": "JPK",
            }
    if not channels:
        raise ScanError(path, "the .jpk file holds no image channels")
    return channels, metadata


def channels_jpk(path: Path) -> list[str]:
    return [c.name for c in _jpk_header(path, ReadingConfig())[0]]


def read_jpk(path: Path, reading: ReadingConfig, channel: str | None = None) -> list[Scan]:
    channels, metadata = _jpk_header(path, reading)
    chosen = choose_channel(path, channels, reading.channels, channel)
    with library_call(path, "AFMReader", "a JPK .jpk file"):
        image, pixel_size = _afmreader("jpk").load_jpk(path, chosen.name)
    return _scans(path, image, fmt="jpk", chosen=chosen, channels=channels, pixel_size_nm=pixel_size,
                  metadata=metadata)


# --- JPK .h5-jpk (HDF5, high-speed stacks) -------------------------------------------------------


def _h5jpk_header(path: Path, reading: ReadingConfig) -> tuple[list[Channel], dict[str, Any]]:
    import h5py

    require_signature(path, preflight(path), HDF5_SIGNATURES, "a JPK .h5-jpk file")
    h5_jpk = _afmreader("h5_jpk")
    with library_call(path, "h5py", "a JPK .h5-jpk file"):
        with h5py.File(path, "r") as handle:
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
        _trace_name(name.rsplit("_", 1)[0], BACKWARD if name.endswith("_retrace") else FORWARD)
        for name in available
    ]
    if not channels:
        raise ScanError(path, "the .h5-jpk file holds no image channels")
    return channels, metadata


def channels_h5jpk(path: Path) -> list[str]:
    return [c.name for c in _h5jpk_header(path, ReadingConfig())[0]]


def read_h5jpk(path: Path, reading: ReadingConfig, channel: str | None = None) -> list[Scan]:
    channels, metadata = _h5jpk_header(path, reading)
    chosen = choose_channel(path, channels, reading.channels, channel)
    with library_call(path, "AFMReader", "a JPK .h5-jpk file"):
        stack, pixel_size, timestamps = _afmreader("h5_jpk").load_h5jpk(path, chosen.name)
    metadata["frame_times_s"] = [round(float(t), 4) for t in list(timestamps.values())[:1000]]
    return _scans(path, stack, fmt="h5-jpk", chosen=chosen, channels=channels, pixel_size_nm=pixel_size,
                  metadata=metadata)


# --- Asylum Research .ibw (Igor binary wave) -----------------------------------------------------

_IBW_NAME = re.compile(r"^(?P<quantity>.*?)(?P<direction>Retrace|Trace)e?$")


def _ibw_notes(wave: dict[str, Any]) -> dict[str, str]:
    """The wave note's `key: value` lines (Asylum's acquisition settings)."""
    note = wave["note"].decode("latin-1") if isinstance(wave["note"], bytes) else str(wave["note"])
    pairs = (line.split(":", 1) for line in note.replace("\n", "\r").split("\r") if ":" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def _ibw_header(path: Path, reading: ReadingConfig) -> tuple[list[Channel], dict[str, Any]]:
    from igor2 import binarywave

    preflight(path)
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
        "vendor": {k: small_json(notes[k]) for k in ("ImagingMode", "Date", "Time", "ScanRate", "ScanAngle",
                                                     "SetPoint", "DriveAmplitude") if k in notes},
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
    return _scans(path, image, fmt="ibw", chosen=chosen, channels=channels, pixel_size_nm=pixel_size,
                  metadata=metadata)


# --- WSxM .stp (doubles) and .top (int16) --------------------------------------------------------


def _wsxm_header(path: Path, reading: ReadingConfig) -> tuple[list[Channel], dict[str, Any]]:
    head = preflight(path)
    require_signature(path, head, WSXM_SIGNATURES, "a WSxM file")
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
        "vendor": {k: small_json(fields[k]) for k in ("Acquisition time", "Set Point", "X-Frequency",
                                                     "Z Amplitude") if k in fields},
    }
    return [Channel(quantity, quantity, direction)], metadata


def channels_wsxm(path: Path) -> list[str]:
    return [c.name for c in _wsxm_header(path, ReadingConfig())[0]]


def _read_wsxm(path: Path, reading: ReadingConfig, channel: str | None, fmt: str) -> list[Scan]:
    channels, metadata = _wsxm_header(path, reading)
    chosen = choose_channel(path, channels, reading.channels, channel)
    with library_call(path, "AFMReader", f"a WSxM .{fmt} file"):
        if fmt == "stp":
            image, pixel_size = _afmreader("stp").load_stp(path)
        else:
            image, pixel_size = _afmreader("top").load_top(path)
    if fmt == "top":
        image = image * _top_z_correction(metadata.get("vendor", {}).get("Z Amplitude", ""))
    return _scans(path, image, fmt=fmt, chosen=chosen, channels=channels, pixel_size_nm=pixel_size,
                  metadata=metadata)


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


# --- .asd high-speed AFM movies ------------------------------------------------------------------

_ASD_QUANTITIES = {"TP": "Topography", "ER": "Error", "PH": "Phase"}


def _asd_header(path: Path, reading: ReadingConfig) -> tuple[list[Channel], dict[str, Any]]:
    preflight(path)
    asd = _afmreader("asd")
    with library_call(path, "AFMReader", "an .asd file"):
        with open(path, "rb") as handle:
            version = asd.read_file_version(handle)
            readers = {0: asd.read_header_file_version_0, 1: asd.read_header_file_version_1,
                       2: asd.read_header_file_version_2}
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
        frames, pixel_size, _ = _afmreader("asd").load_asd(path, chosen.name)
    units = HEIGHT_UNITS if chosen.name in ("TP", "ER") else INTENSITY_UNITS
    return _scans(path, frames, fmt="asd", chosen=chosen, channels=channels, pixel_size_nm=pixel_size,
                  metadata=metadata, units=units)


# --- Bruker Nanoscope .spm and numbered .000-.999 ------------------------------------------------


def _bruker_header(
    path: Path, reading: ReadingConfig
) -> tuple[Any, list[Channel], dict[str, int | None], dict[str, Any]]:
    """pySPM's parsed file, its image channels, each channel's valid (recorded) line count, metadata."""
    head = preflight(path)
    require_signature(path, head, BRUKER_SIGNATURES, "a Bruker Nanoscope file")
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
        check_pixels(path, int(layer.get(b"Number of lines", [b"0"])[0]), int(layer.get(b"Samps/line", [b"0"])[0]),
                     reading)
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
        "lines_set": int(text(b"Lines")) if text(b"Lines") else None,
        "points_set": int(text(b"Samps/line")) if text(b"Samps/line") else None,
        "instrument": "Bruker Nanoscope",
        "vendor": {k.decode(): text(k) for k in (b"Operating mode", b"Scan rate", b"Scan size")
                   if text(k) is not None},
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
    return _scans(
        path,
        pixels * (z_factor or 1.0),
        fmt="spm",
        chosen=chosen,
        channels=channels,
        pixel_size_nm=x_step * xy_factor if xy_factor else None,
        metadata=metadata,
        units=HEIGHT_UNITS if z_factor is not None else INTENSITY_UNITS,
    )
