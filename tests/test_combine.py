"""`afmwatch models combine`: one model file from a network and a metrics model, used like any model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from afmwatch.cli import main
from afmwatch.judge import judge_paths
from afmwatch.networks.families import load_classifier
from afmwatch.synth.sets import generate_classify_set
from afmwatch.training.combine import mix
from afmwatch.training.families import train_model
from afmwatch.training.options import TrainOptions


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    root = tmp_path_factory.mktemp("combine")
    generate_classify_set(root / "train", 64, seed=31, size=64, gwy=False, previews=False, retrace=False)
    generate_classify_set(root / "held-out", 24, seed=32, size=64, gwy=False, previews=False, retrace=False)
    network, metrics = root / "net.safetensors", root / "metrics.safetensors"
    train_model(
        root / "train",
        network,
        TrainOptions(arch="compact", epochs=2, batch_size=16, image_size=64, resize=64, threads=2),
        progress=False,
    )
    train_model(root / "train", metrics, TrainOptions(arch="metrics-logistic"), progress=False)
    return root, network, metrics


def test_combined_model_mixes_both_parts_and_names_them_in_the_reasons(parts, capsys):
    root, network, metrics = parts
    out = root / "combined.safetensors"
    assert (
        main(
            [
                "models",
                "--json",
                "combine",
                str(network),
                str(metrics),
                "--data",
                str(root / "held-out"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert 0.0 <= report["weight"] <= 1.0 and set(report) >= {"network", "metrics_model", "combined"}
    combined = load_classifier(out)
    assert combined.companion["weight"] == report["weight"] and combined.familiarity is not None
    files = sorted((root / "held-out").glob("*/*.tif"))
    judged = list(judge_paths(combined, files))
    alone = {j.path: j for j in judge_paths(load_classifier(network), files)}
    for item in judged:
        p_network = alone[item.path].verdict.probabilities["bad"]
        assert item.verdict.parts["network"] == pytest.approx(p_network, abs=1e-5)
        expected = mix(np.array([p_network]), np.array([item.verdict.parts["metrics model"]]), report["weight"])[0]
        assert item.verdict.probabilities["bad"] == pytest.approx(expected, abs=1e-5)
        disagree = item.verdict.reasons[0].startswith("the model's parts disagree")
        if item.verdict.rule is None and not item.verdict.familiarity["unfamiliar"] and not disagree:
            assert item.verdict.reasons[0].startswith(f"model: {item.verdict.decision}, P(bad)")
            assert "network" in item.verdict.reasons[0] and "metrics model" in item.verdict.reasons[0]


def test_a_boosted_metrics_model_combines_and_classifies_like_on_its_own(parts, capsys):
    """The trees' structure (features, children) survives the combined file as integers."""
    root, network, _ = parts
    boosted, out = root / "boosted.safetensors", root / "combined-boosted.safetensors"
    train_model(root / "train", boosted, TrainOptions(arch="metrics-boosted"), progress=False)
    args = ["models", "combine", str(network), str(boosted), "--data", str(root / "held-out"), "--out", str(out)]
    assert main(args) == 0
    capsys.readouterr()
    files = sorted((root / "held-out").glob("*/*.tif"))
    alone = {j.path: j.verdict.probabilities["bad"] for j in judge_paths(load_classifier(boosted), files)}
    judged = list(judge_paths(load_classifier(out), files))
    assert len(judged) == len(files)
    for item in judged:
        assert item.verdict.parts["metrics model"] == pytest.approx(alone[item.path], abs=1e-6)


def test_weight_zero_is_the_network_alone_and_wrong_inputs_are_refused(parts, capsys):
    root, network, metrics = parts
    out = root / "network-only.safetensors"
    assert (
        main(
            [
                "models",
                "combine",
                str(network),
                str(metrics),
                "--data",
                str(root / "held-out"),
                "--out",
                str(out),
                "--weight",
                "0",
            ]
        )
        == 0
    )
    assert "metrics model weight 0.00" in capsys.readouterr().out
    files = sorted((root / "held-out").glob("*/*.tif"))[:6]
    for a, b in zip(judge_paths(load_classifier(out), files), judge_paths(load_classifier(network), files)):
        assert a.verdict.probabilities["bad"] == pytest.approx(b.verdict.probabilities["bad"], abs=1e-5)
    assert (
        main(
            [
                "models",
                "combine",
                str(metrics),
                str(network),
                "--data",
                str(root / "held-out"),
                "--out",
                str(root / "x.safetensors"),
            ]
        )
        == 1
    )
    assert "not a plain network" in capsys.readouterr().err
    assert (
        main(
            [
                "models",
                "combine",
                str(network),
                str(metrics),
                "--data",
                str(root / "held-out"),
                "--out",
                str(root / "y.safetensors"),
                "--weight",
                "2",
            ]
        )
        == 1
    )


def test_the_combined_model_judges_files_with_one_direction_by_its_one_direction_metrics_model(parts, capsys):
    """A metrics model trained on scans with their retrace carries its one-direction model into the
    combined file: the metrics part of a file without a retrace is what the metrics model alone says
    of it (its one-direction model), and differs from that of the same scan with its retrace."""
    import shutil

    from afmwatch.networks.metrics_model import ONE_DIRECTION_PREFIX

    root, network, _ = parts
    with_retrace = root / "with-retrace"
    generate_classify_set(with_retrace, 48, seed=33, size=64, gwy=False, previews=False)
    metrics = root / "metrics-directions.safetensors"
    train_model(with_retrace, metrics, TrainOptions(arch="metrics-logistic"), progress=False)
    out = root / "combined-directions.safetensors"
    args = ["models", "combine", str(network), str(metrics), "--data", str(root / "held-out"), "--out", str(out)]
    assert main(args) == 0
    capsys.readouterr()
    combined = load_classifier(out)
    assert any(name.startswith(ONE_DIRECTION_PREFIX) for name in combined.companion_tensors)
    originals = sorted((with_retrace / "bad").glob("*.tif"))[:4]
    copies = []
    for original in originals:
        copy = root / "one-direction" / original.name
        copy.parent.mkdir(exist_ok=True)
        shutil.copyfile(original, copy)
        copies.append(copy)
    files = originals + copies
    alone = {j.path: j.verdict.probabilities["bad"] for j in judge_paths(load_classifier(metrics), files)}
    judged = {j.path: j.verdict.parts["metrics model"] for j in judge_paths(combined, files)}
    for path in files:
        assert judged[path] == pytest.approx(alone[path], abs=1e-6)
    assert any(judged[a] != pytest.approx(judged[b], abs=1e-4) for a, b in zip(originals, copies))
