"""The shipped default: a network and a metrics model in one file, with a familiarity check."""

from __future__ import annotations

from afmwatch.networks.families import load_classifier
from afmwatch.networks.metrics_model import METRICS_ARCHS
from afmwatch.networks.store import default_model_path


def test_the_default_holds_a_network_a_metrics_model_and_a_familiarity_check():
    classifier = load_classifier(default_model_path())
    assert classifier.arch == "compact" and classifier.companion["arch"] in METRICS_ARCHS
    assert 0.0 < classifier.companion["weight"] < 1.0
    assert classifier.familiarity is not None and classifier.familiarity["threshold"] > 0


def test_the_default_judges_files_with_one_scan_direction_with_their_own_model_weight_and_band():
    """Many files hold one direction (Asylum .ibw often only the retrace): the default carries a metrics
    model trained without the trace/retrace mismatch, and a weight and review band chosen for it."""
    from afmwatch.networks.metrics_model import ONE_DIRECTION_PREFIX

    classifier = load_classifier(default_model_path())
    assert any(name.startswith(ONE_DIRECTION_PREFIX) for name in classifier.companion_tensors)
    one = classifier.companion["one_direction"]
    assert 0.0 < one["weight"] < 1.0 and one["review_band"][0] < 0.5 < one["review_band"][1]
