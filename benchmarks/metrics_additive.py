"""An additive metrics model against the shipped logistic one (models/README.md, "Alternatives measured"):
one piecewise-linear shape per metric (degree-1 splines on 6 quantile knots, flat outside the training
range) under a balanced logistic regression, on the same scale-free metrics and training scans as the
shipped metrics model, with a one-direction twin as shipped. Scored alone and combined with the shipped
network (weight by log-loss on the held-out scans), and on the real samples (the metrics part alone).

Needs `make default-model`'s three sets and the network's evaluations on the held-out and test scans:

    .venv/bin/afmwatch evaluate --model build/default-model/network.safetensors \\
        --data build/default-model/validation --out build/default-model/evaluation-validation-network
    .venv/bin/python -m benchmarks.metrics_additive --data build/default-model

The metrics of every scan are cached beside the sets (`metrics-<set>.npz`).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import SplineTransformer

from afmwatch.config import ReadingConfig
from afmwatch.networks.metrics_model import LOGISTIC, direction_columns, feature_set, logistic_raw, one_direction_rows
from afmwatch.readers import read_scan
from afmwatch.scan import ScanError
from afmwatch.training.metrics import classification_metrics
from afmwatch.training.metrics_training import fit_model, scan_features_directions
from afmwatch.training.options import TrainOptions
from afmwatch.training.run import load_training_data

FEATURES = feature_set("scale-free")
MODELS = ("logistic", "additive C=1", "additive C=0.1")


def measured(folder: Path, cache: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Each scan's metrics with its retrace, then without it (as `afmwatch train` measures), its labels."""
    if cache.exists():
        saved = np.load(cache, allow_pickle=False)
        return saved["x"], saved["y"], [str(p) for p in saved["paths"]]
    options = TrainOptions(arch="metrics-logistic", metrics_features="scale-free", threads=2)
    prepare = partial(scan_features_directions, features=FEATURES)
    files, rows, labels, _, _ = load_training_data(folder, options, prepare, ReadingConfig(), progress=False)
    x, paths = np.stack(rows), [str(f.path) for f in files]
    np.savez(cache, x=x, y=labels, paths=np.array(paths))
    return x, labels, paths


def fit(model: str, x: np.ndarray, y: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """Log-odds of bad for new rows. "logistic" is the shipped fit itself (`fit_model`); the additive
    model fills missing metrics with the training median as that one does."""
    if model == "logistic":
        tensors, _ = fit_model(LOGISTIC, x, y)
        return partial(logistic_raw, tensors)
    x = np.where(np.isnan(x).all(axis=0), 0.0, x)
    median = np.nanmedian(x, axis=0)

    def filled(a: np.ndarray) -> np.ndarray:
        return np.where(np.isnan(a), median, a)

    shapes = SplineTransformer(degree=1, n_knots=6, knots="quantile", extrapolation="constant")
    c = float(model.split("C=")[1])
    pipeline = make_pipeline(shapes, LogisticRegression(C=c, class_weight="balanced", max_iter=5000))
    pipeline.fit(filled(x), y)
    return lambda a: pipeline.decision_function(filled(a))


def balanced_accuracy(y: np.ndarray, log_odds: np.ndarray) -> float:
    """The project's measure, labels at P(bad) 0.5."""
    return classification_metrics(y, 1 / (1 + np.exp(-log_odds)))["balanced_accuracy"]


def network_log_odds(evaluation: Path, paths: list[str]) -> np.ndarray:
    """The network's log-odds per scan from an `afmwatch evaluate` report (its part, or its P(bad))."""
    rows = {Path(r["path"]).name: r for r in json.loads(evaluation.read_text())["files"]}
    p = np.array([(rows[Path(q).name].get("parts") or {}).get("network", rows[Path(q).name]["p_bad"]) for q in paths])
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("build/default-model"))
    parser.add_argument("--validation-network", type=Path, help="network's evaluation on validation/")
    parser.add_argument("--test-network", type=Path, help="an evaluation of test/ with the network part")
    parser.add_argument(
        "--samples", type=Path, default=Path(os.environ.get("AFMWATCH_SAMPLES", "../shared/afm-samples"))
    )
    args = parser.parse_args()
    sets = {
        name: measured(args.data / name, args.data / f"metrics-{name}.npz") for name in ("train", "validation", "test")
    }
    (xt, yt, _), (xv, yv, pv), (xs, ys, ps) = sets["train"], sets["validation"], sets["test"]
    nv = network_log_odds(args.validation_network or args.data / "evaluation-validation-network/evaluation.json", pv)
    ns = network_log_odds(args.test_network or args.data / "evaluation/evaluation.json", ps)
    n = len(FEATURES)
    _, keep = direction_columns(FEATURES)
    views = {"both directions": lambda x: x[:, :n], "one direction": lambda x: x[:, n:][:, keep]}
    for model in MODELS:
        for view, cols in views.items():
            score = fit(model, cols(xt), yt)
            mv, ms = score(cols(xv)), score(cols(xs))
            weights = np.round(np.arange(0, 1.0001, 0.05), 2)
            w = min(weights, key=lambda w: log_loss(yv, 1 / (1 + np.exp(-((1 - w) * nv + w * mv)))))
            cv, cs = (1 - w) * nv + w * mv, (1 - w) * ns + w * ms
            print(
                f"{model:<15} {view:<16} alone: test ROC AUC {roc_auc_score(ys, ms):.4f}, balanced accuracy "
                f"{balanced_accuracy(ys, ms):.3f} | with the network (weight {w:.2f}): held out "
                f"{balanced_accuracy(yv, cv):.3f}, test {balanced_accuracy(ys, cs):.3f} (ROC AUC {roc_auc_score(ys, cs):.4f})"
            )
    real = sorted(p for p in args.samples.rglob("*") if p.is_file() and p.name != "MANIFEST.md")
    rows, names = [], []
    for path in real:
        try:
            rows.append(scan_features_directions(read_scan(path), FEATURES))
            names.append(path.name)
        except ScanError:
            continue  # not an image (thermal.nid)
    x = np.stack(rows)
    one_direction = one_direction_rows(FEATURES, x[:, :n])
    for model in MODELS:
        both, alone = fit(model, xt[:, :n], yt), fit(model, xt[:, n:][:, keep], yt)
        log_odds = np.where(one_direction, alone(x[:, n:][:, keep]), both(x[:, :n]))
        p_bad = 1 / (1 + np.exp(-log_odds))
        print(
            f"{model:<15} real samples, P(bad) of the metrics part: "
            + ", ".join(f"{a} {b:.2f}" for a, b in zip(names, p_bad))
        )


if __name__ == "__main__":
    main()
