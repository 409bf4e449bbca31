"""The model store: a folder of named model files, one of them installed as the active model.

Like Gwyddion's stored networks: `list_models` shows what is there, `promote` verifies a model (load +
a probe forward pass) and only then installs it as `active.safetensors` (the verified bytes, written to
a temp file, fsynced and renamed), so the daemon, which watches that file, never sees a half-written or broken
model. The shipped default model lives in the repository's `models/` folder.

Every promoted model stays in the folder under its own file name, and `history.json` records each
installation (promotion or rollback: when, which model, its hash, the model it replaced), so any model
that was ever active can be made active again (`rollback`), through the same verification.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

import structlog

from afmwatch.durable import atomic_write_bytes, sha256_file
from afmwatch.networks.model_file import ModelError, read_metadata

ACTIVE_NAME = "active.safetensors"
HISTORY_NAME = "history.json"
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


def promote(model_path: str | Path, model_folder: str | Path, *, action: str = "promote") -> Path:
    """Verify a model (load + probe forward pass) and install it as the folder's active model; the
    model is also kept in the folder under its own file name, and the installation is recorded in the
    history (`action`: promote or rollback). Returns the active model's path."""
    from afmwatch.networks.families import load_classifier, probe  # torch only when promoting

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
    replaced = _active_identity(folder)
    _install_copy(model_path, active, classifier.sha256)
    _record(
        folder,
        {
            "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "action": action,
            "name": classifier.name,
            "file": kept.name,
            "sha256": classifier.sha256,
            "created": classifier.metadata.get("created"),
            "replaced": replaced,
        },
    )
    log.info(
        "model_promoted" if action == "promote" else "model_rolled_back",
        model=classifier.name,
        file=str(model_path),
        active=str(active),
        sha256=classifier.sha256,
        replaced=(replaced or {}).get("name"),
        probe_p_bad=prediction.probabilities["bad"],
    )
    return active


# -- history and rollback -------------------------------------------------------------------------
def history(model_folder: str | Path) -> list[dict[str, Any]]:
    """Every installation of an active model in the folder, oldest first (empty before the first)."""
    path = Path(model_folder) / HISTORY_NAME
    if not path.is_file():
        return []
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(path, f"the store's history cannot be read ({exc})") from None
    if not isinstance(entries, list):
        raise ModelError(path, "the store's history is not a list of installations")
    return entries


def _record(folder: Path, entry: dict[str, Any]) -> None:
    """Append one installation to the history (the whole file rewritten atomically: a few KB)."""
    entries = history(folder) + [entry]
    atomic_write_bytes(folder / HISTORY_NAME, (json.dumps(entries, indent=1) + "\n").encode("utf-8"))


def _active_identity(folder: Path) -> dict[str, Any] | None:
    """Name and hash of the model active now, for the history's `replaced`."""
    active = active_model_path(folder)
    if active is None:
        return None
    sha = sha256_file(active)
    try:
        name = read_metadata(active).get("name", active.stem)
    except ModelError:
        name = None
    return {"name": name, "sha256": sha}


def rollback_target(model_folder: str | Path, model: str | Path | None = None) -> Path:
    """The kept model file a rollback installs: `model` (a name or file in the store), else the most
    recent model in the history that differs from the active one and is still in the folder."""
    folder = Path(model_folder)
    if model is not None:
        return find_model(model, folder)
    active = active_model_path(folder)
    active_sha = sha256_file(active) if active else None
    for entry in reversed(history(folder)):
        if entry.get("sha256") == active_sha:
            continue
        kept = folder / str(entry.get("file"))
        if kept.is_file() and kept.name != ACTIVE_NAME and sha256_file(kept) == entry.get("sha256"):
            return kept
        log.warning("rollback_model_missing", model=entry.get("name"), file=str(kept))
    raise ModelError(
        folder,
        "no earlier model in the store's history to roll back to; name one (afmwatch models list shows them)",
    )


def rollback(model_folder: str | Path, model: str | Path | None = None) -> Path:
    """Make an earlier model active again (verified like a promotion; recorded as a rollback).
    Returns the kept model file that is active now."""
    target = rollback_target(model_folder, model)
    promote(target, model_folder, action="rollback")
    return target
