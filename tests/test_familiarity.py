"""The familiarity check: an out-of-distribution score from a network's features, fitted when it trains."""

from __future__ import annotations

import numpy as np
import torch

from afmwatch.networks import familiarity
from afmwatch.networks.families import load_classifier
from afmwatch.networks.model_file import read_metadata
from afmwatch.readers import read_scan
from afmwatch.synth.sets import generate_classify_set
from afmwatch.training.options import TrainOptions
from afmwatch.training.train import train_folder


def test_the_limit_passes_held_out_scans_at_its_quantile_and_flags_scans_from_elsewhere():
    rng = np.random.default_rng(0)
    means = np.zeros((2, 16))
    means[1, 0] = 3.0
    labels = rng.integers(0, 2, 2000)
    train = rng.normal(0, 1, (2000, 16)) + means[labels]
    held_out = rng.normal(0, 1, (1000, 16)) + means[rng.integers(0, 2, 1000)]
    tensors, meta = familiarity.fit(train, labels, held_out, quantile=0.99)
    assert 0.8 < meta["held_out_median"] < 1.2  # about 1 for a typical scan
    fresh = rng.normal(0, 1, (4000, 16)) + means[rng.integers(0, 2, 4000)]
    rate = float(np.mean(familiarity.scores(tensors, fresh) > meta["threshold"]))
    assert rate < 0.03  # ~1 % by construction
    elsewhere = rng.normal(0, 1, (200, 16)) + 6.0
    assert np.mean(familiarity.scores(tensors, elsewhere) > meta["threshold"]) > 0.95


def test_the_features_are_what_the_last_linear_layer_sees():
    model = torch.nn.Sequential(torch.nn.Linear(4, 7), torch.nn.ReLU(), torch.nn.Linear(7, 2)).eval()
    x = torch.randn(5, 4)
    logits, features = familiarity.logits_and_features(model, x)
    assert torch.allclose(features, torch.relu(model[0](x))) and torch.allclose(logits, model(x))


def test_features_of_a_lazy_stack_equal_those_of_the_whole_stack_and_it_is_built_a_batch_at_a_time():
    """After training, the familiarity check takes every training scan's features: stacking them all at
    once doubled the memory of a 19,200-scan training and got it killed after its last epoch."""
    from afmwatch.networks.architectures import get_architecture
    from afmwatch.training.train import LazyStack, _stack, make_spec

    options = TrainOptions(arch="compact", image_size=32, resize=32)
    spec = make_spec(options, None)
    model = get_architecture("compact").build(2, 32, None).eval()
    rng = np.random.default_rng(0)
    arrays = [rng.normal(0, 1, (32, 32)).astype(np.float32) for _ in range(23)]
    asked: list[int] = []

    class Watched(LazyStack):
        def __getitem__(self, rows: slice) -> torch.Tensor:
            batch = super().__getitem__(rows)
            asked.append(len(batch))
            return batch

    lazy = familiarity.features_of(model, Watched(arrays, spec), batch_size=8)
    whole = familiarity.features_of(model, _stack(arrays, spec, None), batch_size=8)
    assert lazy.shape == whole.shape == (23, whole.shape[1]) and np.allclose(lazy, whole, atol=1e-6)
    assert asked == [8, 8, 7]  # never more than one batch built at once


def test_training_stores_the_check_and_every_prediction_carries_it(tmp_path):
    data = tmp_path / "set"
    generate_classify_set(data, 64, seed=21, size=64, gwy=False, previews=False, retrace=False)
    out = tmp_path / "net.safetensors"
    report = train_folder(
        data,
        out,
        TrainOptions(arch="compact", epochs=2, batch_size=16, image_size=64, resize=64, threads=2),
        progress=False,
    )
    meta = read_metadata(out)
    assert (
        meta["familiarity"]["threshold"] > 0 and meta["familiarity"]["held_out_scans"] == report["split"]["validation"]
    )
    classifier = load_classifier(out)
    scans = [read_scan(path) for path in sorted(data.glob("*/*.tif"))[:8]]
    near = classifier.predict_scans(scans)
    for prediction in near:
        assert set(prediction.familiarity) == {"score", "threshold", "unfamiliar"}
        assert prediction.familiarity["threshold"] == meta["familiarity"]["threshold"]
    ramp = torch.linspace(-50, 50, 64).expand(1, 1, 64, 64)  # nothing like a standardised scan
    far = classifier.predict(ramp)[0]
    assert far.familiarity["score"] > max(p.familiarity["score"] for p in near)
