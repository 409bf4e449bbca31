"""Labelled data from a folder laid out as the daemon sorts: `good/` and `bad/` (subfolders allowed, any
format the readers know). `review/` and `failed/` are not labels and are ignored, as are afmwatch's own
sidecars and previews, hidden and temporary files. So an operator's curated output folder is training
data as it stands.

One scan saved in several formats side by side (NAME.tiff + NAME.gwy + NAME.png) counts once, from the
best format (calibrated heights before image exports); identical files are recognised by their hash.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from afmwatch.config import ReadingConfig
from afmwatch.durable import sha256_file
from afmwatch.networks.prediction import CLASS_NAMES
from afmwatch.scan import Scan, ScanError

log = structlog.get_logger(__name__)

IGNORED_SUFFIXES = (".afmwatch.json", ".afmwatch.png", ".tmp", ".part", ".partial", ".json", ".md", ".txt")
IMAGE_EXPORT_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


@dataclass(frozen=True)
class LabelledFile:
    path: Path
    label: int  # index into CLASS_NAMES
    sha256: str
    group: str | None  # from --group-by; None when not grouped


def _candidate(path: Path) -> bool:
    name = path.name.lower()
    if name.startswith((".", "~")) or not path.is_file():
        return False
    if name.endswith(IGNORED_SUFFIXES) or ".denoised" in name:  # the daemon's denoised copies are not measurements
        return False
    from afmwatch.readers import is_supported

    return is_supported(path)


def _format_rank(path: Path) -> int:
    """Prefer the instrument's or a height file over an image export of the same scan."""
    suffix = path.suffix.lower()
    if suffix in IMAGE_EXPORT_SUFFIXES:
        return 2
    return 1 if suffix in (".tif", ".tiff") else 0


def _stem(path: Path) -> str:
    return path.name.split(".", 1)[0]


def group_name(path: Path, group_by: str | None) -> str | None:
    """The sample a scan belongs to: the regex's first group (or whole match) on the file name."""
    if not group_by:
        return None
    match = re.search(group_by, path.name)
    if match is None:
        return None
    return match.group(1) if match.groups() else match.group(0)


def _labelled_paths(folder: Path) -> tuple[list[tuple[Path, int]], int]:
    """(path, label) of every scan under good/ and bad/, one format per scan, and how many other
    formats of the same scans were passed over."""
    missing = [name for name in CLASS_NAMES if not (folder / name).is_dir()]
    if missing:
        raise ValueError(
            f"{folder}: no {' or '.join(f'{m}/' for m in missing)} folder "
            "(training data is a folder with good/ and bad/ subfolders)"
        )
    chosen: dict[tuple[Path, str], tuple[Path, int]] = {}
    alternates = 0
    for label, name in enumerate(CLASS_NAMES):
        for path in sorted((folder / name).rglob("*")):
            if not _candidate(path):
                continue
            key = (path.parent, _stem(path))
            if key in chosen:
                alternates += 1
                if _format_rank(path) < _format_rank(chosen[key][0]):
                    chosen[key] = (path, label)
            else:
                chosen[key] = (path, label)
    return list(chosen.values()), alternates


def count_labelled(folder: str | Path) -> int:
    """How many scans `collect_files` would find, without hashing them (identical copies count twice)."""
    return len(_labelled_paths(Path(folder))[0])


def collect_files(folder: str | Path, group_by: str | None = None) -> tuple[list[LabelledFile], dict[str, Any]]:
    """The labelled files under `folder` and notes on what was left out (for the report)."""
    folder = Path(folder)
    chosen, alternates = _labelled_paths(folder)
    by_hash: dict[str, list[tuple[Path, int]]] = {}
    for path, label in chosen:
        by_hash.setdefault(sha256_file(path), []).append((path, label))
    files: list[LabelledFile] = []
    conflicts: list[str] = []
    for digest, entries in by_hash.items():
        if len({label for _, label in entries}) > 1:
            conflicts.extend(str(p) for p, _ in entries)
            log.warning(
                "conflicting_labels",
                files=[str(p) for p, _ in entries],
                reason="identical files in good/ and bad/; left out of training",
            )
            continue
        files.extend(LabelledFile(p, label, digest, group_name(p, group_by)) for p, label in entries)
    files.sort(key=lambda f: str(f.path))
    notes = {"other_formats_of_same_scan": alternates, "conflicting_labels": conflicts}
    return files, notes


def fingerprint(files: list[LabelledFile], root: str | Path) -> dict[str, Any]:
    """Count and hash of the file list (label, relative path, content hash): two trainings on the same
    data have the same fingerprint."""
    root = Path(root)
    lines = sorted(f"{CLASS_NAMES[f.label]}\t{f.path.relative_to(root).as_posix()}\t{f.sha256}" for f in files)
    counts = {name: sum(1 for f in files if f.label == i) for i, name in enumerate(CLASS_NAMES)}
    return {"count": len(files), "per_class": counts, "sha256": hashlib.sha256("\n".join(lines).encode()).hexdigest()}


def load_prepared(
    files: list[LabelledFile],
    prepare: Callable[[Scan], np.ndarray],
    reading: ReadingConfig | None = None,
    workers: int = 2,
    progress: bool = True,
) -> tuple[list[np.ndarray], list[int], list[dict[str, str]]]:
    """Read every file (first frame), run `prepare` on it; returns the arrays, the indices into `files`
    that worked, and the files that could not be read with the reason."""
    from tqdm import tqdm

    from afmwatch.readers import read_scan

    def one(item: LabelledFile) -> np.ndarray | str:
        try:
            return prepare(read_scan(item.path, reading))
        except ScanError as exc:
            return exc.reason

    arrays, kept, skipped = [], [], []
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = pool.map(one, files)
        for index, result in enumerate(
            tqdm(results, total=len(files), desc="reading", unit="scan", disable=None if progress else True)
        ):
            if isinstance(result, str):
                skipped.append({"path": str(files[index].path), "reason": result})
                log.warning("training_file_skipped", file=str(files[index].path), reason=result)
            else:
                arrays.append(result)
                kept.append(index)
    return arrays, kept, skipped
