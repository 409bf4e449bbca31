"""Networks, input pipeline, model files (safety!), the classifier and the model store."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from afmwatch.networks import store
from afmwatch.networks.architectures import (
    ARCHITECTURES,
    ConvNet,
    get_architecture,
    set_train_mode,
    torchvision_classifier,
)
from afmwatch.networks.classifier import save_classifier
from afmwatch.networks.families import load_classifier, probe
from afmwatch.networks.model_file import ModelError, load_model_file, read_metadata, save_model_file
from afmwatch.networks.pipeline import check_pipeline, finish, make_pipeline, prepare, to_tensor
from afmwatch.networks.prediction import decide
from afmwatch.scan import Scan


def scan_of(height: np.ndarray, fmt: str = "tiff", **meta) -> Scan:
    return Scan(
        height=height.astype(np.float32),
        pixel_size_nm=2.0,
        channel="Height",
        path=Path("x.tif"),
        format=fmt,
        metadata=meta,
    )


# --- architectures -------------------------------------------------------------------------------


def test_convnet_is_the_studys_small_net():
    net = ConvNet(2, 32)
    assert (net.conv1.in_channels, net.conv1.out_channels, net.conv1.kernel_size) == (3, 6, (5, 5))
    assert (net.conv2.in_channels, net.conv2.out_channels, net.conv2.kernel_size) == (6, 16, (5, 5))
    assert (net.fc1.in_features, net.fc1.out_features) == (16 * 5 * 5, 120)  # the CIFAR tutorial's shape at 32 px
    assert (net.fc2.out_features, net.fc3.out_features) == (84, 2)
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 2)


@pytest.mark.parametrize("name", ["convnet", "compact"])
def test_small_architectures_give_two_logits(name):
    arch = get_architecture(name)
    out = arch.build(2, 48, None)(torch.randn(3, arch.channels, 48, 48))
    assert out.shape == (3, 2)


def test_resnet_features_trains_only_the_new_head_and_keeps_imagenet_batchnorm():
    model = get_architecture("resnet18-features").build(2, 64, None)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["fc.weight", "fc.bias"]
    set_train_mode(model)
    assert not model.bn1.training and model.fc.training
    assert get_architecture("resnet18-finetune").build(2, 64, None).fc.out_features == 2


def test_imagenet_weights_come_from_a_local_pth_or_safetensors(tmp_path):
    from torchvision.models import resnet18

    torch.manual_seed(3)
    reference = resnet18(weights=None).state_dict()
    torch.save(reference, tmp_path / "resnet18-local.pth")
    save_file({k: v.contiguous() for k, v in reference.items()}, tmp_path / "resnet18-local.safetensors")
    for weights in ("resnet18-local.pth", "resnet18-local.safetensors"):
        model = get_architecture("resnet18-finetune").build(2, 64, tmp_path / weights)
        assert torch.equal(model.conv1.weight, reference["conv1.weight"])
        assert model.fc.out_features == 2


def test_another_torchvision_classifier_is_one_registry_line():
    arch = torchvision_classifier("mobilenet_v3_small", freeze_backbone=True, description="test")
    model = arch.build(2, 64, None)
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 2)
    assert sum(p.requires_grad for p in model.parameters()) == 2  # only the new head


def test_unknown_architecture_names_the_known_ones():
    with pytest.raises(ValueError, match="convnet"):
        get_architecture("alexnet-9000")


# --- input pipeline ------------------------------------------------------------------------------


def test_pipeline_levels_resizes_and_centre_crops(rng):
    y, x = np.mgrid[0:80, 0:120]
    tilted = 0.5 * x + 0.2 * y + rng.normal(0, 0.01, (80, 120))
    spec = make_pipeline(1, "standardise", resize=40, crop=32)
    prepared = prepare(scan_of(tilted), spec)
    assert prepared.shape == (40, 60)  # short edge 40, aspect kept
    assert abs(float(np.median(prepared))) < 0.05  # the tilt is levelled away
    tensor = to_tensor(scan_of(tilted), spec)
    assert tensor.shape == (1, 32, 32)
    assert torch.equal(tensor, to_tensor(scan_of(tilted), spec))  # centre crop: deterministic
    assert abs(float(tensor.mean())) < 1e-4 and abs(float(tensor.std()) - 1) < 0.05


def test_imagenet_normalisation_gives_three_channels_with_imagenet_statistics(rng):
    spec = make_pipeline(3, "imagenet", resize=36, crop=32)
    tensor = to_tensor(scan_of(rng.normal(0, 1, (64, 64))), spec)
    assert tensor.shape == (3, 32, 32)
    grey = tensor[0] * 0.229 + 0.485  # undo channel 0's normalisation: back in [0, 1]
    assert float(grey.min()) >= -1e-5 and float(grey.max()) <= 1 + 1e-5


def test_training_augmentation_flips_but_never_rotates(rng):
    """A scar along one fast-scan row must stay a row (no 90° rotation) whatever the augmentation."""
    height = rng.normal(0, 0.1, (32, 32))
    height[10, 4:14] += 5  # a scar: a third of one row (median row alignment keeps it)
    spec = make_pipeline(1, "standardise", resize=32, crop=32)
    prepared = prepare(scan_of(height), spec)
    flips = set()
    for _ in range(30):
        x = finish(prepared, spec, rng)[0].numpy()
        assert np.argmax(x.mean(axis=1)) in (10, 21)  # the bright row stays horizontal (maybe flipped)
        flips.add(int(np.argmax(x.mean(axis=1))))
    assert flips == {10, 21}


def test_nan_rows_of_an_aborted_scan_become_level_ground(rng):
    height = rng.normal(0, 1, (64, 64))
    height[40:] = np.nan
    tensor = to_tensor(scan_of(height), make_pipeline(1, "standardise", resize=64, crop=48))
    assert torch.isfinite(tensor).all()


def test_crop_right_30_cuts_only_exports_without_a_detected_data_area():
    spec = make_pipeline(3, "imagenet", resize=32, crop=32, data_area="crop-right-30")
    image = np.zeros((100, 100))
    native = prepare(scan_of(image, fmt="nid"), spec)
    export = prepare(scan_of(image, fmt="png"), spec)
    detected = prepare(scan_of(image, fmt="png", data_area=[0, 0, 100, 100]), spec)
    assert native.shape == detected.shape == (32, 32) and export.shape == (46, 32)  # 100 x 70 after the crop


@pytest.mark.parametrize(
    "change, words",
    [
        ({"version": 99}, "version 99 is unknown"),
        ({"normalise": "zscore-ish"}, "normalisation"),
        ({"channels": 4}, "channels"),
        ({"crop": 300}, "crop"),
    ],
)
def test_a_pipeline_this_version_does_not_know_is_a_model_error(change, words):
    spec = dict(make_pipeline(1, "standardise"), **change)
    with pytest.raises(ModelError, match=words):
        check_pipeline(spec, "m.safetensors")


# --- model files ---------------------------------------------------------------------------------


def test_save_then_load_gives_bit_identical_outputs(tmp_path, rng):
    spec = make_pipeline(1, "standardise", resize=40, crop=32)
    torch.manual_seed(0)
    model = ARCHITECTURES["compact"].build(2, 32, None).eval()
    meta = {
        "name": "m",
        "arch": "compact",
        "pipeline": spec,
        "class_names": ["good", "bad"],
        "temperature": 1.7,
        "review_band": [0.3, 0.7],
        "metrics": {"note": "x"},
    }
    path = save_classifier(tmp_path / "m.safetensors", model, meta)
    classifier = load_classifier(path)
    batch = torch.stack([to_tensor(scan_of(rng.normal(0, 1, (50, 50))), spec) for _ in range(4)])
    with torch.inference_mode():
        expected = torch.softmax(model(batch) / 1.7, dim=1)
    assert torch.equal(classifier.probabilities(batch), expected)
    again = load_classifier(path)
    assert torch.equal(again.logits(batch), classifier.logits(batch))
    assert classifier.sha256 == again.sha256 and classifier.temperature == 1.7
    assert read_metadata(path)["metrics"] == {"note": "x"}
    assert read_metadata(path)["afmwatch_version"]


class _RunsCode:
    """An object whose unpickling runs code: it creates the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("name", ["evil.pth", "evil.pt", "evil.safetensors", "evil.bin"])
