"""`afmwatch models diff NEW --against active --data FOLDER`: which scans a model would decide differently
from another, before it is promoted.

Both models judge every scan through `judge.judge_paths` with the same policy (rules, familiarity,
frames), so a "change" here is exactly a scan the daemon would sort into another folder. Nothing is
moved or written: the files are only read.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from afmwatch.config import ReadingConfig
from afmwatch.judge import JudgedFile, judge_paths
from afmwatch.networks.protocol import ClassifierModel
from afmwatch.readers import is_supported
from afmwatch.verdict import Decision, Policy

# The folders the daemon sorts into: a scan found below one of them has that folder's decision as its
# current label (after a correction, the folder a person moved it to).
SORTED_FOLDERS = tuple(d.value for d in Decision)


@dataclass(frozen=True)
class DecisionChange:
    """One scan that the two models decide differently (`before`: the model compared against)."""

    path: str
    folder: str | None  # good/bad/review/failed when the scan sits in such a folder of --data
    before: str
    after: str
    p_bad_before: float | None
    p_bad_after: float | None
    reason_before: str
    reason_after: str


def scan_files(folder: str | Path) -> list[Path]:
    """Every scan file below `folder`, sorted: afmwatch's sidecars, previews and denoised copies, hidden
    files and hidden folders (the state folder `.afmwatch-state`) are left out."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a folder")
    found = []
    for path in folder.rglob("*"):
        relative = path.relative_to(folder)
        if any(part.startswith((".", "~")) for part in relative.parts):
            continue
        if ".afmwatch." in path.name or ".denoised" in path.name or not path.is_file():
            continue
        if is_supported(path):
            found.append(path)
    return sorted(found)


def _folder_label(path: Path, root: Path) -> str | None:
    parts = path.relative_to(root).parts
    return parts[0] if len(parts) > 1 and parts[0] in SORTED_FOLDERS else None


def _p_bad(judged: JudgedFile) -> float | None:
    if judged.verdict is None or judged.verdict.probabilities is None:
        return None
    return float(judged.verdict.probabilities["bad"])


def _decision(judged: JudgedFile) -> tuple[str, str]:
    if judged.verdict is None:
        return Decision.FAILED.value, f"could not be processed: {judged.error}"
    return judged.verdict.decision, judged.verdict.reasons[0]


def _pairs(
    new: ClassifierModel,
    old: ClassifierModel,
    paths: list[Path],
    policy: Policy,
    reading: ReadingConfig | None,
    batch_size: int,
) -> Iterator[tuple[JudgedFile, JudgedFile]]:
    after = judge_paths(new, paths, policy=policy, reading=reading, batch_size=batch_size)
    before = judge_paths(old, paths, policy=policy, reading=reading, batch_size=batch_size)
    yield from zip(after, before)


def diff_models(
    new: ClassifierModel,
    old: ClassifierModel,
    data: str | Path,
    *,
    policy: Policy = Policy(),
    reading: ReadingConfig | None = None,
    batch_size: int = 16,
    paths: list[Path] | None = None,
) -> dict[str, Any]:
    """Judge every scan below `data` (or only `paths`, files below it) with both loaded classifiers; the
    scans whose decision differs, with both decisions, P(bad) and deciding reasons, and counts per
    change ("good -> bad": n)."""
    root = Path(data)
    paths = scan_files(root) if paths is None else list(paths)
    changes: list[DecisionChange] = []
    for after, before in _pairs(new, old, paths, policy, reading, batch_size):
        old_decision, old_reason = _decision(before)
        new_decision, new_reason = _decision(after)
        if old_decision != new_decision:
            changes.append(
                DecisionChange(
                    path=str(after.path),
                    folder=_folder_label(after.path, root),
                    before=old_decision,
                    after=new_decision,
                    p_bad_before=_p_bad(before),
                    p_bad_after=_p_bad(after),
                    reason_before=old_reason,
                    reason_after=new_reason,
                )
            )
    return {
        "new": _model_info(new),
        "against": _model_info(old),
        "data": str(root),
        "scans": len(paths),
        "changed": len(changes),
        "counts": dict(Counter(f"{c.before} -> {c.after}" for c in changes)),
        "changes": [asdict(c) for c in changes],
    }


def _model_info(classifier: ClassifierModel) -> dict[str, Any]:
    return {"name": classifier.name, "file": str(classifier.path), "sha256": classifier.sha256, "arch": classifier.arch}
