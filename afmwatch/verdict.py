"""One scan, one decision: the model's prediction(s), the quality metrics and the rules, turned into the
decision that sorts the scan, its label, confidence, deciding rule and reasons in words.

Every entry point calls `decide` (`afmwatch classify`, `evaluate`, `quality`, the daemon, the
benchmarks), so a scan gets the same decision wherever it is judged. The order of severity is
good < review < bad: a rule may make the model's decision more severe, never milder (a `review` rule
does not turn the model's `bad` into `review`), unless the config sets `rules_may_soften: true`, the
behaviour before version 0.2 where any rule that fired decided. A scan unlike the scans the model was
trained on goes to `review` instead of a confident `good` or `bad`. Every verdict carries at least one
reason, the deciding one first.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from afmwatch.config import Config, RuleConfig
from afmwatch.quality import holds_one_direction
from afmwatch.rules import apply_rules, rule_to_dict


class Decision(enum.StrEnum):
    """Where a scan is sorted: the folder's name, the sidecar's and the journal's `decision`."""

    GOOD = "good"
    BAD = "bad"
    REVIEW = "review"
    FAILED = "failed"  # could not be read or classified


SEVERITY: dict[str, int] = {Decision.GOOD: 0, Decision.REVIEW: 1, Decision.BAD: 2}


class PredictionLike(Protocol):
    """What `decide` reads from a model's prediction for one frame (networks.classifier.Prediction)."""

    label: str
    decision: str
    confidence: float
    probabilities: dict[str, float]


@dataclass(frozen=True)
class Policy:
    """The settings a decision depends on, besides the model: rules, whether they may soften, frames."""

    rules: tuple[RuleConfig, ...] | None = None  # None: the default rules
    rules_may_soften: bool = False
    multiframe_rule: str = "any-bad"
    bad_needs_both_parts: bool = True

    @classmethod
    def from_config(cls, config: Config | None) -> Policy:
        if config is None:
            return cls()
        return cls(config.rules, config.rules_may_soften, config.multiframe_rule, config.bad_needs_both_parts)


