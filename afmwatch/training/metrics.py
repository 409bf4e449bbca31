"""Classification metrics by hand in numpy, so what they mean is visible: confusion matrix, balanced
accuracy, per-class precision and recall, ROC curve and area, and a bootstrap interval."""

from __future__ import annotations

from typing import Any

import numpy as np


def confusion_matrix(true: np.ndarray, predicted: np.ndarray, num_classes: int = 2) -> np.ndarray:
    """Counts: rows are the true class, columns the predicted class."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(true, dtype=int), np.asarray(predicted, dtype=int)), 1)
    return matrix


def _ratio(num: float, den: float) -> float | None:
    return float(num / den) if den > 0 else None


def per_class(matrix: np.ndarray) -> tuple[list[float | None], list[float | None]]:
    """Precision (of each predicted class) and recall (of each true class); None where undefined."""
    diagonal = np.diag(matrix)
    precision = [_ratio(diagonal[i], matrix[:, i].sum()) for i in range(len(matrix))]
    recall = [_ratio(diagonal[i], matrix[i, :].sum()) for i in range(len(matrix))]
    return precision, recall


def balanced_accuracy(matrix: np.ndarray) -> float | None:
    """Mean recall over the classes present (an imbalanced set cannot flatter it)."""
    recalls = [r for r in per_class(matrix)[1] if r is not None]
    return float(np.mean(recalls)) if recalls else None


def roc_curve(is_positive: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False and true positive rates as the threshold on `score` falls (ties move together)."""
    is_positive = np.asarray(is_positive, dtype=bool)
    score = np.asarray(score, dtype=np.float64)
    order = np.argsort(-score, kind="mergesort")
    score, is_positive = score[order], is_positive[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(score)), len(score) - 1]
    tp = np.cumsum(is_positive)[last_of_tie]
    fp = (last_of_tie + 1) - tp
    positives, negatives = is_positive.sum(), (~is_positive).sum()
    tpr = np.r_[0.0, tp / positives] if positives else np.zeros(len(tp) + 1)
    fpr = np.r_[0.0, fp / negatives] if negatives else np.zeros(len(fp) + 1)
    return fpr, tpr


def roc_auc(is_positive: np.ndarray, score: np.ndarray) -> float | None:
    """Area under the ROC curve: the chance that a random positive outscores a random negative
    (ties count half). None when one class is missing."""
    is_positive = np.asarray(is_positive, dtype=bool)
    if is_positive.all() or not is_positive.any():
        return None
    fpr, tpr = roc_curve(is_positive, score)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def classification_metrics(
    true: np.ndarray, p_bad: np.ndarray, class_names: tuple[str, ...] = ("good", "bad")
) -> dict[str, Any]:
    """Everything the report shows, for labels `true` (index into class_names; 1 = bad) and the
    probability of "bad". The predicted label is the more probable class."""
    true = np.asarray(true, dtype=int)
    p_bad = np.asarray(p_bad, dtype=np.float64)
    predicted = (p_bad > 0.5).astype(int)
    matrix = confusion_matrix(true, predicted, len(class_names))
    precision, recall = per_class(matrix)
    return {
        "count": int(len(true)),
        "accuracy": _ratio(np.trace(matrix), matrix.sum()),
        "balanced_accuracy": balanced_accuracy(matrix),
        "precision": dict(zip(class_names, precision)),
        "recall": dict(zip(class_names, recall)),
        "confusion_matrix": matrix.tolist(),
        "roc_auc": roc_auc(true == 1, p_bad),
    }


def bootstrap_interval(
    true: np.ndarray,
    p_bad: np.ndarray,
    statistic: str = "balanced_accuracy",
    resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of a metric, resampling within each class (stratified)."""
    true = np.asarray(true, dtype=int)
    p_bad = np.asarray(p_bad, dtype=np.float64)
    if len(true) < 2:
        return None
    rng = np.random.default_rng(seed)
    by_class = [np.flatnonzero(true == c) for c in np.unique(true)]
    values = []
    for _ in range(resamples):
        picked = np.concatenate([rng.choice(idx, size=len(idx), replace=True) for idx in by_class])
        value = classification_metrics(true[picked], p_bad[picked])[statistic]
        if value is not None:
            values.append(value)
    if not values:
        return None
    tail = (1 - level) / 2 * 100
    return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))
