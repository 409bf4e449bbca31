"""`afmwatch evaluate`: a model's metrics on a labelled folder (good/ and bad/), with a bootstrap
interval, what the review band does, every file's result, and the plots."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from afmwatch import __version__
from afmwatch.config import ReadingConfig
from afmwatch.networks.classifier import Classifier, classify_paths
from afmwatch.training.data import CLASS_NAMES, collect_files, fingerprint
from afmwatch.training.metrics import bootstrap_interval, classification_metrics
from afmwatch.training.report import write_json, write_plots

log = structlog.get_logger(__name__)


def evaluate_folder(
    classifier: Classifier, data: str | Path, *, batch_size: int = 16,
    reading: ReadingConfig | None = None, seed: int = 0,
) -> dict[str, Any]:
    """Classify every labelled file and measure: metrics at the 0.5 threshold, a 95 % stratified
    bootstrap interval of balanced accuracy, and the decisions with the review band applied."""
    data = Path(data)
    files, notes = collect_files(data)
    results = list(classify_paths(classifier, [f.path for f in files], batch_size=batch_size, reading=reading))
    rows, labels, p_bad, unreadable = [], [], [], []
    for item, result in zip(files, results):
        if result.prediction is None:
            unreadable.append({"path": str(item.path), "reason": result.error})
            continue
        prediction = result.prediction
        labels.append(item.label)
        p_bad.append(prediction.probabilities["bad"])
        rows.append({"path": str(item.path), "true": CLASS_NAMES[item.label], "label": prediction.label,
                     "decision": prediction.decision, "p_bad": round(prediction.probabilities["bad"], 6)})
    labels_arr, p_bad_arr = np.array(labels, dtype=int), np.array(p_bad)
    metrics = classification_metrics(labels_arr, p_bad_arr)
    interval = bootstrap_interval(labels_arr, p_bad_arr, seed=seed)
    decisions = [r["decision"] for r in rows]
    sorted_rows = [r for r in rows if r["decision"] != "review"]
    report = {
        "model": {"name": classifier.name, "file": str(classifier.path), "sha256": classifier.sha256,
                  "arch": classifier.arch, "temperature": classifier.temperature,
                  "review_band": list(classifier.review_band)},
        "data": {"folder": str(data), **fingerprint(files, data), **notes, "unreadable": unreadable},
        "metrics": {**metrics, "balanced_accuracy_95ci": list(interval) if interval else None,
                    "labels": labels_arr.tolist(), "p_bad": [round(float(p), 6) for p in p_bad_arr]},
        "decisions": {
            "good": decisions.count("good"), "bad": decisions.count("bad"), "review": decisions.count("review"),
            "review_fraction": decisions.count("review") / len(decisions) if decisions else None,
            "accuracy_of_sorted": (sum(r["decision"] == r["true"] for r in sorted_rows) / len(sorted_rows)
                                   if sorted_rows else None),
        },
        "files": rows,
        "afmwatch_version": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    log.info("evaluated", model=classifier.name, files=len(rows), unreadable=len(unreadable),
             balanced_accuracy=metrics["balanced_accuracy"], roc_auc=metrics["roc_auc"])
    return report


def write_evaluation(report: dict[str, Any], out: str | Path) -> dict[str, Path]:
    """evaluation.json, confusion.png and roc.png in folder `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"report": out / "evaluation.json", "confusion": out / "confusion.png", "roc": out / "roc.png"}
    if report["metrics"]["count"]:
        write_plots(report["metrics"], list(CLASS_NAMES), paths, f"{report['model']['name']} on {Path(report['data']['folder']).name}")
    write_json(report, paths["report"])
    return paths
