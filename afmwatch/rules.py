"""Rules on the quality metrics: when a metric crosses a threshold, decide bad or review, and say why.

A rule is a `RuleConfig` (metric, op, threshold, decision, reason). The reason is a sentence with
placeholders for any metric, e.g. "scan stopped at line {lines_acquired} of {lines_set}", plus
{value}, {threshold} and {metric} for the rule's own; floats print with 3 significant digits unless
the placeholder gives a format ("{scar_fraction:.0%}"). A rule whose metric is unavailable for a scan
(no retrace, no pixel size) does not fire. "bad" outranks "review"; the first rule in order with the
winning decision is the one recorded. How the rules' decision and the model's combine is
`afmwatch.verdict.decide`'s job (a rule makes a decision more severe, never milder).
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import Strict

from afmwatch.quality import METRICS

OWN_FIELDS = ("value", "threshold", "metric")


@dataclass(frozen=True)
class RuleConfig:
    """A rule on a quality metric: when `metric` `op` `threshold`, decide `decision` because `reason`
    (the `rules:` list of the config; checked by `rule_errors` when the config loads)."""

    # Strict: the config loader (pydantic) takes YAML's own types, `threshold: "5"` is an error
    metric: Annotated[str, Strict()]
    threshold: Annotated[float, Strict()]
    op: Literal["<", "<=", ">", ">="] = ">"
    decision: Literal["bad", "review"] = "bad"
    reason: Annotated[str, Strict()] = ""


# tip_change_score: of 2000 good synthetic scans none is above 11.9 and 4 above 10, of the real samples
# none above 6.5; above 15, 32 % of the generator's bad tip changes (README, Tip changes)
TIP_CHANGE_BAD = 15.0
TIP_CHANGE_REVIEW = 10.0

DEFAULT_RULES: tuple[RuleConfig, ...] = (
    # Four or more missing lines are a blank band a microscopist sees at once: the scan did not finish and
    # is scanned again; one to three are often the operator stopping during the last lines.
    RuleConfig("lines_missing", 3, ">", "bad", "scan stopped at line {lines_acquired} of {lines_set}"),
    RuleConfig(
        "lines_missing",
        0,
        ">",
        "review",
        "scan stopped at line {lines_acquired} of {lines_set} (nearly complete: {lines_missing} lines missing)",
    ),
    # the same decision for metrics that carry no line counts
    RuleConfig("completeness", 0.9, "<", "bad", "scan stopped at line {lines_acquired} of {lines_set}"),
    RuleConfig("saturation_fraction", 0.02, ">", "bad", "z range clipped: {value:.1%} of pixels at its top or bottom"),
    RuleConfig(
        "saturation_fraction", 0.002, ">", "review", "z range may clip: {value:.2%} of pixels at its top or bottom"
    ),
    RuleConfig(
        "constant_run_fraction", 0.05, ">", "bad", "z signal stood still on {value:.0%} of the image (lost contact)"
    ),
    RuleConfig(
        "constant_run_fraction", 0.01, ">", "review", "z signal stood still on {value:.1%} of the image (lost contact?)"
    ),
    RuleConfig("scar_fraction", 0.20, ">", "bad", "scars on {value:.0%} of the lines"),
    RuleConfig("scar_fraction", 0.08, ">", "review", "scars on {value:.0%} of the lines"),
    # thresholds from synthetic tip changes against good synthetic and real scans (README, Quality metrics)
    RuleConfig(
        "tip_change_score",
        TIP_CHANGE_BAD,
        ">",
        "bad",
        "tip changed: lines {tip_change_start}-{tip_change_end} smeared, doubled or offset ({tip_change_lines} lines)",
    ),
    RuleConfig(
        "tip_change_score",
        TIP_CHANGE_REVIEW,
        ">",
        "review",
        "tip may have changed: lines {tip_change_start}-{tip_change_end} break off from the lines around them "
        "({tip_change_lines} lines)",
    ),
    RuleConfig(
        "trace_retrace_mismatch",
        1.25,
        ">",
        "review",
        "trace and retrace disagree ({value:.2f} x the roughness): the tip may have lost the surface",
    ),
    RuleConfig(
        "signal_to_noise",
        1.5,
        "<",
        "review",
        "looks blank: roughness only {value:.2f} x the noise (tip not engaged, or an empty area)",
    ),
    RuleConfig(
        "line_artefact_ratio", 5.0, ">", "review", "strong line noise: lines differ {value:.1f} x more than pixels"
    ),
)

_COMPARE = {
    "<": lambda value, threshold: value < threshold,
    "<=": lambda value, threshold: value <= threshold,
    ">": lambda value, threshold: value > threshold,
    ">=": lambda value, threshold: value >= threshold,
}


@dataclass(frozen=True)
class RuleOutcome:
    """What the rules said about one scan: the deciding rule (None if none fired), its decision,
    and one plain-language reason per fired rule (deciding rule first)."""

    decision: str | None
    rule: RuleConfig | None
    fired: tuple[RuleConfig, ...]
    reasons: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """The sidecar's `rule` block: the deciding rule as data, or None."""
        if self.rule is None:
            return {"decision": None, "rule": None, "reasons": []}
        return {
            "decision": self.decision,
            "rule": rule_to_dict(self.rule),
            "reasons": list(self.reasons),
        }