@dataclass(frozen=True)
class Verdict:
    """The decision for one scan and why. `model_decision` is what the model alone said (review band
    and familiarity applied), `rule` the rule that decided (None when the model did), `reasons` in
    words, deciding reason first."""

    decision: str
    label: str | None
    confidence: float | None
    probabilities: dict[str, float] | None
    model_decision: str | None
    rule: dict[str, Any] | None
    reasons: tuple[str, ...]
    parts: dict[str, float] = field(default_factory=dict)  # P(bad) of each part of the model
    familiarity: dict[str, Any] | None = None
    frames: list[dict[str, Any]] | None = None
    multiframe_rule: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The sidecar's and `classify --json`'s decision fields."""
        return {
            "decision": self.decision,
            "label": self.label,
            "confidence": self.confidence,
            "probabilities": dict(self.probabilities) if self.probabilities is not None else None,
            "network_decision": self.model_decision,
            "model_parts": dict(self.parts) or None,
            "familiarity": self.familiarity,
            "rule": self.rule,
            "reasons": list(self.reasons),
            "frames": self.frames,
            "multiframe_rule": self.multiframe_rule,
        }


def _combine_frames(predictions: Sequence[PredictionLike], rule: str) -> tuple[str, str, float, dict[str, float]]:
    """(decision, label, confidence, probabilities) of a multi-frame file from its frames.

    any-bad: bad if any frame is bad, else review if any is, else good; majority: the most common
    frame decision (a tie is review); first: the first frame decides."""
    if rule == "first" or len(predictions) == 1:
        p = predictions[0]
        return p.decision, p.label, p.confidence, dict(p.probabilities)
    decisions = [p.decision for p in predictions]
    decision: str
    if rule == "any-bad":  # the most severe frame decides
        decision = max(decisions, key=SEVERITY.__getitem__)
    else:
        ranked = Counter(decisions).most_common()
        decision = ranked[0][0] if len(ranked) == 1 or ranked[0][1] > ranked[1][1] else Decision.REVIEW
    labels = [p.label for p in predictions]
    bad_label = decision == Decision.BAD or (decision == Decision.REVIEW and labels.count("bad") * 2 >= len(labels))
    label = "bad" if bad_label else "good"
    agreeing = [p.confidence for p in predictions if p.decision == decision] or [p.confidence for p in predictions]
    probabilities = {k: sum(p.probabilities[k] for p in predictions) / len(predictions) for k in ("good", "bad")}
    return decision, label, sum(agreeing) / len(agreeing), probabilities


def _combine_parts(predictions: Sequence[PredictionLike], rule: str) -> dict[str, float]:
    """P(bad) of each part of the model for the file, taken over its frames as its probabilities are (the
    first frame under `first`, else the mean), so that the parts and P(bad) describe the same thing."""
    frames = [dict(getattr(p, "parts", None) or {}) for p in predictions]
    if rule == "first" or len(frames) == 1:
        return frames[0]
    names = [name for name in frames[0] if all(name in f for f in frames)]
    return {name: sum(f[name] for f in frames) / len(frames) for name in names}


ONE_DIRECTION_NOTE = "one scan direction: no trace/retrace check"


def model_reason(
    decision: str, probabilities: Mapping[str, float], parts: Mapping[str, float], one_direction: bool = False
) -> str:
    """ "network: bad, P(bad) 0.97", or with a metrics model beside the network
    "model: review, P(bad) 0.55 (network 0.97, metrics model 0.13)", noting when the scan had one scan
    direction (the metrics model then judged it without the trace/retrace comparison)."""
    p_bad = probabilities["bad"]
    if len(parts) <= 1:
        source = next(iter(parts), "network")
        return f"{source}: {decision}, P(bad) {p_bad:.2f}" + (f" ({ONE_DIRECTION_NOTE})" if one_direction else "")
    inside = ", ".join(f"{name} {value:.2f}" for name, value in parts.items())
    return f"model: {decision}, P(bad) {p_bad:.2f} ({inside}" + (f"; {ONE_DIRECTION_NOTE})" if one_direction else ")")


UNFAMILIAR_REASON = "unlike the scans this model was trained on"
PART_LEANS_BAD = 0.5  # a part's P(bad) at or above this says "bad"; below it, "good"


def _parts_leaning_good(parts: Mapping[str, float]) -> dict[str, float]:
    """The parts of a model of several parts that lean good (P(bad) below 0.5); empty for a single part."""
    if len(parts) < 2:
        return {}
    return {name: p for name, p in parts.items() if p < PART_LEANS_BAD}


def _disagreement_reason(parts: Mapping[str, float], leaning_good: Mapping[str, float]) -> str:
    bad_side = ", ".join(f"{name} {p:.2f}" for name, p in parts.items() if name not in leaning_good)
    good_side = ", ".join(f"{name} {p:.2f}" for name, p in leaning_good.items())
    return f"the model's parts disagree: P(bad) {bad_side} says bad, {good_side} says good; the model alone said bad"


def _familiarity(predictions: Sequence[Any]) -> dict[str, Any] | None:
    """The least familiar frame's familiarity block (score, threshold, unfamiliar), if the model has one."""
    blocks = [p.familiarity for p in predictions if getattr(p, "familiarity", None)]
    if not blocks:
        return None
    return max(blocks, key=lambda b: b["score"] / b["threshold"] if b["threshold"] else 0.0)


