"""Rules, what if: which scans would change decision under other thresholds, and saving the rules.

Every sorted scan's stored metrics and model output (`scan_index.judged`, copied from its sidecar)
go through `afmwatch.verdict.decide` twice, with the rules in force and with the proposed ones, so
only the rule change shows (not an older model or older rules the scan was sorted with). Nothing
moves: a saved rule set applies to scans sorted after the daemon reloads (SIGHUP).
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from afmwatch.config import Config, ConfigError, config_from_dict
from afmwatch.durable import atomic_write_bytes
from afmwatch.rules import DEFAULT_RULES, RuleConfig, rule_to_dict
from afmwatch.verdict import Policy, decide

MAX_LISTED = 200


@dataclass
class StoredPrediction:
    """One frame's model output as the sidecar stored it (what `decide` reads from a Prediction)."""

    label: str
    decision: str
    confidence: float
    probabilities: dict[str, float]
    parts: dict[str, float] = field(default_factory=dict)
    familiarity: dict[str, Any] | None = None


def rules_in_force(config: Config) -> tuple[RuleConfig, ...]:
    return DEFAULT_RULES if config.rules is None else config.rules


def parse_rules(data: Any, source: str = "the page") -> tuple[RuleConfig, ...]:
    """Rules from the page's JSON, checked as the config checks them (ConfigError names the rule)."""
    config = config_from_dict({"rules": data}, source)
    assert config.rules is not None  # given above
    return config.rules


def _predictions(judged: dict[str, Any]) -> list[StoredPrediction]:
    probabilities = judged.get("probabilities")
    if not probabilities:
        return []
    parts = judged.get("model_parts") or {}
    frames = judged.get("frames")
    if frames:
        return [
            StoredPrediction(
                f["label"], f["decision"], f["confidence"], f["probabilities"], parts, judged.get("familiarity")
            )
            for f in frames
        ]
    label = "bad" if probabilities["bad"] >= probabilities["good"] else "good"
    decision = judged.get("network_decision") or label
    return [StoredPrediction(label, decision, probabilities[label], probabilities, parts, judged.get("familiarity"))]


def what_if(db: sqlite3.Connection, config: Config, proposed: tuple[RuleConfig, ...]) -> dict[str, Any]:
    """How many and which sorted scans `proposed` rules would decide differently from the rules in force."""
    now_policy = Policy.from_config(config)
    new_policy = replace(now_policy, rules=proposed)
    rows = db.execute(
        "SELECT scan_index.id, scan_index.decision, scan_index.reviewed, scan_index.judged, files.final_path "
        "FROM scan_index JOIN files ON files.id = scan_index.id "
        "WHERE scan_index.state = 'done' AND scan_index.reason != 'duplicate' ORDER BY scan_index.id DESC"
    ).fetchall()
    changed: list[dict[str, Any]] = []
    transitions: Counter[str] = Counter()
    considered = 0
    for row in rows:
        judged = json.loads(row["judged"] or "{}")
        predictions = _predictions(judged)
        metrics = judged.get("quality") or {}
        if not predictions and not metrics:
            continue
        considered += 1
        before = decide(predictions, metrics, now_policy)
        after = decide(predictions, metrics, new_policy)
        if before.decision == after.decision:
            continue
        transitions[f"{before.decision} -> {after.decision}"] += 1
        if len(changed) < MAX_LISTED:
            changed.append(
                {
                    "id": row["id"],
                    "name": Path(row["final_path"] or "").name,
                    "now": before.decision,
                    "would_be": after.decision,
                    "reason": after.reasons[0],
                    "checked_by_a_person": bool(row["reviewed"]),
                    "url": f"/scan/{row['id']}",
                }
            )
    return {
        "considered": considered,
        "changed": sum(transitions.values()),
        "transitions": dict(transitions),
        "scans": changed,
        "listed": len(changed),
    }


# -- saving -----------------------------------------------------------------------------------------
_TOP_LEVEL_RULES = re.compile(r"^rules\s*:.*?(?=^[^\s#-]|\Z)", re.MULTILINE | re.DOTALL)


def config_text_with_rules(text: str, rules: tuple[RuleConfig, ...]) -> str:
    """The config file's text with its top-level `rules:` replaced (or added); comments elsewhere stay."""
    block = yaml.safe_dump({"rules": [rule_to_dict(r) for r in rules]}, sort_keys=False, allow_unicode=True)
    if _TOP_LEVEL_RULES.search(text):
        return _TOP_LEVEL_RULES.sub(lambda _: block, text, count=1)
    return text + ("" if text.endswith("\n") or not text else "\n") + block


def save_rules(config_path: Path, rules: tuple[RuleConfig, ...]) -> Config:
    """Write `rules` into the config file atomically, after checking that the whole new file is valid
    (ConfigError otherwise, and the file is left as it was). Returns the new config."""
    text = config_path.read_text(encoding="utf-8")
    new_text = config_text_with_rules(text, rules)
    try:
        data = yaml.safe_load(new_text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(str(config_path), [f"the new file would not be valid YAML: {exc}"]) from None
    config = config_from_dict(data, str(config_path), config_path.resolve().parent)
    atomic_write_bytes(config_path, new_text.encode("utf-8"))
    return config


def signal_daemon(service: dict[str, Any]) -> str:
    """Send SIGHUP to the daemon the journal says is running (its pid, if it is an afmwatch process on
    this machine); returns what happened, in words."""
    pid = service.get("pid")
    if not service.get("running") or not isinstance(pid, int):
        return "the daemon is not running: it reads the rules when it starts"
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return f"no process {pid} here: restart the daemon (or send it SIGHUP) to use the new rules"
    if b"afmwatch" not in cmdline:
        return f"process {pid} is not afmwatch: send the daemon SIGHUP to use the new rules"
    try:
        os.kill(pid, signal.SIGHUP)
    except PermissionError:
        return f"not allowed to signal process {pid}: run `systemctl reload afmwatch` to use the new rules"
    except ProcessLookupError:
        return "the daemon is not running: it reads the rules when it starts"
    return f"the daemon (pid {pid}) was asked to reload (SIGHUP)"
