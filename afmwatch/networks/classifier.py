"""A loaded classifier: the network, its stored input pipeline, its temperature and review band.

`load_network` builds it from a model file already read (`networks.families.load_classifier` reads any
file and hands networks here; nothing from the file is run: safetensors + JSON metadata). `preprocess`
is pure and thread-safe (reader threads call it); `predict` runs one batch on the classifier's device.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from afmwatch.config import ReadingConfig
from afmwatch.networks import familiarity as familiarity_check
from afmwatch.networks import pipeline as input_pipeline
from afmwatch.networks.architectures import ARCHITECTURES, get_architecture
from afmwatch.networks.metrics_model import feature_vector, model_log_odds, one_direction_rows
from afmwatch.networks.model_file import ModelError, file_sha256, save_model_file
from afmwatch.networks.prediction import CLASS_NAMES, Prediction, to_predictions
from afmwatch.scan import Scan

REQUIRED_METADATA = ("name", "arch", "pipeline", "class_names", "temperature", "review_band")


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


COMPANION_PREFIX = "companion."


def resolve_device(device: str) -> torch.device:
    """ "auto" -> CUDA when available, else CPU; asking for "cuda" without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("device cuda was asked for, but PyTorch sees no CUDA GPU")
    return torch.device(device)


def check_metadata(meta: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """The metadata if it describes a classifier this version can run; otherwise ModelError."""
    missing = [key for key in REQUIRED_METADATA if key not in meta]
    if missing:
        raise ModelError(path, f"not a classifier model: metadata lacks {', '.join(missing)}")
    if meta["arch"] not in ARCHITECTURES:
        raise ModelError(
            path, f"architecture {meta['arch']!r} is unknown to this afmwatch (known: {', '.join(ARCHITECTURES)})"
        )
    if tuple(meta["class_names"]) != CLASS_NAMES:
        raise ModelError(path, f"class names {meta['class_names']!r}; afmwatch classifiers have {CLASS_NAMES}")
    if not (isinstance(meta["temperature"], (int, float)) and meta["temperature"] > 0):
        raise ModelError(path, f"invalid temperature {meta['temperature']!r}")
    band = meta["review_band"]
    if not (isinstance(band, (list, tuple)) and len(band) == 2 and 0 <= band[0] <= band[1] <= 1):
        raise ModelError(path, f"invalid review band {band!r} (need [low, high] within 0..1)")
    meta = dict(meta, pipeline=input_pipeline.check_pipeline(meta["pipeline"], path))
    return meta


def build_network(meta: dict[str, Any], tensors: dict[str, torch.Tensor], path: str | Path) -> nn.Module:
    """The architecture named in the metadata, with exactly the stored weights (no more, no fewer)."""
    arch = get_architecture(meta["arch"])
    model = arch.build(len(meta["class_names"]), meta["pipeline"]["crop"], None)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong_shape = sorted(k for k in set(expected) & set(tensors) if expected[k].shape != tensors[k].shape)
    if missing or unexpected or wrong_shape:
        details = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)):
            if keys:
                details.append(f"{label}: {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''}")
        raise ModelError(path, f"weights do not fit architecture {meta['arch']} ({'; '.join(details)})")
    model.load_state_dict(tensors, strict=True)
    model.eval()
    return model


