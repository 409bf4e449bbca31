"""The per-file work before inference, the same in the daemon and in the commands: read every frame
of a file, measure the first frame's quality (with its retrace when the file has one) and make the
model's input for each frame. Plain data in, plain data out, so the daemon can run it in reader
processes (`afmwatch.daemon.reading`) and `afmwatch classify` in threads, with identical results.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from afmwatch.config import ReadingConfig
from afmwatch.quality import measure
from afmwatch.readers import read_frames, read_retrace
from afmwatch.scan import Scan, ScanError


@dataclass(frozen=True)
class ReadTask:
    """What a worker needs: the file, how to read it, and the model's input pipeline."""

    path: Path
    reading: ReadingConfig
    prepare: Callable[[Scan, Any], np.ndarray]  # e.g. pipeline.to_array (picklable by name)
    prepare_arg: Any
    source: Path | None = None  # the bytes to parse, when not `path` itself (the daemon's private copy)


@dataclass
class ReadResult:
    frames: list[Scan]
    quality: dict[str, float | int | None]
    inputs: list[np.ndarray]  # the model's input for each frame
    seconds: dict[str, float] = field(default_factory=dict)  # read, quality, preprocess


def read_file(task: ReadTask) -> ReadResult:
    """Read every frame, measure the first, preprocess all; raises ScanError for a bad file."""
    seconds = {}
    started = time.monotonic()
    frames = read_frames(task.source or task.path, task.reading)
    if not frames:
        raise ScanError(task.path, "the file holds no image frames")
    retrace = read_retrace(frames[0], task.reading, beside=task.path.parent)
    if task.source is not None:  # the scans name the file, not the copy they were parsed from
        frames = [dataclasses.replace(frame, path=task.path) for frame in frames]
    seconds["read"] = time.monotonic() - started
    started = time.monotonic()
    quality = measure(frames[0], retrace)
    seconds["quality"] = time.monotonic() - started
    started = time.monotonic()
    inputs = [task.prepare(frame, task.prepare_arg) for frame in frames]
    seconds["preprocess"] = time.monotonic() - started
    return ReadResult(frames=frames, quality=quality, inputs=inputs, seconds=seconds)
