"""The JSON sidecar written beside each sorted scan (`NAME.afmwatch.json`), and its schema."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from afmwatch.durable import atomic_write_bytes
from afmwatch.names import clean, fitted, split_tail

SCHEMA_VERSION = 2
SIDECAR_SUFFIX = ".afmwatch.json"
PREVIEW_SUFFIX = ".afmwatch.png"


def _beside(scan_path: Path, suffix: str) -> Path:
    """`NAME` + `suffix` beside the scan; a name too long for that (over 255 bytes) is cut short and
    marked with its hash, keeping its own suffix (`long~1a2b3c4d.tif.afmwatch.json`)."""
    stem, own_suffix = split_tail(scan_path.name)
    return scan_path.with_name(fitted(stem, own_suffix + suffix))


def sidecar_path(scan_path: Path) -> Path:
    return _beside(scan_path, SIDECAR_SUFFIX)


def preview_path(scan_path: Path) -> Path:
    return _beside(scan_path, PREVIEW_SUFFIX)


def iso_utc(timestamp: float | None) -> str | None:
    """ISO 8601 in UTC with milliseconds, e.g. 2026-01-31T12:00:00.123Z."""
    if timestamp is None:
        return None
    moment = datetime.fromtimestamp(timestamp, tz=timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@cache
def schema() -> dict[str, Any]:
    """The committed JSON Schema (afmwatch/daemon/sidecar.schema.json)."""
    text = resources.files("afmwatch.daemon").joinpath("sidecar.schema.json").read_text(encoding="utf-8")
    return json.loads(text)


def validate(sidecar: dict[str, Any]) -> None:
    """Raise jsonschema.ValidationError if `sidecar` does not follow the schema."""
    import jsonschema

    jsonschema.validate(sidecar, schema(), format_checker=jsonschema.FormatChecker())


def plain(value: Any) -> Any:
    """JSON-ready data: numpy scalars as Python numbers, NaN/inf as null, tuples as lists, paths as text,
    undecodable bytes of a file name in a message as `\\xNN` (JSON text must be valid Unicode)."""
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, dict):
        return {clean(str(k)): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        value = value.item()  # numpy scalar
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return clean(str(value))
    return value


def sidecar_bytes(sidecar: dict[str, Any]) -> bytes:
    return (json.dumps(sidecar, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def write_sidecar(scan_path: Path, sidecar: dict[str, Any]) -> Path:
    """Atomically write the sidecar for the scan at `scan_path`; the same data always gives the same bytes."""
    path = sidecar_path(scan_path)
    atomic_write_bytes(path, sidecar_bytes(sidecar))
    return path