class Classifier:
    """A model file loaded for inference."""

    def __init__(
        self,
        path: Path,
        model: nn.Module,
        metadata: dict[str, Any],
        sha256: str,
        device: torch.device,
        familiarity_tensors: dict[str, torch.Tensor] | None = None,
        companion_tensors: dict[str, torch.Tensor] | None = None,
    ):
        self.familiarity_tensors = familiarity_tensors or {}
        self.familiarity: dict[str, Any] | None = metadata.get("familiarity") if self.familiarity_tensors else None
        self.companion: dict[str, Any] | None = metadata.get("companion") if companion_tensors else None
        # float weights in float64; tree structure (features, children) stays integer, as trees_raw indexes by it
        self.companion_tensors = {
            name: v.double().numpy() if v.is_floating_point() else v.numpy()
            for name, v in (companion_tensors or {}).items()
        }
        self.path = path
        self.model = model
        self.metadata = metadata
        self.sha256 = sha256
        self.name: str = metadata["name"]
        self.arch: str = metadata["arch"]
        self.pipeline: dict[str, Any] = metadata["pipeline"]
        self.class_names: tuple[str, ...] = tuple(metadata["class_names"])
        self.temperature = float(metadata["temperature"])
        self.review_band: tuple[float, float] = (float(metadata["review_band"][0]), float(metadata["review_band"][1]))
        self.device = device

    def __repr__(self) -> str:
        return f"Classifier({self.name!r}, arch={self.arch}, device={self.device}, file={self.path.name})"

    def preprocess(self, scan: Scan) -> torch.Tensor:
        """The stored input pipeline (levelling included): (channels, crop, crop) on the CPU."""
        return input_pipeline.to_tensor(scan, self.pipeline)

    def preprocess_task(self) -> tuple[Callable[[Scan, Any], np.ndarray], Any]:
        """`preprocess` as a plain function and its argument, both picklable, returning a numpy
        array: what the daemon's reader processes run (the model itself stays in the service)."""
        return input_pipeline.to_array, self.pipeline

    def reading_config(self, reading: ReadingConfig | None = None) -> ReadingConfig:
        """The reading settings with this model's data-area mode (how exports are cropped)."""
        return dataclasses.replace(reading or ReadingConfig(), data_area=self.pipeline["data_area"])

    def logits(self, batch: torch.Tensor) -> torch.Tensor:
        """Raw network outputs for a (N, channels, crop, crop) batch, on the CPU."""
        with torch.inference_mode():
            return self.model(batch.to(self.device)).float().cpu()

    def probabilities(self, batch: torch.Tensor) -> torch.Tensor:
        """Temperature-scaled class probabilities of the network alone, (N, classes), on the CPU."""
        return torch.softmax(self.logits(batch) / self.temperature, dim=1)

    def predict(self, batch: torch.Tensor, metrics: list[dict[str, Any] | None] | None = None) -> list[Prediction]:
        """One Prediction per row of the batch (CUDA out-of-memory errors propagate untouched).

        With the scans' quality `metrics` and a model file that holds a metrics model beside the
        network (the shipped default), P(bad) combines both (a weighted mean of their log-odds) and the
        combination's review band applies (the weight and band chosen for files with one scan direction
        to a scan without a retrace, where the file has them); without them the network decides alone. Networks with a
        familiarity check also score how far each scan lies from the training scans."""
        with torch.inference_mode():
            logits, features = familiarity_check.logits_and_features(self.model, batch.to(self.device))
        network = torch.softmax(logits.float().cpu() / self.temperature, dim=1)
        bad = self.class_names.index("bad")
        p_network = network[:, bad].double().numpy()
        p_bad = p_network
        bands: tuple[float, float] | list[tuple[float, float]] = self.review_band
        parts = [{"network": float(p)} for p in p_network]
        if self.companion is not None and metrics is not None and all(m is not None for m in metrics):
            x = self.companion_features(cast("list[dict[str, Any]]", metrics))  # none is None (checked)
            p_metrics = self.companion_p_bad_of(x)
            weight, bands = self.companion_weights(x)
            p_bad = 1.0 / (1.0 + np.exp(-((1 - weight) * _logit(p_network) + weight * _logit(p_metrics))))
            parts = [{"network": float(a), "metrics model": float(b)} for a, b in zip(p_network, p_metrics)]
        probabilities = torch.from_numpy(np.stack([1 - p_bad, p_bad], axis=1))
        return to_predictions(probabilities, self.class_names, bands, parts, self.familiarity_of(features))

    def companion_features(self, metrics: list[dict[str, Any]]) -> np.ndarray:
        assert self.companion is not None, "only a model with a metrics model beside the network has one"
        return np.stack([feature_vector(m, tuple(self.companion["features"])) for m in metrics])

    def companion_p_bad_of(self, x: np.ndarray) -> np.ndarray:
        """P(bad) of the metrics model stored beside the network, for feature rows `x`."""
        assert self.companion is not None, "only a model with a metrics model beside the network has one"
        raw = model_log_odds(self.companion["arch"], self.companion_tensors, tuple(self.companion["features"]), x)
        return 1.0 / (1.0 + np.exp(-raw / float(self.companion["temperature"])))

    def companion_weights(self, x: np.ndarray) -> tuple[np.ndarray, list[tuple[float, float]]]:
        """Per scan: the metrics model's weight in the combination and the review band, those chosen for
        files with one scan direction where the scan has one and the model file has them."""
        assert self.companion is not None, "only a model with a metrics model beside the network has one"

        def weight_and_band(part: dict[str, Any]) -> tuple[float, tuple[float, float]]:
            return float(part["weight"]), (float(part["review_band"][0]), float(part["review_band"][1]))

        both = weight_and_band(self.companion)
        one = weight_and_band(self.companion["one_direction"]) if "one_direction" in self.companion else both
        alone = one_direction_rows(tuple(self.companion["features"]), x)
        chosen = [one if a else both for a in alone]
        return np.array([w for w, _ in chosen]), [band for _, band in chosen]

    def familiarity_of(self, features: torch.Tensor) -> list[dict[str, Any] | None] | None:
        """Per scan: its familiarity score, the model's limit and whether it lies beyond (None: no check)."""
        if self.familiarity is None:
            return None
        scores = familiarity_check.scores(self.familiarity_tensors, features.float().cpu())
        limit = float(self.familiarity["threshold"])
        return [{"score": float(score), "threshold": limit, "unfamiliar": bool(score > limit)} for score in scores]

    def predict_scans(self, scans: list[Scan]) -> list[Prediction]:
        """Preprocess and classify a list of scans as one batch."""
        if not scans:
            return []
        return self.predict(torch.stack([self.preprocess(scan) for scan in scans]))

    def to(self, device: str | torch.device) -> Classifier:
        self.device = resolve_device(device) if isinstance(device, str) else device
        self.model.to(self.device)
        return self


def load_network(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any], device: str) -> Classifier:
    """The classifier for a network model file already read by `load_model_file` (its weights, and the
    familiarity check and metrics model stored beside them, if any)."""
    meta = check_metadata(meta, path)
    familiarity = {k: v for k, v in tensors.items() if k.startswith(familiarity_check.TENSOR_PREFIX)}
    companion = {k[len(COMPANION_PREFIX) :]: v for k, v in tensors.items() if k.startswith(COMPANION_PREFIX)}
    weights = {
        k: v for k, v in tensors.items() if not k.startswith((familiarity_check.TENSOR_PREFIX, COMPANION_PREFIX))
    }
    model = build_network(meta, weights, path)
    torch_device = resolve_device(device)
    return Classifier(path, model.to(torch_device), meta, file_sha256(path), torch_device, familiarity, companion)


def save_classifier(
    path: str | Path, model: nn.Module, metadata: dict[str, Any], extra_tensors: dict[str, torch.Tensor] | None = None
) -> Path:
    """Write a classifier model file (weights, extra parts such as the familiarity check, checked
    metadata), atomically."""
    check_metadata(metadata, path)
    return save_model_file(path, {**model.state_dict(), **(extra_tensors or {})}, metadata)