def rule_to_dict(rule: RuleConfig) -> dict[str, Any]:
    return {
        "metric": rule.metric,
        "op": rule.op,
        "threshold": rule.threshold,
        "decision": rule.decision,
        "reason": rule.reason,
    }


class _ReasonFormatter(string.Formatter):
    """str.format, but a bare float placeholder prints with 3 significant digits and None as n/a."""

    def format_field(self, value: Any, format_spec: str) -> str:
        if value is None:
            return "n/a"
        if not format_spec and isinstance(value, float):
            return f"{value:.3g}"
        return super().format_field(value, format_spec)


_FORMATTER = _ReasonFormatter()


def reason_text(rule: RuleConfig, metrics: Mapping[str, Any]) -> str:
    """The rule's reason with its placeholders filled (a default sentence when it has none)."""
    value = metrics.get(rule.metric)
    template = rule.reason or "{metric} = {value} ({op} {threshold})"
    fields = dict(metrics, value=value, threshold=rule.threshold, metric=rule.metric, op=rule.op)
    return _FORMATTER.vformat(template, (), fields)


def fires(rule: RuleConfig, metrics: Mapping[str, Any]) -> bool:
    """True when the rule's metric is known for this scan and crosses the threshold."""
    value = metrics.get(rule.metric)
    return value is not None and _COMPARE[rule.op](float(value), rule.threshold)


def apply_rules(metrics: Mapping[str, Any], rules: Iterable[RuleConfig] | None = None) -> RuleOutcome:
    """Evaluate `rules` (DEFAULT_RULES when None) on one scan's metrics; bad outranks review."""
    rules = DEFAULT_RULES if rules is None else tuple(rules)
    strongest: dict[str, RuleConfig] = {}  # per metric: a milder rule on the same metric says nothing new
    for rule in rules:
        if fires(rule, metrics):
            held = strongest.get(rule.metric)
            if held is None or (rule.decision == "bad" and held.decision != "bad"):
                strongest[rule.metric] = rule
    fired = tuple(strongest.values())
    deciding = next((r for r in fired if r.decision == "bad"), None) or next(iter(fired), None)
    if deciding is None:
        return RuleOutcome(None, None, (), ())
    ordered = (deciding,) + tuple(r for r in fired if r is not deciding)
    reasons = tuple(dict.fromkeys(reason_text(r, metrics) for r in ordered))
    return RuleOutcome(deciding.decision, deciding, ordered, reasons)


def rule_errors(rules: Iterable[RuleConfig], key: str = "rules") -> list[str]:
    """Every problem with configured rules, each naming the rule: unknown metric, unknown placeholder."""
    errors = []
    known = set(METRICS) | set(OWN_FIELDS) | {"op"}
    for i, rule in enumerate(rules):
        if rule.metric not in METRICS:
            errors.append(f"{key}[{i}].metric: unknown metric {rule.metric!r} (known: {', '.join(METRICS)})")
        try:
            names = {field for _, field, _, _ in string.Formatter().parse(rule.reason) if field is not None}
        except ValueError as exc:
            errors.append(f"{key}[{i}].reason: not a valid reason text ({exc})")
            continue
        for name in sorted(names):
            base = name.split(".")[0].split("[")[0]
            if base not in known:
                errors.append(f"{key}[{i}].reason: unknown placeholder {{{name}}} (use a metric name or value)")
    return errors
