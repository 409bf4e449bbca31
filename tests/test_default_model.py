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