def test_a_pickle_that_would_run_code_is_refused_and_does_not_run(tmp_path, name):
    marker = tmp_path / "pwned"
    path = tmp_path / name
    with open(path, "wb") as handle:
        pickle.dump({"conv1.weight": _RunsCode(marker)}, handle)
    torch.save({"fc.weight": _RunsCode(marker)}, tmp_path / "zipped.pth")
    assert not marker.exists()
    for candidate in (path, tmp_path / "zipped.pth"):
        with pytest.raises(ModelError):
            load_classifier(candidate)
        with pytest.raises(ModelError):
            load_model_file(candidate)
        if candidate.suffix != ".safetensors":
            with pytest.raises(ModelError, match="refused"):
                get_architecture("resnet18-finetune").build(2, 64, candidate)
    assert not marker.exists()


def test_wrong_architecture_or_missing_keys_is_a_clear_model_error(tmp_path, make_classifier_file):
    path = make_classifier_file(tmp_path / "conv.safetensors", arch="convnet", crop=32)
    tensors, meta = load_model_file(path)
    save_model_file(tmp_path / "claims-compact.safetensors", tensors, dict(meta, arch="compact"))
    with pytest.raises(ModelError, match="do not fit architecture compact"):
        load_classifier(tmp_path / "claims-compact.safetensors")
    del tensors["fc3.bias"]
    save_model_file(tmp_path / "missing.safetensors", tensors, meta)
    with pytest.raises(ModelError, match="missing: fc3.bias"):
        load_classifier(tmp_path / "missing.safetensors")
    save_model_file(tmp_path / "unknown-arch.safetensors", {}, dict(meta, arch="vgg-9000"))
    with pytest.raises(ModelError, match="unknown to this afmwatch"):
        load_classifier(tmp_path / "unknown-arch.safetensors")
    save_model_file(tmp_path / "future.safetensors", tensors, dict(meta, pipeline=dict(meta["pipeline"], version=2)))
    with pytest.raises(ModelError, match="pipeline version 2"):
        load_classifier(tmp_path / "future.safetensors")


