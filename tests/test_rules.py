"""Rules: fire on a threshold, decide, explain in words; validated when the config loads."""

from __future__ import annotations

import pytest

from afmwatch.config import ConfigError, RuleConfig, config_from_dict, load_config
from afmwatch.rules import DEFAULT_RULES, apply_rules, rule_errors

ABORTED = {
    "completeness": 118 / 256,
    "lines_acquired": 118,
    "lines_set": 256,
    "lines_missing": 138,
    "scar_fraction": 0.0,
}


def stopped_at(line: int, of: int = 256) -> dict:
    return {"completeness": line / of, "lines_acquired": line, "lines_set": of, "lines_missing": of - line}


def test_aborted_scan_is_bad_with_the_line_it_stopped_at():
    outcome = apply_rules(ABORTED)
    assert outcome.decision == "bad"
    assert outcome.rule.metric == "lines_missing"
    assert outcome.reasons == ("scan stopped at line 118 of 256",)  # the same words from completeness: once
    record = outcome.to_dict()
    assert record["decision"] == "bad"
    assert record["rule"] == {
        "metric": "lines_missing",
        "op": ">",
        "threshold": 3,
        "decision": "bad",
        "reason": "scan stopped at line {lines_acquired} of {lines_set}",
    }
    assert record["reasons"] == ["scan stopped at line 118 of 256"]


@pytest.mark.parametrize("line", [252, 240, 200])
def test_more_than_three_missing_lines_are_bad_however_near_the_end(line):
    """4 of 256 lines missing is a completeness of 98 %: still a scan that did not finish."""
    outcome = apply_rules(stopped_at(line))
    assert outcome.decision == "bad" and outcome.reasons[0] == f"scan stopped at line {line} of 256"


@pytest.mark.parametrize("line", [253, 255])
def test_one_to_three_missing_lines_go_to_review(line):
    outcome = apply_rules(stopped_at(line))
    assert outcome.decision == "review"
    assert outcome.reasons == (f"scan stopped at line {line} of 256 (nearly complete: {256 - line} lines missing)",)
    assert apply_rules(stopped_at(256)).decision is None


def test_metrics_without_line_counts_still_stop_on_completeness():
    outcome = apply_rules({"completeness": 100 / 256, "lines_acquired": 100, "lines_set": 256})
    assert outcome.decision == "bad" and outcome.rule.metric == "completeness"
    assert outcome.reasons == ("scan stopped at line 100 of 256",)


TIP_BAND = {"tip_change_start": 40, "tip_change_end": 72, "tip_change_lines": 33}


def test_clear_tip_change_band_is_bad_and_names_its_lines():
    outcome = apply_rules({**TIP_BAND, "tip_change_score": 22.0})
    assert outcome.decision == "bad" and outcome.rule.metric == "tip_change_score"
    assert outcome.reasons == ("tip changed: lines 40-72 smeared, doubled or offset (33 lines)",)


def test_weaker_tip_change_band_goes_to_review():
    outcome = apply_rules({**TIP_BAND, "tip_change_score": 12.0})
    assert outcome.decision == "review"
    assert outcome.reasons == ("tip may have changed: lines 40-72 break off from the lines around them (33 lines)",)
    quiet = {"tip_change_score": 3.0, "tip_change_lines": 0, "tip_change_start": None, "tip_change_end": None}
    assert apply_rules(quiet).decision is None


def test_bad_outranks_review_and_every_fired_rule_gives_a_reason():
    metrics = {"scar_fraction": 0.12, "saturation_fraction": 0.3, "completeness": 1.0}
    outcome = apply_rules(metrics)
    assert outcome.decision == "bad"
    assert outcome.rule.metric == "saturation_fraction"
    assert outcome.reasons == ("z range clipped: 30.0% of pixels at its top or bottom", "scars on 12% of the lines")
    assert [r.metric for r in outcome.fired] == ["saturation_fraction", "scar_fraction"]


def test_unavailable_metric_does_not_fire():
    outcome = apply_rules({"trace_retrace_mismatch": None, "completeness": 1.0})
    assert outcome.decision is None and outcome.rule is None and outcome.reasons == ()
    assert outcome.to_dict() == {"decision": None, "rule": None, "reasons": []}


@pytest.mark.parametrize(
    ("op", "value", "fired"), [("<", 1.0, False), ("<=", 1.0, True), (">", 1.0, False), (">=", 1.0, True)]
)
def test_operators_compare_at_the_threshold(op, value, fired):
    rule = RuleConfig("sq", 1.0, op, "review", "Sq {value} nm")
    assert (apply_rules({"sq": value}, [rule]).decision == "review") is fired


def test_reason_placeholders_format_numbers_readably():
    rule = RuleConfig("noise_rms", 0.5, ">", "review", "noisy: {value} nm over {threshold}; Sq {sq:.1f} nm")
    outcome = apply_rules({"noise_rms": 0.87654, "sq": 3.14159}, [rule])
    assert outcome.reasons == ("noisy: 0.877 nm over 0.5; Sq 3.1 nm",)
    bare = RuleConfig("noise_rms", 0.5)
    assert apply_rules({"noise_rms": 0.87654}, [bare]).reasons == ("noise_rms = 0.877 (> 0.5)",)


