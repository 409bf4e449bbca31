"""The model store: a folder of named model files, one of them installed as the active model.

Like Gwyddion's stored networks: `list_models` shows what is there, `promote` verifies a model (load +
a probe forward pass) and only then installs it as `active.safetensors` (the verified bytes, written to
a temp file, fsynced and renamed), so the daemon, which watches that file, never sees a half-written or broken
model. The shipped default model lives in the repository's `models/` folder.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import structlog

from afmwatch.durable import atomic_write_bytes, sha256_file
from afmwatch.networks.model_file import ModelError, read_metadata

ACTIVE_NAME = "active.safetensors"
MODEL_SUFFIX = ".safetensors"
DEFAULT_MODEL_NAME = "default-classifier.safetensors"

log = structlog.get_logger(__name__)


def default_model_path() -> Path:
    """The shipped default classifier (`models/default-classifier.safetensors` in the repository)."""
    return Path(__file__).resolve().parents[2] / "models" / DEFAULT_MODEL_NAME


def active_model_path(model_folder: str | Path) -> Path | None:
    """The folder's active model, or None when nothing was promoted there yet."""
    path = Path(model_folder) / ACTIVE_NAME
    return path if path.is_file() else None


def resolve_model(model: str | Path | None = None, model_folder: str | Path | None = None) -> Path:
    """Which model to use: an explicit file or a name in the model folder, else the folder's active
    model, else the shipped default. ModelError when that file does not exist."""
    if model is not None:
        path = Path(model)
        if not path.exists() and model_folder is not None:
            path = find_model(model, model_folder)
    elif model_folder is not None and active_model_path(model_folder) is not None:
        path = Path(model_folder) / ACTIVE_NAME
    else:
        path = default_model_path()
        if not path.exists():
            raise ModelError(path, "the shipped default model is missing; run `make default-model` or pass --model")
    if not path.exists():
        raise ModelError(path, "model file does not exist")
    return path


def model_summary(path: Path, meta: dict[str, Any], active_sha: str | None) -> dict[str, Any]:
    metrics = meta.get("metrics") or {}
    validation = metrics.get("validation") or {}
    return {
        "name": meta.get("name", path.stem),
        "file": str(path),
        "arch": meta.get("arch"),
        "created": meta.get("created"),
        "balanced_accuracy": validation.get("balanced_accuracy"),
        "roc_auc": validation.get("roc_auc"),
        "training_files": (meta.get("training_data") or {}).get("count"),
        "active": active_sha is not None and sha256_file(path) == active_sha,
    }


def list_models(folder: str | Path) -> list[dict[str, Any]]:
    """One summary per model file in the folder (name, arch, created, validation metrics, active);
    files that are not afmwatch models are listed with an `error` instead."""
    folder = Path(folder)
    active = active_model_path(folder)
    active_sha = sha256_file(active) if active else None
    rows = []
    for path in sorted(folder.glob(f"*{MODEL_SUFFIX}")):
        if path.name == ACTIVE_NAME:
            continue
        try:
            rows.append(model_summary(path, read_metadata(path), active_sha))
        except ModelError as exc:
            rows.append({"name": path.stem, "file": str(path), "error": exc.reason})
    if active is not None and not any(row.get("active") for row in rows):
        try:
            rows.append(model_summary(active, read_metadata(active), active_sha))
        except ModelError as exc:
            rows.append({"name": active.stem, "file": str(active), "error": exc.reason})
    return rows


def find_model(name: str | Path, folder: str | Path) -> Path:
    """A model in the folder by file name, file stem or the name in its metadata."""
    folder = Path(folder)
    for candidate in (folder / str(name), folder / f"{name}{MODEL_SUFFIX}"):
        if candidate.is_file():
            return candidate
    for path in sorted(folder.glob(f"*{MODEL_SUFFIX}")):
        try:
            if read_metadata(path).get("name") == str(name):
                return path
        except ModelError:
            continue
    raise ModelError(Path(name), f"no model of that name in {folder}")


def _install_copy(source: Path, target: Path, expected_sha256: str) -> None:
    """Install exactly the bytes that were verified: read, check the hash, write atomically
    (temp file, fsync, rename), so `target` is never half-written and never a different model."""
    data = source.read_bytes()
    if hashlib.sha256(data).hexdigest() != expected_sha256:
        raise ModelError(source, "the file changed while it was being verified; promote it again")
    atomic_write_bytes(target, data)


def promote(model_path: str | Path, model_folder: str | Path) -> Path:
    """Verify a model (load + probe forward pass) and install it as the folder's active model; the
    model is also kept in the folder under its own file name. Returns the active model's path."""
    from afmwatch.networks.classifier import load_classifier, probe  # torch only when promoting

    model_path = Path(model_path)
    folder = Path(model_folder)
    folder.mkdir(parents=True, exist_ok=True)
    classifier = load_classifier(model_path, device="cpu")
    prediction = probe(classifier)
    kept = folder / model_path.name
    if model_path.name != ACTIVE_NAME and not (kept.exists() and kept.samefile(model_path)):
        if kept.exists() and sha256_file(kept) != classifier.sha256:
            raise ModelError(
                kept,
                "a different model with this file name is already in the model folder; "
                "rename the file you are promoting",
            )
        _install_copy(model_path, kept, classifier.sha256)
    active = folder / ACTIVE_NAME
    _install_copy(model_path, active, classifier.sha256)
    log.info(
        "model_promoted",
        model=classifier.name,
        file=str(model_path),
        active=str(active),
        sha256=classifier.sha256,
        probe_p_bad=prediction.probabilities["bad"],
    )
    return active
