"""What every reader shares: the FileFormat record each format module exports, checks before a
library sees the file, turning library failures into ScanErrors, channel choice, unit conversion, the
size guard, and frames -> Scans for the formats read through AFMReader."""

from __future__ import annotations

import importlib
import logging
import re
import stat
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, BinaryIO

import numpy as np

from afmwatch.config import ReadingConfig
from afmwatch.scan import HEIGHT_UNITS, INTENSITY_UNITS, PermanentScanError, Scan, ScanError

# These libraries report damaged files through `logging` (igor2 with whole data buffers); without a
# handler Python prints that to stderr. We report the failure ourselves, as a ScanError.
for _library in ("tifffile", "igor2", "h5py"):
    logging.getLogger(_library).addHandler(logging.NullHandler())

_MAX_LIBRARY_MESSAGE = 300  # some parsers put whole buffers in their messages

# Bytes read up front: enough for every format's signature and for the text headers we check.
HEAD_BYTES = 64 * 1024

FORWARD = "forward"
BACKWARD = "backward"

# Length units to nanometres (lower case; "A" is left out: in AFM files it is mostly amperes).
NM_PER_UNIT = {
    "m": 1e9,
    "mm": 1e6,
    "um": 1e3,
    "µm": 1e3,
    "μm": 1e3,
    "~m": 1e3,
    "nm": 1.0,
    "pm": 1e-3,
    "å": 0.1,
    "angstrom": 0.1,
}

# Containers that several formats share (a .jpk is a TIFF, an .h5-jpk is HDF5) or that none of ours
# uses: a file that turns up under the wrong suffix is described by its container first.
TIFF_SIGNATURES = (b"II*\x00", b"MM\x00*")
BIGTIFF_SIGNATURES = (b"II+\x00", b"MM\x00+")
HDF5_SIGNATURES = (b"\x89HDF\r\n\x1a\n",)
CONTAINERS: tuple[tuple[tuple[bytes, ...], str], ...] = (
    (TIFF_SIGNATURES, "a TIFF file"),
    (BIGTIFF_SIGNATURES, "a BigTIFF file"),
    (HDF5_SIGNATURES, "an HDF5 file"),
    ((b"PK\x03\x04",), "a ZIP archive"),
    ((b"%PDF",), "a PDF document"),
)

Reader = Callable[[Path, ReadingConfig, "str | None"], list[Scan]]


@dataclass(frozen=True)
class FileFormat:
    """One file format in one place: its suffixes, how its content starts, its reader and channel
    lister. Each format module exports its records; `afmwatch.readers.FORMATS` collects them."""

    key: str  # Scan.format ("nid")
    name: str  # what `afmwatch inspect` calls it ("Nanosurf .nid")
    suffixes: tuple[str, ...]  # lower case, with the dot; ".000-.999" stands for every number in the range
    expected: str  # in messages: "not a Nanosurf .nid file: the content looks like a PNG image"
    signatures: tuple[bytes, ...]  # a file starts with one of these; () when only the library can tell
    read: Reader  # (path, reading, channel) -> every frame of the chosen channel
    list_channels: Callable[[Path], list[str]]  # the names `channel=` accepts
    # (open file, its size) -> False when the file's own structure says data is still missing
    # (the daemon then waits, however long the file has been quiet), True when all is there, None
    # when this file cannot tell. Reads only headers; must not raise on a damaged file.
    complete: Callable[[BinaryIO, int], bool | None] | None = None


@dataclass(frozen=True)
class Channel:
    """One image channel in a file: `name` is unique in the file and is what `channel=` accepts;
    `quantity` is the measured quantity without direction (matched against preferences)."""

    name: str
    quantity: str
    direction: str = FORWARD


