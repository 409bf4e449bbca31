"""Confidence that means something: temperature scaling (Guo et al. 2017) fitted on the validation
set, and a review band chosen from validation so that the scans the model is least sure about, and
the kinds it got wrong, go to `review/` instead of being sorted wrongly."""

from __future__ import annotations

import numpy as np

TEMPERATURE_RANGE = (0.25, 20.0)
DEFAULT_REVIEW_BAND = (0.35, 0.65)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    p = softmax(logits, temperature)[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.clip(p, 1e-12, None))))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T that minimises the validation negative log-likelihood of softmax(logits / T):
    a coarse log-spaced grid, then golden-section refinement. T > 1 softens an overconfident model.
    When validation has no mistake at all, the likelihood would always prefer a sharper model; with no
    evidence of underconfidence T then stays >= 1 (it may only soften)."""
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=int)
    if len(labels) == 0:
        return 1.0
    low, high = np.log(TEMPERATURE_RANGE)
    if (logits.argmax(axis=1) == labels).all():
        low = 0.0
    grid = np.linspace(low, high, 61)
    best = int(np.argmin([_nll(logits, labels, np.exp(t)) for t in grid]))
    a, b = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    ratio = (np.sqrt(5) - 1) / 2
    for _ in range(40):
        c, d = b - ratio * (b - a), a + ratio * (b - a)
        if _nll(logits, labels, np.exp(c)) <= _nll(logits, labels, np.exp(d)):
            b = d
        else:
            a = c
    return float(np.exp((a + b) / 2))


def choose_review_band(
    p_bad: np.ndarray,
    labels: np.ndarray,
    *,
    max_review_fraction: float = 0.2,
    min_half_width: float = 0.1,
) -> tuple[float, float]:
    """A band (low, high) on P(bad): scans inside it go to review. It widens symmetrically around 0.5
    until every validation mistake falls inside, but never sends more than `max_review_fraction` of the
    validation scans to review, and never narrower than 0.5 ± `min_half_width`."""
    p_bad = np.asarray(p_bad, dtype=np.float64)
    labels = np.asarray(labels, dtype=int)
    if len(labels) == 0:
        return DEFAULT_REVIEW_BAND
    distance = np.abs(p_bad - 0.5)  # how far from undecided
    wrong = (p_bad > 0.5).astype(int) != labels
    half = float(distance[wrong].max()) + 1e-6 if wrong.any() else 0.0
    cap = float(np.quantile(distance, max_review_fraction)) if max_review_fraction < 1 else 0.5
    half = min(half, cap)
    half = float(np.clip(max(half, min_half_width), 0.0, 0.5))
    return round(0.5 - half, 6), round(0.5 + half, 6)
