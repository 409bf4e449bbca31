"""Argument types for `--out`: a clear usage error before any work, instead of a traceback or one error
per input file when `--out` names a file where a folder is meant (or the other way round)."""

from __future__ import annotations

import argparse
from pathlib import Path


def output_folder(value: str) -> str:
    """A folder to write into: missing is fine (it is created), an existing file is not."""
    path = Path(value).expanduser()
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{value} is a file; --out names a folder (created if missing)")
    _parent_not_a_file(path, value)
    return str(path)


def output_file(value: str) -> str:
    """A file to write: it may exist (it is replaced), but not as a folder."""
    path = Path(value).expanduser()
    if path.is_dir():
        raise argparse.ArgumentTypeError(
            f"{value} is a folder; --out names the file to write, e.g. {path / 'model.safetensors'}"
        )
    _parent_not_a_file(path.parent, value)
    return str(path)


def _parent_not_a_file(path: Path, value: str) -> None:
    for parent in (path, *path.parents):
        if parent.exists():
            if not parent.is_dir():
                raise argparse.ArgumentTypeError(f"{value}: {parent} is a file, not a folder")
            return
