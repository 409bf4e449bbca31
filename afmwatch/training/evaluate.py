"""`afmwatch evaluate`: how the decisions of a model (with the quality rules, as the daemon decides)
measure on a labelled folder (good/ and bad/): a bootstrap interval, the decisions per true class,
every file's result, and the plots."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from afmwatch import __version__
from afmwatch.config import ReadingConfig
from afmwatch.judge import judge_paths
from afmwatch.networks.prediction import CLASS_NAMES
from afmwatch.networks.protocol import ClassifierModel
from afmwatch.quality import holds_one_direction
from afmwatch.rules import rule_to_dict
from afmwatch.training.data import collect_files, fingerprint
from afmwatch.training.metrics import bootstrap_interval, classification_metrics
from afmwatch.training.report import write_json, write_plots
from afmwatch.training.synthetic_breakdown import synthetic_breakdown
from afmwatch.verdict import Policy

log = structlog.get_logger(__name__)


def evaluate_folder(
    classifier: ClassifierModel,
    data: str | Path,
    *,
    batch_size: int = 16,
    reading: ReadingConfig | None = None,
    seed: int = 0,
    policy: Policy = Policy(),
) -> dict[str, Any]:
    """Judge every labelled file as the daemon would (`verdict.decide`: model, rules, familiarity) and
    measure: balanced accuracy of the verdicts' labels with a 95 % stratified bootstrap interval, ROC
    AUC of the model's P(bad), the decisions per true class, and the model alone for comparison."""
    data = Path(data)
    files, notes = collect_files(data)
    judged = list(
        judge_paths(classifier, [f.path for f in files], policy=policy, batch_size=batch_size, reading=reading)
    )
    rows, labels, p_bad, said_bad, unreadable = [], [], [], [], []
    for item, result in zip(files, judged):
        verdict = result.verdict
        if verdict is None:
            unreadable.append({"path": str(item.path), "reason": result.error})
            continue
        assert verdict.probabilities is not None  # the model judged every file it read
        labels.append(item.label)
        p_bad.append(verdict.probabilities["bad"])
        said_bad.append(1.0 if verdict.label == "bad" else 0.0)
        rows.append(
            {
                "path": str(item.path),
                "true": CLASS_NAMES[item.label],
                "label": verdict.label,
                "decision": verdict.decision,
                "model_decision": verdict.model_decision,
                "p_bad": round(verdict.probabilities["bad"], 6),
                "parts": verdict.parts,
                "rule": verdict.rule["metric"] if verdict.rule else None,
                "unfamiliar": bool(verdict.familiarity and verdict.familiarity["unfamiliar"]),
                # no trace/retrace comparison: the file holds one direction (or the two differ in shape)
                "one_direction": holds_one_direction(result.quality or {}),
                "reasons": list(verdict.reasons),
            }
        )
    labels_arr, p_bad_arr, said_bad_arr = np.array(labels, dtype=int), np.array(p_bad), np.array(said_bad)
    metrics = classification_metrics(labels_arr, said_bad_arr)
    metrics["roc_auc"] = classification_metrics(labels_arr, p_bad_arr)["roc_auc"]  # of the model's P(bad)
    interval = bootstrap_interval(labels_arr, said_bad_arr, seed=seed)
    model_alone = classification_metrics(labels_arr, p_bad_arr)
    decisions = [r["decision"] for r in rows]
    sorted_rows = [r for r in rows if r["decision"] != "review"]
    by_truth = {
        truth: {d: sum(1 for r in rows if r["true"] == truth and r["decision"] == d) for d in ("good", "review", "bad")}
        for truth in CLASS_NAMES
    }
    good_total = sum(by_truth["good"].values())
    report = {
        "model": {
            "name": classifier.name,
            "file": str(classifier.path),
            "sha256": classifier.sha256,
            "arch": classifier.arch,
            "temperature": classifier.temperature,
            "review_band": list(classifier.review_band),
        },
        "policy": {
            "rules": "default" if policy.rules is None else [rule_to_dict(r) for r in policy.rules],
            "rules_may_soften": policy.rules_may_soften,
            "multiframe_rule": policy.multiframe_rule,
            "bad_needs_both_parts": policy.bad_needs_both_parts,
        },
        "data": {"folder": str(data), **fingerprint(files, data), **notes, "unreadable": unreadable},
        "metrics": {
            **metrics,
            "balanced_accuracy_95ci": list(interval) if interval else None,
            "labels": labels_arr.tolist(),
            "p_bad": [round(float(p), 6) for p in p_bad_arr],
        },
        "model_alone": {k: model_alone[k] for k in ("balanced_accuracy", "accuracy", "confusion_matrix", "roc_auc")},
        "decisions": {
            "good": decisions.count("good"),
            "bad": decisions.count("bad"),
            "review": decisions.count("review"),
            "review_fraction": decisions.count("review") / len(decisions) if decisions else None,
            "accuracy_of_sorted": (
                sum(r["decision"] == r["true"] for r in sorted_rows) / len(sorted_rows) if sorted_rows else None
            ),
            "by_truth": by_truth,
            "good_sorted_bad_fraction": by_truth["good"]["bad"] / good_total if good_total else None,
            "decided_by_rule": sum(1 for r in rows if r["rule"]),
            "unfamiliar": sum(1 for r in rows if r["unfamiliar"]),
            "one_direction": sum(1 for r in rows if r["one_direction"]),
        },
        # on a synthetic set (its manifest.json): decisions per fault, per surface and by how faults show
        "synthetic": synthetic_breakdown(rows, data),
        "files": rows,
        "afmwatch_version": __version__,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    log.info(
        "evaluated",
        model=classifier.name,
        files=len(rows),
        unreadable=len(unreadable),
        balanced_accuracy=metrics["balanced_accuracy"],
        roc_auc=metrics["roc_auc"],
    )
    return report


def write_evaluation(report: dict[str, Any], out: str | Path) -> dict[str, Path]:
    """evaluation.json, confusion.png and roc.png in folder `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"report": out / "evaluation.json", "confusion": out / "confusion.png", "roc": out / "roc.png"}
    if report["metrics"]["count"]:
        write_plots(
            report["metrics"],
            list(CLASS_NAMES),
            paths,
            f"{report['model']['name']} on {Path(report['data']['folder']).name}",
        )
    write_json(report, paths["report"])
    return paths
