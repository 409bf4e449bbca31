"""The limit: raw forward throughput (images/s) of the shipped default model and of every network in
the registry, on tensors already in memory, batch sizes 1 to 64, on the CPU and on the GPU when one
is present. No file is read: this is as fast as classification can possibly go here.

    python -m benchmarks.forward_limit [--quick] [--batch-sizes 1,2,4,8,16,32,64] [--seconds 2]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from benchmarks.common import fmt, parser, repeat_rate, report, setup, table

BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)
QUICK_BATCH_SIZES = (1, 2)
IMAGE_SIZE = 224  # the study's crop, and the registry networks' default input
QUICK_IMAGE_SIZE = 64


def devices() -> list[str]:
    import torch

    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def forward_rate(
    model: Any, channels: int, crop: int, batch: int, device: str, min_seconds: float, min_calls: int = 3
) -> float:
    """Images/s of `model` in inference mode on a random (batch, channels, crop, crop) tensor that is
    already on `device`."""
    import torch

    model = model.to(device).eval()
    x = torch.randn(batch, channels, crop, crop, device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def call() -> None:
        with torch.inference_mode():
            model(x)

    return repeat_rate(call, batch, min_seconds, min_calls, sync)


def classifier_forward_rate(model_path: Path, batch: int, device: str, min_seconds: float, min_calls: int = 3) -> float:
    """Raw forward images/s of a classifier model file at its own input size (used by daemon_e2e): a
    network's module alone on a random batch; a model of another kind (a metrics model has no module)
    through the `ClassifierModel` protocol's `probabilities`, on copies of its own input row for a
    random surface."""
    from afmwatch.networks.classifier import Classifier
    from afmwatch.networks.families import load_classifier

    classifier = load_classifier(model_path, device="cpu")
    if isinstance(classifier, Classifier):
        pipeline = classifier.pipeline
        return forward_rate(
            classifier.model, pipeline["channels"], pipeline["crop"], batch, device, min_seconds, min_calls
        )
    return protocol_rate(classifier, batch, device, min_seconds, min_calls)


def protocol_rate(classifier: Any, batch: int, device: str, min_seconds: float, min_calls: int = 3) -> float:
    """Images/s of `classifier.probabilities` (any kind of model) on a batch of its own input rows that
    is already where the model runs (a metrics model stays on the CPU whatever `device` says)."""
    import numpy as np
    import torch

    from afmwatch.scan import Scan

    model = classifier.to(device)
    height = np.random.default_rng(0).normal(0, 1, (64, 64)).astype(np.float32)
    row = model.preprocess(Scan(height=height, pixel_size_nm=10.0, channel="bench", path=Path("bench"), format="bench"))
    x = torch.stack([row] * batch).to(model.device)
    return repeat_rate(lambda: model.probabilities(x), batch, min_seconds, min_calls)  # returns on the CPU: synced


def networks(
    image_sizes: tuple[int, ...] = (IMAGE_SIZE,), names: tuple[str, ...] | None = None
) -> list[tuple[str, Any, int, int]]:
    """(label, module, input channels, crop) for the default model (when present and a network, at its
    own input size) and every registry entry (or those in `names`) at each of `image_sizes` (what a
    larger input costs: the pixels a thin band keeps against the time they take)."""
    from afmwatch.networks.architectures import ARCHITECTURES
    from afmwatch.networks.classifier import Classifier
    from afmwatch.networks.families import load_classifier
    from afmwatch.networks.store import default_model_path

    found = []
    default = default_model_path()
    classifier = load_classifier(default, device="cpu") if default.is_file() else None
    if isinstance(classifier, Classifier):  # a default of another kind has no network to time here
        found.append(
            (
                f"shipped default ({classifier.arch})",
                classifier.model,
                classifier.pipeline["channels"],
                classifier.pipeline["crop"],
            )
        )
    for name, arch in ARCHITECTURES.items():
        if names is None or name in names:
            found.extend((name, arch.build(2, size, None), arch.channels, size) for size in image_sizes)
    return found


def measure(
    batch_sizes: tuple[int, ...],
    min_seconds: float,
    min_calls: int,
    image_sizes: tuple[int, ...] = (IMAGE_SIZE,),
    names: tuple[str, ...] | None = None,
) -> list[dict[str, Any]]:
    import torch

    rows = []
    for label, model, channels, crop in networks(image_sizes, names):
        weights = sum(p.numel() for p in model.parameters())
        for device in devices():
            for batch in batch_sizes:
                try:
                    rate = forward_rate(model, channels, crop, batch, device, min_seconds, min_calls)
                except torch.OutOfMemoryError:
                    rate = None
                    torch.cuda.empty_cache()
                rows.append(
                    {
                        "network": label,
                        "weights": weights,
                        "input": [channels, crop, crop],
                        "device": device,
                        "batch": batch,
                        "images_per_s": rate,
                    }
                )
        model.to("cpu")
    return rows


def markdown(rows: list[dict[str, Any]], batch_sizes: tuple[int, ...], min_seconds: float) -> str:
    headers = ["network", "weights", "input", "device"] + [f"batch {b}" for b in batch_sizes]
    lines = []
    seen: dict[tuple[str, str, tuple[int, ...]], list[Any]] = {}
    for row in rows:
        key = (row["network"], row["device"], tuple(row["input"]))
        if key not in seen:
            c, h, w = row["input"]
            seen[key] = [row["network"], f"{row['weights'] / 1e6:.2f} M", f"{c}×{h}×{w}", row["device"]]
            lines.append(seen[key])
        seen[key].append(fmt(row["images_per_s"], 0) if row["images_per_s"] is not None else "out of memory")
    return (
        "Images per second of the network alone (`torch.inference_mode`, float32), on a random batch "
        f"already in memory on the device; each cell is timed for at least {min_seconds:g} s after a "
        "warm-up call. Random weights run exactly as fast as trained ones.\n\n" + table(headers, lines)
    )


def main(argv: list[str] | None = None) -> int:
    p = parser("Raw forward throughput of every classifier network.")
    p.add_argument("--batch-sizes", default=None, help="comma-separated (default 1,2,4,8,16,32,64)")
    p.add_argument("--seconds", type=float, default=2.0, help="least time per measurement (default 2)")
    p.add_argument(
        "--image-sizes",
        default=None,
        help=f"comma-separated input sizes of the registry networks (default {IMAGE_SIZE})",
    )
    p.add_argument("--networks", default=None, help="comma-separated registry names (default: every one)")
    args = p.parse_args(argv)
    setup(args)
    if args.batch_sizes:
        batch_sizes = tuple(int(b) for b in args.batch_sizes.split(","))
    else:
        batch_sizes = QUICK_BATCH_SIZES if args.quick else BATCH_SIZES
    min_seconds, min_calls = (0.0, 1) if args.quick else (args.seconds, 3)
    try:
        image_sizes = tuple(int(size) for size in args.image_sizes.split(",")) if args.image_sizes else None
    except ValueError:
        p.error(f"--image-sizes: comma-separated whole numbers of pixels, not {args.image_sizes!r}")
    image_sizes = image_sizes or (QUICK_IMAGE_SIZE if args.quick else IMAGE_SIZE,)
    names = tuple(args.networks.split(",")) if args.networks else None
    from afmwatch.networks.architectures import ARCHITECTURES

    unknown = sorted(set(names or ()) - set(ARCHITECTURES))
    if unknown:  # a typo would otherwise time nothing and say nothing
        p.error(f"--networks: no network named {', '.join(unknown)}; choose from {', '.join(ARCHITECTURES)}")
    rows = measure(batch_sizes, min_seconds, min_calls, image_sizes, names)
    return report(
        args,
        "forward",
        "python -m benchmarks.forward_limit",
        "The limit: network forward throughput",
        markdown(rows, batch_sizes, min_seconds),
        {"rows": rows},
    )


if __name__ == "__main__":
    sys.exit(main())
