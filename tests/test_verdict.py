"""`afmwatch.verdict`: one decision from the model, the metrics and the rules; rules only make it more severe."""

from __future__ import annotations

import pytest

from afmwatch.config import RuleConfig
from afmwatch.networks.prediction import Prediction
from afmwatch.verdict import Policy, caption, decide, failed, rules_block

CLEAN = {
    "completeness": 1.0,
    "lines_acquired": 256,
    "lines_set": 256,
    "scar_fraction": 0.0,
    "trace_retrace_mismatch": 0.2,  # a file with both directions
}
ONE_DIRECTION = {name: value for name, value in CLEAN.items() if name != "trace_retrace_mismatch"}
SCARRED = {**CLEAN, "scar_fraction": 0.12}  # fires the default review rule on scars (8-20 % of lines)
ABORTED = {**CLEAN, "completeness": 100 / 256, "lines_acquired": 100}


def prediction(decision: str, p_bad: float, parts=None, familiarity=None) -> Prediction:
    label = "bad" if p_bad > 0.5 else "good"
    return Prediction(
        label,
        decision,
        max(p_bad, 1 - p_bad),
        {"good": 1 - p_bad, "bad": p_bad},
        parts or {"network": p_bad},
        familiarity,
    )


def test_the_network_decides_when_no_rule_fires_and_says_so_in_words():
    verdict = decide([prediction("bad", 0.97)], CLEAN)
    assert verdict.decision == verdict.label == "bad" and verdict.rule is None
    assert verdict.reasons == ("network: bad, P(bad) 0.97",)
    good = decide([prediction("good", 0.02)], CLEAN)
    assert good.decision == "good" and good.reasons == ("network: good, P(bad) 0.02",)


def test_the_reason_says_when_the_metrics_judged_a_scan_with_one_direction():
    """An operator sees that the trace/retrace check could not apply (the file held one direction)."""
    parts = {"network": 0.10, "metrics model": 0.12}
    alone = decide([prediction("good", 0.11, parts)], ONE_DIRECTION)
    assert alone.reasons == (
        "model: good, P(bad) 0.11 (network 0.10, metrics model 0.12; one scan direction: no trace/retrace check)",
    )
    both = decide([prediction("good", 0.11, parts)], CLEAN)
    assert both.reasons == ("model: good, P(bad) 0.11 (network 0.10, metrics model 0.12)",)
    network = decide([prediction("good", 0.10)], ONE_DIRECTION)  # the network alone never sees the retrace
    assert network.reasons == ("network: good, P(bad) 0.10",)
    metrics_only = decide([prediction("good", 0.12, {"metrics model": 0.12})], ONE_DIRECTION)
    assert metrics_only.reasons == ("metrics model: good, P(bad) 0.12 (one scan direction: no trace/retrace check)",)


def test_a_review_rule_never_softens_the_networks_bad():
    verdict = decide([prediction("bad", 0.97)], SCARRED)
    assert verdict.decision == "bad" and verdict.rule is None
    assert verdict.reasons[0] == "network: bad, P(bad) 0.97" and "scars" in verdict.reasons[1]
    softened = decide([prediction("bad", 0.97)], SCARRED, Policy(rules_may_soften=True))
    assert softened.decision == "review" and softened.rule["metric"] == "scar_fraction"


def test_a_rule_makes_a_decision_more_severe_and_leads_the_reasons():
    reviewed = decide([prediction("good", 0.1)], SCARRED)
    assert reviewed.decision == "review" and reviewed.label == "good"
    assert reviewed.rule["metric"] == "scar_fraction" and reviewed.reasons[0].startswith("scars on")
    assert reviewed.reasons[1] == "network: good, P(bad) 0.10"
    aborted = decide([prediction("good", 0.1)], ABORTED)
    assert aborted.decision == aborted.label == "bad" and aborted.model_decision == "good"
    assert "stopped at line 100 of 256" in aborted.reasons[0]
    assert aborted.confidence == pytest.approx(0.1)  # the model's own P(bad) stays visible


def test_configured_rules_replace_the_defaults():
    rule = RuleConfig("sq", 5.0, ">", "bad", "too rough: Sq {value:.1f} nm")
    verdict = decide([prediction("good", 0.2)], {**ABORTED, "sq": 7.5}, Policy(rules=(rule,)))
    assert verdict.decision == "bad" and verdict.reasons[0] == "too rough: Sq 7.5 nm"  # the default rules are off


