"""Judging files outside the daemon (`afmwatch classify`, `evaluate`, the benchmarks): the daemon's own
per-file work (`examine.read_file`), the model on every frame with the scan's metrics, and
`verdict.decide`, so that a file gets the same decision here as in the daemon's sidecar."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch

from afmwatch.config import ReadingConfig
from afmwatch.examine import ReadResult, ReadTask, read_file
from afmwatch.networks.protocol import ClassifierModel
from afmwatch.scan import ScanError
from afmwatch.verdict import Policy, Verdict, decide


@dataclass(frozen=True)
class JudgedFile:
    """One file's outcome: its verdict and quality metrics, or the reason it could not be read."""

    path: Path
    verdict: Verdict | None
    quality: dict[str, Any] | None
    error: str | None
    frames: int = 0


def judge_paths(
    classifier: ClassifierModel,
    paths: list[Path],
    *,
    policy: Policy = Policy(),
    reading: ReadingConfig | None = None,
    batch_size: int = 16,
    workers: int = 2,
) -> Iterator[JudgedFile]:
    """Read, measure, classify (every frame) and decide each file, in order, in batches of files; a file
    that cannot be read yields its error and the others go on."""
    prepare, argument = classifier.preprocess_task()
    task_reading = classifier.reading_config(reading)

    def load(path: Path) -> ReadResult | str:
        try:
            return read_file(ReadTask(path, task_reading, prepare, argument))
        except ScanError as exc:
            return exc.reason

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for start in range(0, len(paths), batch_size):
            chunk = paths[start : start + batch_size]
            loaded = list(pool.map(load, chunk))
            rows = [
                (i, n) for i, item in enumerate(loaded) if not isinstance(item, str) for n in range(len(item.inputs))
            ]
            predictions = []
            if rows:  # rows index only the files that were read (not an error string)
                x = torch.stack([torch.from_numpy(cast(ReadResult, loaded[i]).inputs[n]) for i, n in rows])
                predictions = classifier.predict(x, [cast(ReadResult, loaded[i]).quality for i, _ in rows])
            per_file: dict[int, list[Any]] = {}
            for (i, _), prediction in zip(rows, predictions):
                per_file.setdefault(i, []).append(prediction)
            for i, path in enumerate(chunk):
                item = loaded[i]
                if isinstance(item, str):
                    yield JudgedFile(path, None, None, item)
                else:
                    verdict = decide(per_file[i], item.quality, policy)
                    yield JudgedFile(path, verdict, item.quality, None, len(item.frames))