def test_prediction_decision_follows_the_review_band(tmp_path, make_classifier_file, rng):
    assert decide(0.2, (0.3, 0.7)) == "good" and decide(0.5, (0.3, 0.7)) == "review"
    assert decide(0.71, (0.3, 0.7)) == "bad" and decide(0.7, (0.3, 0.7)) == "review"
    everything_review = load_classifier(make_classifier_file(tmp_path / "m.safetensors", review_band=(0, 1)))
    scans = [scan_of(rng.normal(0, 1, (40, 40))) for _ in range(3)]
    predictions = everything_review.predict_scans(scans)
    assert [p.decision for p in predictions] == ["review"] * 3
    for p in predictions:
        assert p.label in ("good", "bad")
        assert p.confidence == pytest.approx(max(p.probabilities.values()))
        assert sum(p.probabilities.values()) == pytest.approx(1.0)


# --- model store ---------------------------------------------------------------------------------


def test_promote_verifies_then_installs_the_active_model(tmp_path, make_classifier_file):
    folder = tmp_path / "models"
    first = make_classifier_file(tmp_path / "first.safetensors", seed=1)
    second = make_classifier_file(tmp_path / "second.safetensors", seed=2)
    assert store.active_model_path(folder) is None
    active = store.promote(first, folder)
    assert active == store.active_model_path(folder)
    assert active.read_bytes() == first.read_bytes()
    store.promote(second, folder)
    assert active.read_bytes() == second.read_bytes()
    rows = {row["name"]: row for row in store.list_models(folder)}
    assert set(rows) == {"first", "second"} and rows["second"]["active"] and not rows["first"]["active"]
    assert rows["first"]["arch"] == "convnet"
    assert store.find_model("first", folder) == folder / "first.safetensors"
    assert store.resolve_model(None, folder) == active
    assert store.resolve_model("second", folder) == folder / "second.safetensors"


def test_a_broken_model_is_refused_and_the_active_one_stays(tmp_path, make_classifier_file):
    folder = tmp_path / "models"
    good = make_classifier_file(tmp_path / "good.safetensors")
    store.promote(good, folder)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(good.read_bytes()[:-100])  # truncated copy
    with pytest.raises(ModelError):
        store.promote(broken, folder)
    assert store.active_model_path(folder).read_bytes() == good.read_bytes()
    assert not (folder / "broken.safetensors").exists()
    assert not [p for p in folder.iterdir() if p.name.endswith(".part")]