def preflight(path: Path) -> bytes:
    """Check the file is there, regular, non-empty and readable; return its first bytes."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ScanError(path, "the file does not exist (it may have been moved or deleted)") from None
    except OSError as exc:
        raise ScanError(path, f"cannot look at the file: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise PermanentScanError(path, "this is a folder, not a scan file")
    if not stat.S_ISREG(info.st_mode):
        raise PermanentScanError(path, "not a regular file")
    if info.st_size == 0:
        raise ScanError(path, "the file is empty (0 bytes); the export may have failed")
    try:
        with open(path, "rb") as handle:
            return handle.read(HEAD_BYTES)
    except FileNotFoundError:
        raise ScanError(path, "the file vanished before it could be read") from None
    except PermissionError:
        raise PermanentScanError(path, "no permission to read the file") from None
    except OSError as exc:
        raise ScanError(path, f"cannot read the file: {exc.strerror or exc}") from None


PARSED_CACHE_SIZE = 2  # a scan and its retrace (another channel of the same file, or a second file)
_parsed: OrderedDict[tuple, Any] = OrderedDict()
_parsed_lock = threading.Lock()


def parsed_once(path: Path, library: str, parse: Callable[[], Any]) -> Any:
    """`parse()`'s result, kept for the last few files: the trace and then the retrace of a scan,
    or a file listed and then read, come from one parse of a slow format (.nid, .ibw) instead of two.
    Keyed by path, size and modification time, so a changed file is parsed afresh; a parse that
    raises is not kept. Callers must not modify what it returns."""
    info = path.stat()
    key = (library, str(path), info.st_size, info.st_mtime_ns)
    with _parsed_lock:
        if key in _parsed:
            _parsed.move_to_end(key)
            return _parsed[key]
    value = parse()
    with _parsed_lock:
        _parsed[key] = value
        while len(_parsed) > PARSED_CACHE_SIZE:
            _parsed.popitem(last=False)
    return value


def forget_parsed() -> None:
    """Drop the kept parses (benchmarks time real parses; tests start clean)."""
    with _parsed_lock:
        _parsed.clear()


@contextmanager
def library_call(path: Path, library: str, expected: str) -> Iterator[None]:
    """Run a third-party parser, turning whatever it raises on a bad file into a ScanError.

    Only library calls go inside; our own code stays outside so its bugs are not disguised as bad
    files. Parsers raise anything from struct.error to IndexError on malformed input.
    """
    try:
        yield
    except ScanError:
        raise
    except FileNotFoundError:
        raise ScanError(path, "the file vanished while it was being read") from None
    except PermissionError:
        raise PermanentScanError(path, "no permission to read the file") from None
    except MemoryError:
        raise ScanError(path, "the file is too large to read into memory") from None
    except Exception as exc:
        message = str(exc).strip().splitlines()[0][:_MAX_LIBRARY_MESSAGE] if str(exc).strip() else ""
        message = message or type(exc).__name__
        raise ScanError(
            path, f"cannot be read as {expected} (it may be truncated or damaged); {library} said: {message}"
        ) from exc


def check_tiff_complete(path: Path) -> None:
    """Follow a classic TIFF's chain of image directories; a truncated file points past its end
    (tifffile then only logs a warning and quietly returns fewer pages)."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        order = {b"II": "<", b"MM": ">"}.get(handle.read(2))
        if order is None or struct.unpack(order + "H", handle.read(2))[0] != 42:
            return  # BigTIFF or not TIFF: tifffile checks those itself
        offset: int = struct.unpack(order + "I", handle.read(4))[0]
        seen: set[int] = set()
        while offset and offset not in seen and len(seen) < 100_000:
            seen.add(offset)
            if offset + 2 > size:
                raise ScanError(path, "the file is truncated: an image directory lies beyond its end")
            handle.seek(offset)
            count = struct.unpack(order + "H", handle.read(2))[0]
            if offset + 2 + 12 * count + 4 > size:
                raise ScanError(path, "the file is truncated: an image directory is cut off")
            handle.seek(offset + 2 + 12 * count)
            offset = struct.unpack(order + "I", handle.read(4))[0]


_TIFF_DATA_TAGS = {273: 279, 324: 325}  # StripOffsets -> StripByteCounts, TileOffsets -> TileByteCounts
_TIFF_TYPES = {3: "H", 4: "I", 16: "Q"}  # SHORT, LONG, LONG8: the types offsets and counts come in