def test_an_unfamiliar_scan_goes_to_review_with_the_reason():
    unfamiliar = {"score": 3.2, "threshold": 1.6, "unfamiliar": True}
    verdict = decide([prediction("bad", 0.99, familiarity=unfamiliar)], CLEAN)
    assert verdict.decision == "review" and verdict.model_decision == "review"
    assert verdict.reasons[0].startswith("unlike the scans this model was trained on")
    assert "the model alone said bad" in verdict.reasons[0]
    assert decide([prediction("good", 0.01, familiarity=unfamiliar)], ABORTED).decision == "bad"  # rules still count
    familiar = {"score": 0.9, "threshold": 1.6, "unfamiliar": False}
    assert decide([prediction("good", 0.01, familiarity=familiar)], CLEAN).decision == "good"


def test_a_combined_model_names_its_parts():
    verdict = decide([prediction("review", 0.55, parts={"network": 0.97, "metrics model": 0.13})], CLEAN)
    assert verdict.reasons == ("model: review, P(bad) 0.55 (network 0.97, metrics model 0.13)",)
    assert verdict.to_dict()["model_parts"] == {"network": 0.97, "metrics model": 0.13}


def test_a_two_part_model_sorts_bad_only_when_both_parts_lean_bad():
    split = prediction("bad", 0.88, parts={"network": 0.99, "metrics model": 0.32})
    verdict = decide([split], CLEAN)
    assert verdict.decision == "review" and verdict.model_decision == "review" and verdict.label == "bad"
    assert verdict.reasons[0] == (
        "the model's parts disagree: P(bad) network 0.99 says bad, metrics model 0.32 says good; "
        "the model alone said bad"
    )
    assert verdict.reasons[1] == "model: bad, P(bad) 0.88 (network 0.99, metrics model 0.32)"
    agreed = decide([prediction("bad", 0.9, parts={"network": 0.95, "metrics model": 0.6})], CLEAN)
    assert agreed.decision == "bad" and agreed.reasons == (
        "model: bad, P(bad) 0.90 (network 0.95, metrics model 0.60)",
    )
    # a bad rule still decides: the physics measured the fault
    assert decide([split], ABORTED).decision == "bad"
    # a network alone has nothing to disagree with, and the policy can be switched off
    assert decide([prediction("bad", 0.97)], CLEAN).decision == "bad"
    assert decide([split], CLEAN, Policy(bad_needs_both_parts=False)).decision == "bad"


def test_multiframe_rules():
    frames = [prediction("good", 0.1), prediction("bad", 0.9), prediction("good", 0.2)]
    assert decide(frames, CLEAN, Policy(multiframe_rule="any-bad")).decision == "bad"
    assert decide(frames, CLEAN, Policy(multiframe_rule="majority")).decision == "good"
    assert decide(frames, CLEAN, Policy(multiframe_rule="first")).decision == "good"
    tie = [prediction("good", 0.1), prediction("bad", 0.9)]
    assert decide(tie, CLEAN, Policy(multiframe_rule="majority")).decision == "review"
    verdict = decide(frames, CLEAN, Policy(multiframe_rule="any-bad"))
    assert verdict.label == "bad" and verdict.confidence == pytest.approx(0.9)
    assert sum(verdict.probabilities.values()) == pytest.approx(1.0)
    assert len(verdict.frames) == 3 and verdict.multiframe_rule == "any-bad"
    # the model's parts describe the file as its P(bad) does (the mean over the frames), not frame 0
    combined = [
        prediction("bad", p, parts={"network": n, "metrics model": m}) for p, n, m in ((0.8, 0.9, 0.7), (0.4, 0.5, 0.3))
    ]
    verdict = decide(combined, CLEAN, Policy(multiframe_rule="any-bad"))
    assert verdict.probabilities["bad"] == pytest.approx(0.6)
    assert verdict.to_dict()["model_parts"] == pytest.approx({"network": 0.7, "metrics model": 0.5})
    assert verdict.reasons[-1] == "model: bad, P(bad) 0.60 (network 0.70, metrics model 0.50)"
    first = decide(combined, CLEAN, Policy(multiframe_rule="first"))
    assert first.to_dict()["model_parts"] == {"network": 0.9, "metrics model": 0.7}


def test_rules_alone_and_failures_carry_reasons():
    assert rules_block(CLEAN)["decision"] is None and rules_block(CLEAN)["reasons"] == []
    block = rules_block(ABORTED)
    assert block["decision"] == "bad" and block["rule"]["metric"] == "completeness"
    assert failed("not an image").reasons == ("could not be processed: not an image",)


def test_the_caption_shows_the_reason_not_a_metric_name():
    verdict = decide([prediction("good", 0.1)], ABORTED)
    assert caption(verdict).startswith("bad: scan stopped at line 100 of 256")
    assert "completeness" not in caption(verdict)
    assert caption(decide([prediction("good", 0.03)], CLEAN), frames=4) == "good: network: good, P(bad) 0.03, 4 frames"
    assert len(caption(verdict, width=20)) == 20 and caption(verdict, width=20).endswith("...")