def test_probe_runs_a_forward_pass(tmp_path, make_classifier_file):
    classifier = load_classifier(make_classifier_file(tmp_path / "m.safetensors", arch="compact"))
    prediction = probe(classifier)
    assert prediction.decision in ("good", "bad", "review")


def test_models_command_lists_shows_and_promotes(tmp_path, make_classifier_file, capsys):
    from afmwatch.cli import main

    folder = tmp_path / "store"
    model = make_classifier_file(tmp_path / "lab-2026.safetensors")
    assert main(["models", "--model-folder", str(folder), "promote", str(model)]) == 0
    assert "promoted" in capsys.readouterr().out
    assert main(["models", "--model-folder", str(folder), "--json", "list"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert any(row["name"] == "lab-2026" and row["active"] for row in rows)
    assert main(["models", "--model-folder", str(folder), "show", "lab-2026"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["arch"] == "convnet" and shown["review_band"] == [0.4, 0.6]
    assert main(["models", "--model-folder", str(folder), "show", "nope"]) == 1


def test_a_line_scan_or_a_tiny_image_still_gives_the_network_input(rng):
    spec = make_pipeline(1, "standardise", resize=64, crop=48)
    for shape in ((1, 5000), (3, 3), (700, 20)):
        prepared = prepare(scan_of(rng.normal(0, 1, shape)), spec)
        assert min(prepared.shape) == 64 and max(prepared.shape) <= 4 * 64
        assert to_tensor(scan_of(rng.normal(0, 1, shape)), spec).shape == (1, 48, 48)


def test_missing_lines_stand_out_instead_of_looking_flat(rng):
    """An aborted scan's NaN lines become the lowest height, so the network sees a cliff, not a plateau."""
    height = rng.normal(0, 1, (64, 64))
    height[48:] = np.nan
    prepared = prepare(scan_of(height), make_pipeline(1, "standardise", resize=64, crop=64))
    assert np.isfinite(prepared).all()
    assert prepared[56:].mean() < np.percentile(prepared[:40], 1)


def test_a_model_asking_for_inputs_over_the_cap_is_refused_at_load_and_at_promote(tmp_path, make_classifier_file):
    """A pipeline asking for 8192-px inputs would cost about 1 GiB per scan in every reader and batch."""
    import torch

    from afmwatch.networks.architectures import get_architecture
    from afmwatch.networks.classifier import save_classifier
    from afmwatch.networks.families import load_classifier
    from afmwatch.networks.pipeline import MAX_INPUT_EDGE

    assert check_pipeline(dict(make_pipeline(1, "standardise"), resize=MAX_INPUT_EDGE, crop=MAX_INPUT_EDGE), "m")
    with pytest.raises(ModelError, match=f"more than the {MAX_INPUT_EDGE} px per side"):
        make_pipeline(1, "standardise", resize=8192, crop=8192)
    folder = tmp_path / "models"
    store.promote(make_classifier_file(tmp_path / "good.safetensors"), folder)
    architecture = get_architecture("convnet")
    spec = dict(make_pipeline(architecture.channels, architecture.normalise), resize=8192, crop=8192)
    meta = {"name": "huge", "arch": "convnet", "pipeline": spec, "class_names": ["good", "bad"]}
    meta.update(temperature=1.0, review_band=[0.4, 0.6])
    with pytest.raises(ModelError, match="8192"):  # never written by afmwatch itself
        save_classifier(tmp_path / "huge.safetensors", architecture.build(2, 32, None), meta)
    torch.manual_seed(0)  # a file from elsewhere (or an older afmwatch): refused when it loads
    huge = save_model_file(tmp_path / "huge.safetensors", architecture.build(2, 32, None).state_dict(), meta)
    with pytest.raises(ModelError, match="8192"):
        load_classifier(huge, device="cpu")
    with pytest.raises(ModelError, match="8192"):
        store.promote(huge, folder)
    assert store.active_model_path(folder).read_bytes() == (tmp_path / "good.safetensors").read_bytes()