def tiff_complete(handle: BinaryIO, size: int) -> bool | None:
    """A classic TIFF is complete when every image directory and every strip or tile of pixel data
    it declares lies inside the file (BigTIFF: None, not checked)."""
    handle.seek(0)
    order = {b"II": "<", b"MM": ">"}.get(handle.read(2))
    if order is None or struct.unpack(order + "H", handle.read(2))[0] != 42:
        return None
    offset: int = struct.unpack(order + "I", handle.read(4))[0]
    seen: set[int] = set()
    while offset and offset not in seen and len(seen) < 10_000:
        seen.add(offset)
        if offset + 2 > size:
            return False
        handle.seek(offset)
        count = struct.unpack(order + "H", handle.read(2))[0]
        if offset + 2 + 12 * count + 4 > size:
            return False
        entries = {}
        for _ in range(count):
            tag, kind, n, value = struct.unpack(order + "HHI4s", handle.read(12))
            entries[tag] = (kind, n, value)
        next_offset = struct.unpack(order + "I", handle.read(4))[0]
        for offsets_tag, counts_tag in _TIFF_DATA_TAGS.items():
            if offsets_tag in entries and counts_tag in entries:
                starts = _tiff_values(handle, order, size, *entries[offsets_tag])
                lengths = _tiff_values(handle, order, size, *entries[counts_tag])
                if starts is None or lengths is None:
                    return False
                if any(start + length > size for start, length in zip(starts, lengths)):
                    return False
        offset = next_offset
    return True


def _tiff_values(handle: BinaryIO, order: str, size: int, kind: int, count: int, value: bytes) -> list[int] | None:
    """An offsets or counts entry's numbers (inline, or at the offset it names); None when they lie
    beyond the end of the file."""
    code = _TIFF_TYPES.get(kind)
    if code is None or count > 10_000_000:
        return []
    width = struct.calcsize(code) * count
    if width <= 4:
        return list(struct.unpack(order + code * count, value[:width]))
    where = struct.unpack(order + "I", value)[0]
    if where + width > size:
        return None
    handle.seek(where)
    return list(struct.unpack(order + code * count, handle.read(width)))


def check_tiff_data(path: Path, pages: Sequence[Any]) -> None:
    """Every page's pixel data lies inside the file (a truncated file cuts off the last pages' data)."""
    size = path.stat().st_size
    for page in pages:
        ends = [o + c for o, c in zip(page.dataoffsets, page.databytecounts)]
        if ends and max(ends) > size:
            raise ScanError(path, "the file is truncated: image data runs past its end")


def check_pixels(path: Path, rows: int, cols: int, reading: ReadingConfig, frames: int = 1) -> None:
    """Refuse absurd dimensions before anything allocates memory for them."""
    if rows <= 0 or cols <= 0:
        raise PermanentScanError(path, f"the file declares an image of {rows} x {cols} pixels, which is impossible")
    if rows * cols > reading.max_pixels:
        raise PermanentScanError(
            path,
            f"the image is {rows} x {cols} pixels, more than reading.max_pixels = {reading.max_pixels}; "
            "refusing it as a likely corrupt or malicious file",
        )
    if frames * rows * cols > 4 * reading.max_pixels:
        raise PermanentScanError(path, f"{frames} frames of {rows} x {cols} pixels are too many to read safely")


def check_decoded_bytes(path: Path, shape: Sequence[int], sample_bytes: int, reading: ReadingConfig) -> None:
    """Refuse an image that would decode to more than `reading.max_image_bytes` (rows x columns x
    channels x bytes per sample, from the header), before anything decodes it."""
    decoded = sample_bytes
    for length in shape:
        decoded *= int(length)
    if decoded > reading.max_image_bytes:
        raise PermanentScanError(
            path,
            f"the image would decode to {decoded / 2**20:.0f} MiB ({' x '.join(str(int(n)) for n in shape)} x "
            f"{sample_bytes} bytes), more than reading.max_image_bytes = {reading.max_image_bytes / 2**20:.0f} MiB",
        )