def test_default_rules_name_only_known_metrics():
    assert rule_errors(DEFAULT_RULES) == []


def test_unknown_metric_in_a_rule_is_a_config_error_naming_it(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("rules:\n  - metric: scar_fracton\n    threshold: 0.1\n    reason: scars\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert "scar_fracton" in str(caught.value)
    assert "rules[0].metric" in str(caught.value)
    assert str(path) in str(caught.value)


def test_unknown_placeholder_in_a_reason_is_a_config_error():
    with pytest.raises(ConfigError, match=r"rules\[0\]\.reason: unknown placeholder \{lines_done\}"):
        config_from_dict({"rules": [{"metric": "completeness", "threshold": 1, "op": "<", "reason": "{lines_done}"}]})


def test_configured_rules_replace_the_defaults():
    config = config_from_dict(
        {"rules": [{"metric": "sq", "threshold": 5.0, "op": ">", "decision": "review", "reason": "rough: {sq} nm"}]}
    )
    assert config.rules == (RuleConfig("sq", 5.0, ">", "review", "rough: {sq} nm"),)
    outcome = apply_rules({**ABORTED, "sq": 7.5}, config.rules)
    assert outcome.decision == "review" and outcome.reasons == ("rough: 7.5 nm",)
    assert config_from_dict({}).rules is None  # None: the defaults apply


@pytest.mark.slow
def test_daemon_records_the_rule_that_decided_in_the_sidecar(tmp_path):
    """A real `afmwatch run`: an aborted scan goes to bad/ on the default rule, a configured rule sends a
    rough scan to review, and each sidecar says which rule fired, why, and what the network said."""
    import json

    import numpy as np
    from daemon_support import (
        Daemon,
        processed_count,
        scan_bytes_file,
        sorted_files,
        tiny_model,
        wait_until,
        write_config,
    )

    from afmwatch.daemon.sidecar import sidecar_path, validate
    from afmwatch.writers import write_tiff

    model = tiny_model(tmp_path / "tiny.safetensors")
    rules = [
        {
            "metric": "completeness",
            "op": "<",
            "threshold": 0.9,
            "decision": "bad",
            "reason": "scan stopped at line {lines_acquired} of {lines_set}",
        },
    ]
    staging = tmp_path / "staging"
    clean = scan_bytes_file(staging / "clean.tif", 1, size=64)
    from afmwatch.quality import measure
    from afmwatch.readers import read_scan

    clean_sq = measure(read_scan(clean))["sq"]
    rules.append(
        {"metric": "sq", "op": ">", "threshold": 10 * clean_sq, "decision": "review", "reason": "rough: Sq {sq:.0f} nm"}
    )
    config = write_config(tmp_path, model, rules=rules)
    inbox, out = tmp_path / "inbox", tmp_path / "out"

    height = read_scan(clean).height.copy()
    height[40:] = np.nan  # the instrument stopped after 40 of 64 lines
    aborted = write_tiff(staging / "aborted.tif", height, 2.0, metadata={"lines_set": 64})
    rough = write_tiff(staging / "rough.tif", read_scan(clean).height * 100, 2.0)
    daemon = Daemon(config).wait_ready()
    try:
        for path in (clean, aborted, rough):
            path.replace(inbox / path.name)
        wait_until(lambda: processed_count(out) >= 3, what="three scans sorted")
    finally:
        assert daemon.terminate() == 0
    by_name = {f.name: f for f in sorted_files(out)}
    sidecars = {name: json.loads(sidecar_path(f).read_text()) for name, f in by_name.items()}
    for sidecar in sidecars.values():
        validate(sidecar)
        assert sidecar["network_decision"] in ("good", "bad", "review")  # what the network said, kept
        assert sidecar["quality"]["lines_set"] == 64
    stopped = sidecars["aborted.tif"]
    assert by_name["aborted.tif"].parent.name == "bad" and stopped["decision"] == "bad"
    assert stopped["rule"]["metric"] == "completeness"
    assert stopped["reasons"][0] == "scan stopped at line 40 of 64"
    assert stopped["reasons"][1].startswith(f"network: {stopped['network_decision']}, P(bad) ")
    assert stopped["quality"]["lines_acquired"] == 40
    rough = sidecars["rough.tif"]  # a review rule: more severe than good, never milder than the network's bad
    if rough["network_decision"] == "bad":
        assert rough["decision"] == "bad" and rough["rule"] is None
    else:
        assert rough["decision"] == "review" and rough["rule"]["metric"] == "sq"
        assert rough["reasons"][0].startswith("rough: Sq ")
    assert any(reason.startswith("rough: Sq ") for reason in rough["reasons"])
    clean = sidecars["clean.tif"]
    assert clean["rule"] is None and clean["decision"] == clean["network_decision"]
    assert clean["reasons"] == [f"network: {clean['decision']}, P(bad) {clean['probabilities']['bad']:.2f}"]
