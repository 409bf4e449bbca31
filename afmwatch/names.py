"""File names as the file system has them: any bytes but "/" and NUL, at most 255 bytes a name.

Inside afmwatch a path is a `Path` whose undecodable bytes are kept as lone surrogates (Python's
`surrogateescape`, what `os.fsdecode` gives), so that opening and moving the file always work. Such
a string cannot be written as UTF-8 (SQLite, JSON, a log line), so everything afmwatch records holds
`path_text(path)` instead: the same text for every ordinary name, with an undecodable byte written
`\\xNN` and a backslash written `\\\\`, which `text_path` turns back into the exact bytes.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

NAME_MAX = 255  # bytes in one file name (ext4, XFS, btrfs, tmpfs, NTFS via SMB in UTF-16 units)

_ESCAPED = re.compile(r"\\(\\|x([0-9a-f]{2}))")


def _is_escaped_byte(char: str) -> bool:
    return "\udc80" <= char <= "\udcff"


def path_text(path: str | os.PathLike[str]) -> str:
    """A valid Unicode string that names exactly these bytes (reversed by `text_path`)."""
    text = os.fspath(path)
    if "\\" not in text and (text.isascii() or not any(_is_escaped_byte(c) for c in text)):
        return text
    return "".join("\\\\" if c == "\\" else f"\\x{ord(c) - 0xDC00:02x}" if _is_escaped_byte(c) else c for c in text)


def text_path(text: str) -> Path:
    """The path `path_text` wrote as `text`."""
    if "\\" not in text:
        return Path(text)
    return Path(_ESCAPED.sub(lambda m: "\\" if m[1] == "\\" else chr(0xDC00 + int(m[2], 16)), text))


def clean(text: str) -> str:
    """`text` with undecodable bytes shown as `\\xNN` (for messages and logs; not reversible)."""
    # an ASCII string holds no escaped byte: the daemon cleans every string of every sidecar, and the
    # character-by-character test cost half a millisecond a file
    if text.isascii() or not any(_is_escaped_byte(c) for c in text):
        return text
    return "".join(f"\\x{ord(c) - 0xDC00:02x}" if _is_escaped_byte(c) else c for c in text)


def name_bytes(name: str) -> int:
    return len(os.fsencode(name))


def fitted(stem: str, tail: str, limit: int = NAME_MAX) -> str:
    """`stem + tail`, or, when that is longer than `limit` bytes, `stem` cut short and marked with
    `~` and 8 hex digits of its hash (two long names that share their start stay apart) before `tail`."""
    if name_bytes(stem + tail) <= limit:
        return stem + tail
    mark = "~" + hashlib.sha256(os.fsencode(stem)).hexdigest()[:8]
    budget = limit - name_bytes(tail) - name_bytes(mark)
    if budget < 1:
        raise ValueError(f"{clean(tail)!r} leaves no room for a name within {limit} bytes")
    cut = stem
    while name_bytes(cut) > budget:
        cut = cut[:-1]
    return cut + mark + tail


def split_tail(name: str, marker: str = ".afmwatch.") -> tuple[str, str]:
    """(stem, tail): the tail is what names of this kind must keep (`.afmwatch.json` of a sidecar,
    else the last suffix, `.tif`), the stem what may be cut."""
    at = name.find(marker)
    if at > 0:
        return name[:at], name[at:]
    suffix = Path(name).suffix
    if not suffix or len(suffix) == len(name):
        return name, ""
    return name[: -len(suffix)], suffix