def header_int(path: Path, text: str, pattern: str, what: str) -> int:
    """An integer from a text header (for size checks before the library reads the data)."""
    match = re.search(pattern, text)
    if match is None:
        raise ScanError(path, f"the header does not say {what}; the file may be truncated")
    return int(match.group(1))


def nm_factor(unit: str) -> float | None:
    """Nanometres per `unit`, or None when `unit` is not a length."""
    return NM_PER_UNIT.get(unit.strip().lower())


def _normalised(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.lower())


def choose_channel(
    path: Path, channels: Sequence[Channel], preferences: Sequence[str], forced: str | None = None
) -> Channel:
    """The channel to read: `forced` by name, else the first preference that matches (a preference
    matches a channel's name or its quantity, ignoring case and punctuation), forward before backward."""
    if not channels:
        raise ScanError(path, "the file holds no named image channels")
    names = ", ".join(c.name for c in channels)
    if forced is not None:
        for candidate in channels:
            if candidate.name == forced:
                return candidate
        for candidate in channels:
            if _normalised(candidate.name) == _normalised(forced):
                return candidate
        raise PermanentScanError(path, f"no channel named {forced!r}; channels found: {names}")
    for preference in preferences:
        wanted = _normalised(preference)
        matches = [c for c in channels if wanted in (_normalised(c.name), _normalised(c.quantity))]
        if matches:
            return min(matches, key=lambda c: c.direction != FORWARD)
    if len(channels) == 1:
        return channels[0]  # a file with one channel (e.g. a Gwyddion export) holds the scan itself
    raise PermanentScanError(
        path, f"no height channel; channels found: {names} (reading.channels lists the names tried)"
    )


def direction_metadata(chosen: Channel, channels: Sequence[Channel]) -> dict[str, str]:
    """The same quantity scanned the other way, when the file has it: `retrace_channel` for a
    forward (trace) channel, `trace_channel` for a backward one."""
    for candidate in channels:
        if candidate.direction != chosen.direction and _normalised(candidate.quantity) == _normalised(chosen.quantity):
            key = "retrace_channel" if chosen.direction == FORWARD else "trace_channel"
            return {key: candidate.name}
    return {}


def finite_or_error(path: Path, height: np.ndarray) -> np.ndarray:
    """A float32 copy (infinities become NaN); refuse a map that holds no measured value at all."""
    with np.errstate(over="ignore", invalid="ignore"):
        height = np.array(height, dtype=np.float32)
    height[np.isinf(height)] = np.nan  # beyond float32: not a measurement
    if height.ndim != 2:
        raise ScanError(path, f"expected a 2-D image, the file holds an array of shape {height.shape}")
    if not np.isfinite(height).any():
        raise ScanError(path, "the image holds no measured values (every pixel is empty or NaN)")
    return height


def small_json(value: object, limit: int = 200) -> object:
    """Vendor header values made JSON-able and short (bytes decoded, long text cut)."""
    if isinstance(value, bytes):
        value = value.decode("latin-1", errors="replace")
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (list, tuple)):
        return [small_json(v, limit) for v in value[:16]]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    text = str(value).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- the formats read through AFMReader (TopoStats' reader library) and the libraries it builds on ---

# AFMReader converts these quantities to nm; others (phase, volts) stay in the file's own scale.
_NM_QUANTITIES = ("height", "measuredheight", "zsensor", "amplitude", "error", "deflection", "topography")


def afmreader(name: str) -> ModuleType:
    """Import an AFMReader module with its loguru chatter (coloured lines on stderr) switched off."""
    module = importlib.import_module(f"AFMReader.{name}")
    from loguru import logger

    logger.disable("AFMReader")
    return module


def _units_for(quantity: str) -> str:
    key = re.sub(r"[^a-z]", "", quantity.lower())
    return HEIGHT_UNITS if any(key.startswith(q) for q in _NM_QUANTITIES) else INTENSITY_UNITS


def frames_to_scans(
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
    """One Scan per frame (a 2-D array is one frame); units from the quantity when not given, as
    AFMReader scales it. Rows follow AFMReader's orientation (the first row is the top of the image
    as the instrument software shows it)."""
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
