"""What a classifier says about one scan: the Prediction, and the review band that turns P(bad) into a
decision. Shared by every model family (networks and metrics models) and by the verdict."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

CLASS_NAMES = ("good", "bad")


@dataclass(frozen=True)
class Prediction:
    """One scan's result. `label` is the more probable class; `decision` is "review" when P(bad)
    falls inside the model's review band; `confidence` is the probability of `label`."""

    label: str
    decision: str
    confidence: float
    probabilities: dict[str, float]
    parts: dict[str, float] = field(default_factory=dict)  # P(bad) of each part: network, metrics model
    familiarity: dict[str, Any] | None = None  # score, threshold, unfamiliar (networks with a familiarity check)


def decide(p_bad: float, review_band: tuple[float, float]) -> str:
    """good / bad / review for one probability of "bad" (the band's ends count as review)."""
    low, high = review_band
    if low <= p_bad <= high:
        return "review"
    return "bad" if p_bad > high else "good"


def to_predictions(
    probabilities: torch.Tensor,
    class_names: tuple[str, ...],
    review_band: tuple[float, float] | list[tuple[float, float]],
    parts: list[dict[str, float]] | None = None,
    familiarity: list[dict[str, Any] | None] | None = None,
) -> list[Prediction]:
    """Predictions from (N, classes) probabilities: the more probable label, its probability as the
    confidence, and the decision with the review band applied to P(bad) (one band, or one per row)."""
    bad = class_names.index("bad")
    results = []
    rows = probabilities.tolist()
    bands = review_band if isinstance(review_band, list) else [review_band] * len(rows)
    for i, row in enumerate(rows):
        label_index = max(range(len(row)), key=row.__getitem__)
        results.append(
            Prediction(
                label=class_names[label_index],
                decision=decide(row[bad], bands[i]),
                confidence=float(row[label_index]),
                probabilities={name: float(p) for name, p in zip(class_names, row)},
                parts=parts[i] if parts else {},
                familiarity=familiarity[i] if familiarity else None,
            )
        )
    return results
