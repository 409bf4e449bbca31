"""How familiar a scan looks to a network: an out-of-distribution score from its features.

The score is the Mahalanobis distance of the scan's penultimate-layer features (the input of the
network's last linear layer) from the nearest class mean of the training scans, with one covariance
shared by both classes (Lee et al., NeurIPS 2018), divided by the square root of the feature count so
that it reads about 1 for a typical training scan. The limit is a high quantile (default 99 %) of the
scores of held-out scans, so about 1 % of scans like the training data exceed it, and a scan from
another world (a new instrument, a sample kind never seen) exceeds it by far. The means, the
precision matrix and the limit are stored in the model file beside the weights (`familiarity.*`).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from afmwatch.networks.architectures import last_linear

TENSOR_PREFIX = "familiarity."
DEFAULT_QUANTILE = 0.99
MIN_SCANS = 40  # fewer training scans than this give no usable covariance: no familiarity check


class Inputs(Protocol):
    """Network inputs that can be taken a slice at a time: a (N, C, H, W) tensor, or a lazy stack that
    builds each slice when asked (thousands of 384-px scans stacked at once would double training's memory)."""

    def __len__(self) -> int: ...

    def __getitem__(self, rows: slice) -> torch.Tensor: ...


def logits_and_features(model: nn.Module, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The network's logits and the features its last linear layer sees, in one forward pass."""
    seen: list[torch.Tensor] = []
    _, _, head = last_linear(model)
    handle = head.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0].detach()))
    try:
        logits = model(batch)
    finally:
        handle.remove()
    return logits, seen[0].flatten(1)


def fit(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    held_out_features: np.ndarray,
    quantile: float = DEFAULT_QUANTILE,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Class means and shared precision from training features; the limit from held-out features.

    The covariance is shrunk towards a scaled identity (Ledoit-Wolf), so that a few hundred scans and a
    few hundred features still give a well-conditioned precision matrix."""
    from sklearn.covariance import LedoitWolf

    x = np.asarray(train_features, dtype=np.float64)
    labels = np.asarray(train_labels)
    classes = sorted(set(labels.tolist()))
    means = np.stack([x[labels == c].mean(axis=0) for c in classes])
    centred = np.concatenate([x[labels == c] - means[i] for i, c in enumerate(classes)])
    precision = LedoitWolf(assume_centered=True).fit(centred).precision_
    tensors = {
        f"{TENSOR_PREFIX}means": torch.from_numpy(means).float(),
        f"{TENSOR_PREFIX}precision": torch.from_numpy(precision).float(),
    }
    held_out = scores(tensors, held_out_features)
    limit = float(np.quantile(held_out, quantile))
    meta = {
        "method": "mahalanobis, shared covariance (Ledoit-Wolf), nearest class",
        "quantile": quantile,
        "threshold": limit,
        "held_out_scans": int(len(held_out)),
        "held_out_median": float(np.median(held_out)),
        "features": int(x.shape[1]),
    }
    return tensors, meta


def scores(tensors: dict[str, torch.Tensor], features: np.ndarray | torch.Tensor) -> np.ndarray:
    """One score per row of features: Mahalanobis distance to the nearest class mean / sqrt(features)."""
    means = tensors[f"{TENSOR_PREFIX}means"].double().numpy()
    precision = tensors[f"{TENSOR_PREFIX}precision"].double().numpy()
    x = features.double().numpy() if isinstance(features, torch.Tensor) else np.asarray(features, np.float64)
    d2 = []
    for mean in means:
        diff = x - mean
        d2.append(np.einsum("ij,jk,ik->i", diff, precision, diff))
    nearest = np.maximum(np.min(np.stack(d2, axis=1), axis=1), 0.0)
    return np.sqrt(nearest / x.shape[1])


def features_of(model: nn.Module, inputs: Inputs, batch_size: int = 64) -> np.ndarray:
    """Penultimate-layer features of `inputs` (N, C, H, W) in evaluation mode, batch by batch."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    chunks = []
    try:
        with torch.inference_mode():
            for start in range(0, len(inputs), batch_size):
                _, features = logits_and_features(model, inputs[start : start + batch_size].to(device))
                chunks.append(features.float().cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(chunks) if chunks else np.zeros((0, 0), dtype=np.float32)


def fit_for_model(
    model: nn.Module,
    train_inputs: Inputs,
    train_labels: np.ndarray,
    held_out_inputs: Inputs,
    quantile: float = DEFAULT_QUANTILE,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """The familiarity check of a trained network (None when there are too few scans to fit it)."""
    if len(train_inputs) < MIN_SCANS or len(held_out_inputs) < 10 or len(set(np.asarray(train_labels).tolist())) < 2:
        return None
    return fit(features_of(model, train_inputs), train_labels, features_of(model, held_out_inputs), quantile)