def decide(
    predictions: Sequence[PredictionLike], metrics: Mapping[str, Any] | None, policy: Policy = Policy()
) -> Verdict:
    """The decision for one scan from its frames' predictions (empty: rules only), its quality metrics
    (of the first frame) and the policy. Pure: the same inputs give the same verdict everywhere."""
    outcome = apply_rules(metrics or {}, policy.rules)
    frames = multiframe = None
    familiarity = None
    parts: dict[str, float] = {}
    if predictions:
        model_decision, label, confidence, probabilities = _combine_frames(predictions, policy.multiframe_rule)
        parts = _combine_parts(predictions, policy.multiframe_rule)
        # only a model that sees the metrics judges differently without the retrace
        one_direction = "metrics model" in parts and holds_one_direction(metrics or {})
        model_reasons = [model_reason(model_decision, probabilities, parts, one_direction)]
        familiarity = _familiarity(predictions)
        if familiarity and familiarity["unfamiliar"] and model_decision != Decision.REVIEW:
            model_reasons.insert(
                0,
                f"{UNFAMILIAR_REASON} (familiarity score {familiarity['score']:.2f}, "
                f"limit {familiarity['threshold']:.2f}); the model alone said {model_decision}",
            )
            model_decision = Decision.REVIEW
        # trained on synthetic scans, a part may be confidently wrong on an instrument it never saw; a
        # good scan in bad/ costs a lab more than one in review/, so bad needs both the image and the physics
        leaning_good = _parts_leaning_good(parts) if policy.bad_needs_both_parts else {}
        if model_decision == Decision.BAD and leaning_good:
            model_reasons.insert(0, _disagreement_reason(parts, leaning_good))
            model_decision = Decision.REVIEW
        if len(predictions) > 1:
            multiframe = policy.multiframe_rule
            frames = [
                {
                    "frame": i,
                    "label": p.label,
                    "decision": p.decision,
                    "confidence": p.confidence,
                    "probabilities": dict(p.probabilities),
                }
                for i, p in enumerate(predictions)
            ]
    else:  # rules only (`afmwatch quality`): no rule fired means nothing against the scan
        model_decision, label, confidence, probabilities = Decision.GOOD, None, None, None
        model_reasons = ["no quality rule fired"]

    decision, rule, reasons = model_decision, None, list(model_reasons)
    if outcome.decision is not None:
        # a rule as severe as the model decides too: its reason (the physics) is the better explanation
        rule_wins = policy.rules_may_soften or SEVERITY[outcome.decision] >= SEVERITY[model_decision]
        if rule_wins:
            assert outcome.rule is not None  # a decision comes from a deciding rule
            decision, rule = outcome.decision, rule_to_dict(outcome.rule)
            reasons = [*outcome.reasons, *(model_reasons if predictions else [])]
        else:
            reasons = [*model_reasons, *outcome.reasons]
    if predictions and decision in (Decision.GOOD, Decision.BAD) and label != decision:
        label = decision  # a rule made it bad: the scan's best label is bad (the model's P stays as it was)
        assert probabilities is not None  # set with the predictions
        confidence = probabilities[decision]
    return Verdict(
        decision=decision,
        label=label,
        confidence=confidence,
        probabilities=probabilities,
        model_decision=model_decision if predictions else None,
        rule=rule,
        reasons=tuple(dict.fromkeys(reasons)),
        parts=parts,
        familiarity=familiarity,
        frames=frames,
        multiframe_rule=multiframe,
    )


def failed(reason: str) -> Verdict:
    """The verdict for a file that could not be read or classified."""
    return Verdict(
        decision=Decision.FAILED,
        label=None,
        confidence=None,
        probabilities=None,
        model_decision=None,
        rule=None,
        reasons=(f"could not be processed: {reason}",),
    )


def caption(verdict: Verdict, frames: int = 1, width: int = 120) -> str:
    """The preview's caption: the decision and its deciding reason in words, shortened to `width`."""
    text = f"{verdict.decision}: {verdict.reasons[0]}" if verdict.reasons else verdict.decision
    if len(text) > width:
        text = text[: width - 3].rstrip() + "..."
    return text + (f", {frames} frames" if frames > 1 else "")


def rules_block(metrics: Mapping[str, Any], policy: Policy = Policy()) -> dict[str, Any]:
    """What the rules alone say about a scan's metrics (`afmwatch quality --json`, `inspect --json`):
    the metrics, the rules' decision (None when no rule fired), the deciding rule and the reasons."""
    verdict = decide([], metrics, policy)
    fired = verdict.rule is not None
    return {
        "metrics": dict(metrics),
        "decision": verdict.decision if fired else None,
        "rule": verdict.rule,
        "reasons": list(verdict.reasons) if fired else [],
    }
