"""One model from a network and a metrics model: the shipped default's "network + physics".

The network sees the image; the metrics model sees the quality metrics (scars, tip changes, noise,
completeness, ...), which transfer from synthetic to real scans more directly than pixels do. The
combined P(bad) is a weighted mean of their log-odds, `(1 - w) * network + w * metrics`, with `w`
chosen on labelled scans that neither model was trained on (lowest log-loss, or given), and a review
band chosen for the combination on the same scans. Both parts are stored in one model file (the
metrics model's arrays as `companion.*` tensors), so the store, promote, rollback and the daemon's
hot reload treat it as any other model.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import structlog
import torch

from afmwatch.config import ReadingConfig
from afmwatch.judge import judge_paths
from afmwatch.networks.classifier import COMPANION_PREFIX, Classifier
from afmwatch.networks.families import load_classifier
from afmwatch.networks.metrics_model import MetricsClassifier, feature_vector, has_one_direction_model
from afmwatch.networks.model_file import ModelError, load_model_file, save_model_file
from afmwatch.quality import holds_one_direction, measure
from afmwatch.readers import read_frames
from afmwatch.training.calibration import choose_review_band
from afmwatch.training.data import collect_files, fingerprint
from afmwatch.training.metrics import classification_metrics

log = structlog.get_logger(__name__)

WEIGHTS = tuple(round(w, 2) for w in np.linspace(0.0, 1.0, 21))


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


def _log_loss(p_bad: np.ndarray, labels: np.ndarray) -> float:
    p = np.clip(p_bad, 1e-7, 1 - 1e-7)
    return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))


def mix(p_network: np.ndarray, p_metrics: np.ndarray, weight: float) -> np.ndarray:
    """The combined P(bad), as `Classifier.predict` computes it."""
    z = (1 - weight) * _logit(p_network) + weight * _logit(p_metrics)
    return 1.0 / (1.0 + np.exp(-z))


def part_probabilities(
    network: Classifier,
    metrics_model: MetricsClassifier,
    data: str | Path,
    reading: ReadingConfig | None = None,
    batch_size: int = 32,
) -> dict[str, Any]:
    """P(bad) of each part for every readable labelled scan under `data`: the network's as `classify`
    computes it (`judge_paths`), the metrics model's from the same scan's quality metrics, and (where
    the metrics model has a one-direction model) the metrics model's for the scan measured without its
    retrace, as a file that holds one direction would be ("metrics_one_direction")."""
    files, _ = collect_files(data)
    task_reading = network.reading_config(reading)
    judged = judge_paths(network, [f.path for f in files], reading=reading, batch_size=batch_size)
    labels, p_network, rows, alone_rows, unreadable = [], [], [], [], []
    one_direction = has_one_direction_model(metrics_model.tensors)
    for item, result in zip(files, judged):
        if result.verdict is None or result.verdict.probabilities is None or result.quality is None:
            unreadable.append({"path": str(item.path), "reason": result.error})
            continue
        labels.append(item.label)
        p_network.append(result.verdict.probabilities["bad"])
        rows.append(feature_vector(result.quality, metrics_model.features))
        if one_direction:
            alone = result.quality
            if not holds_one_direction(alone):  # measured with its retrace: again without it
                alone = measure(read_frames(item.path, task_reading)[0])
            alone_rows.append(feature_vector(alone, metrics_model.features))

    def p_metrics(x: list[np.ndarray]) -> np.ndarray:
        if not x:
            return np.zeros(0)
        return np.asarray(metrics_model.probabilities(torch.from_numpy(np.stack(x)))[:, 1].numpy(), dtype=np.float64)

    return {
        "labels": np.array(labels, dtype=int),
        "network": np.array(p_network),
        "metrics": p_metrics(rows),
        "metrics_one_direction": p_metrics(alone_rows) if one_direction else None,
        "unreadable": unreadable,
        "files": files,
    }


def choose_combination(
    p_network: np.ndarray, p_metrics: np.ndarray, labels: np.ndarray, weight: float | None
) -> dict[str, Any]:
    """The metrics model's weight (lowest log-loss, unless given) and the review band for the combined
    P(bad) of these scans, with how each part and the combination score on them."""
    losses = {w: _log_loss(mix(p_network, p_metrics, w), labels) for w in WEIGHTS}
    chosen = float(weight) if weight is not None else min(losses, key=losses.__getitem__)
    combined = mix(p_network, p_metrics, chosen)
    band = choose_review_band(combined, labels)
    in_band = (combined >= band[0]) & (combined <= band[1])

    def summary(p: np.ndarray) -> dict[str, Any]:
        m = classification_metrics(labels, p)
        return {k: m[k] for k in ("balanced_accuracy", "accuracy", "roc_auc", "confusion_matrix")} | {
            "log_loss": round(_log_loss(p, labels), 4)
        }

    return {
        "weight": chosen,
        "weight_chosen_by": "given" if weight is not None else "lowest log-loss on these scans",
        "log_loss_by_weight": {str(w): round(v, 4) for w, v in losses.items()},
        "review_band": list(band),
        "review_fraction": float(in_band.mean()),
        "network": summary(p_network),
        "metrics_model": summary(p_metrics),
        "combined": summary(combined),
    }


def combine_models(
    network_path: str | Path,
    metrics_path: str | Path,
    data: str | Path,
    out: str | Path,
    *,
    weight: float | None = None,
    reading: ReadingConfig | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """Write one model file holding the network and the metrics model, the weight and review band chosen
    on the labelled scans in `data`; returns the report (also stored in the file's metadata)."""
    network = load_classifier(network_path)
    metrics_model = load_classifier(metrics_path)
    if not isinstance(network, Classifier) or network.companion is not None:
        raise ModelError(network_path, "not a plain network: give a network model file without a metrics model")
    if not isinstance(metrics_model, MetricsClassifier):
        raise ModelError(metrics_path, "not a metrics model (metrics-logistic or metrics-boosted)")
    parts = part_probabilities(network, metrics_model, data, reading)
    labels = parts["labels"]
    if len(set(labels.tolist())) < 2:
        raise ValueError(f"{data}: need labelled good and bad scans to choose the weight")
    chosen = choose_combination(parts["network"], parts["metrics"], labels, weight)
    report: dict[str, Any] = {
        "data": {"folder": str(data), **fingerprint(parts["files"], Path(data)), "unreadable": parts["unreadable"]},
        **chosen,
        "network_file": {"path": str(network_path), "sha256": network.sha256, "name": network.name},
        "metrics_file": {
            "path": str(metrics_path),
            "sha256": metrics_model.sha256,
            "name": metrics_model.name,
            "arch": metrics_model.arch,
        },
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if parts["metrics_one_direction"] is not None:
        one = choose_combination(parts["network"], parts["metrics_one_direction"], labels, weight)
        report["one_direction"] = {
            k: one[k] for k in ("weight", "review_band", "review_fraction", "metrics_model", "combined")
        }
    tensors, meta = load_model_file(network_path)
    metrics_tensors, _ = load_model_file(metrics_path)
    tensors.update({COMPANION_PREFIX + k: v for k, v in metrics_tensors.items()})
    meta = dict(
        meta,
        name=name or Path(out).stem,
        companion={
            "arch": metrics_model.arch,
            "features": list(metrics_model.features),
            "temperature": metrics_model.temperature,
            "weight": report["weight"],
            "review_band": report["review_band"],
            **({"one_direction": report["one_direction"]} if "one_direction" in report else {}),
            "report": {
                k: report[k]
                for k in (
                    "weight",
                    "weight_chosen_by",
                    "review_band",
                    "review_fraction",
                    "network",
                    "metrics_model",
                    "combined",
                    "network_file",
                    "metrics_file",
                )
            },
        },
    )
    save_model_file(out, tensors, meta)
    load_classifier(out)  # it must load as written
    log.info(
        "models_combined",
        out=str(out),
        weight=report["weight"],
        review_band=report["review_band"],
        balanced_accuracy=report["combined"]["balanced_accuracy"],
    )
    return report
