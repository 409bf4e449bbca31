"""The model file: weights in safetensors, metadata as JSON inside the same file.

Model files get copied between lab PCs, so loading must never execute code: safetensors holds only
tensors, and the metadata is JSON. Legacy `.pt`/`.pth` files are accepted only as plain state dicts
through `torch.load(weights_only=True)`; anything that needs unpickling of objects is refused.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from afmwatch import __version__
from afmwatch.durable import atomic_write_bytes
from afmwatch.errors import AfmwatchError

METADATA_KEY = "afmwatch"
FORMAT_VERSION = 1


class ModelError(AfmwatchError):
    """A model file is missing, unsafe, corrupt or does not fit this version; the message says which."""

    def __init__(self, path: str | Path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path.name}: {reason}")


def save_model_file(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> Path:
    """Atomically write weights and metadata (any JSON-able dict) to one .safetensors file."""
    meta = dict(metadata, format_version=FORMAT_VERSION, afmwatch_version=__version__)
    contiguous = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    data = st_save(contiguous, metadata={METADATA_KEY: json.dumps(meta, sort_keys=True, default=str)})
    path = Path(path)
    atomic_write_bytes(path, data)
    return path


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_metadata(path: str | Path) -> dict[str, Any]:
    """Only the metadata (cheap: reads the safetensors header, not the weights)."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            header_len = int.from_bytes(handle.read(8), "little")
            if header_len <= 0 or header_len > 100_000_000:
                raise ModelError(path, "not a safetensors model file (bad header length)")
            header = json.loads(handle.read(header_len))
    except FileNotFoundError:
        raise ModelError(path, "model file does not exist") from None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ModelError(path, f"not a safetensors model file ({exc})") from None
    raw = (header.get("__metadata__") or {}).get(METADATA_KEY)
    if raw is None:
        raise ModelError(path, "safetensors file without afmwatch metadata (not an afmwatch model)")
    meta = json.loads(raw)
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelError(path, f"model file format {meta.get('format_version')} is not supported by this version")
    return meta


def load_model_file(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Weights and metadata of an afmwatch model file; never unpickles anything."""
    path = Path(path)
    if path.suffix.lower() in (".pt", ".pth", ".pkl", ".ckpt"):
        raise ModelError(path, "pickle-based model files are not loaded (they can run code); use .safetensors")
    meta = read_metadata(path)
    try:
        tensors = st_load(path.read_bytes())
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(path, f"corrupt weights ({exc})") from None
    return tensors, meta


def load_plain_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A third-party state dict (e.g. torchvision's resnet18 ImageNet weights) from .safetensors or
    .pth; a .pth that needs more than tensors (pickled objects, code) is refused with ModelError."""
    path = Path(path)
    if not path.exists():
        raise ModelError(path, "weights file does not exist")
    if path.suffix.lower() == ".safetensors":
        try:
            return st_load(path.read_bytes())
        except (SafetensorError, ValueError) as exc:
            raise ModelError(path, f"corrupt safetensors file ({exc})") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, ... for unsafe or corrupt files
        raise ModelError(path, f"refused: not a plain state dict of tensors ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(path, "refused: not a plain state dict of tensors")
    return state
