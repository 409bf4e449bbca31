"""The training and evaluation report: one JSON file and PNG plots beside the model (matplotlib Agg,
no display needed): loss and accuracy curves, confusion matrix, ROC curve."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from afmwatch.durable import atomic_write, atomic_write_bytes
from afmwatch.training.metrics import roc_curve


def report_paths(model_path: str | Path) -> dict[str, Path]:
    """`NAME.safetensors` -> NAME.report.json, NAME.curves.png, NAME.confusion.png, NAME.roc.png."""
    model_path = Path(model_path)
    stem = model_path.name.split(".")[0]
    return {
        kind: model_path.with_name(f"{stem}.{kind}.{ext}")
        for kind, ext in (("report", "json"), ("curves", "png"), ("confusion", "png"), ("roc", "png"))
    }


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure(figsize=(5, 4), dpi=100, layout="constrained")


def _save(fig: Any, path: Path) -> None:
    with atomic_write(path) as handle:
        fig.savefig(handle, format="png")


def plot_curves(history: list[dict[str, Any]], path: Path) -> None:
    fig = _figure()
    fig.set_size_inches(9, 3.6)
    ax_loss, ax_acc = fig.subplots(1, 2)
    epochs = [h["epoch"] for h in history]
    for key, style in (("train", "-"), ("val", "--")):
        loss = [h[f"{key}_loss"] for h in history]
        if any(v is not None for v in loss):
            ax_loss.plot(epochs, [np.nan if v is None else v for v in loss], style, label=key)
    accuracy = {
        "train accuracy": "train_accuracy",
        "val accuracy": "val_accuracy",
        "val balanced accuracy": "val_balanced_accuracy",
    }
    for label, key in accuracy.items():
        values = [h[key] for h in history]
        if any(v is not None for v in values):
            ax_acc.plot(epochs, [np.nan if v is None else v for v in values], label=label)
    ax_loss.set(xlabel="epoch", ylabel="loss (class-weighted cross-entropy)", title="Loss")
    ax_acc.set(xlabel="epoch", ylabel="fraction", title="Accuracy", ylim=(0, 1.02))
    ax_loss.legend()
    ax_acc.legend(loc="lower right")
    _save(fig, path)


def plot_confusion(matrix: list[list[int]], class_names: list[str], path: Path, title: str) -> None:
    fig = _figure()
    ax = fig.subplots()
    values = np.asarray(matrix)
    ax.imshow(values, cmap="Blues")
    for (i, j), count in np.ndenumerate(values):
        ax.text(
            j,
            i,
            str(count),
            ha="center",
            va="center",
            color="white" if count > values.max() / 2 else "black",
            fontsize=14,
        )
    ax.set_xticks(range(len(class_names)), class_names)
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    _save(fig, path)


def plot_roc(labels: list[int], p_bad: list[float], auc: float | None, path: Path, title: str) -> None:
    fig = _figure()
    ax = fig.subplots()
    fpr, tpr = roc_curve(np.asarray(labels) == 1, np.asarray(p_bad))
    ax.plot(fpr, tpr, drawstyle="steps-post", label=f"AUC = {auc:.3f}" if auc is not None else "AUC undefined")
    ax.plot([0, 1], [0, 1], ":", color="grey", label="chance")
    ax.set(
        xlabel="false positive rate (good called bad)",
        ylabel="true positive rate (bad found)",
        title=title,
        xlim=(0, 1),
        ylim=(0, 1.02),
    )
    ax.legend(loc="lower right")
    _save(fig, path)


def write_plots(metrics: dict[str, Any], class_names: list[str], paths: dict[str, Path], what: str) -> None:
    """Confusion matrix and ROC for a metrics block that holds `labels` and `p_bad`."""
    plot_confusion(metrics["confusion_matrix"], class_names, paths["confusion"], f"Confusion matrix ({what})")
    plot_roc(metrics["labels"], metrics["p_bad"], metrics["roc_auc"], paths["roc"], f"ROC ({what})")


def write_json(data: dict[str, Any], path: Path) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2, default=str) + "\n").encode())


def write_report(report: dict[str, Any], model_path: str | Path) -> dict[str, Path]:
    """The training report and its plots beside the model file; returns their paths."""
    paths = report_paths(model_path)
    report["files"] = {kind: str(path) for kind, path in paths.items()}
    if report["history"]:
        plot_curves(report["history"], paths["curves"])
    else:  # no epochs (the metrics models): no curves to draw
        del report["files"]["curves"]
    if report.get("validation"):
        write_plots(report["validation"], report["class_names"], paths, "validation")
    else:
        del report["files"]["confusion"], report["files"]["roc"]
    write_json(report, paths["report"])
    return paths
