"""`afmwatch train-denoiser --data DIR --arch window-mlp|conv --out MODEL`: learn a denoiser from noisy/clean pairs."""

from __future__ import annotations

import argparse
import json
import sys

from afmwatch.commands.outputs import output_file


def _arch_options(text: str) -> dict:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError('expected a JSON object such as {"window": 27, "hidden": 6}')
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from afmwatch.denoise.options import TrainOptions

    d = TrainOptions()
    parser.add_argument(
        "--data",
        nargs="+",
        default=[],
        metavar="DIR",
        help="folder(s) with noisy/ and clean/ holding pairs of the same file names "
        "(as `afmwatch synth denoise` writes them)",
    )
    parser.add_argument(
        "--synthetic",
        type=int,
        default=0,
        metavar="PER_KIND",
        help="also train on this many generated pairs of every synthetic surface kind (grains, "
        "domains, blends, substrates, terraces, gratings, fibres, particles), with white, 1/f, "
        "row-offset, line and scar noise (afmwatch.denoise.pairs)",
    )
    parser.add_argument("--synthetic-seed", type=int, default=1, help="seed of the --synthetic pairs (default 1)")
    parser.add_argument(
        "--synthetic-sizes",
        type=int,
        nargs="+",
        default=[256],
        metavar="PIXELS",
        help="draw the --synthetic pairs at each of these sizes (default 256); a larger size keeps each kind's "
        "scan sizes, so features span more pixels (the smooth look of many real scans)",
    )
    parser.add_argument("--workers", type=int, default=1, help="processes that draw the --synthetic pairs (default 1)")
    parser.add_argument(
        "--self-supervised",
        choices=["trace-retrace"],
        default=None,
        help="no clean images: learn from scans that hold trace and retrace (Noise2Noise); "
        "--data then holds ordinary scan files",
    )
    parser.add_argument(
        "--arch",
        choices=["window-mlp", "conv", "unet"],
        default=d.arch,
        help="window-mlp: Gwyddion's window network; conv: line-aware convolutional denoiser; unet: "
        "line-aware residual U-Net (a field of view of over a hundred pixels; best trained on a GPU)",
    )
    parser.add_argument(
        "--out",
        required=True,
        type=output_file,
        metavar="MODEL",
        help="model file to write (.safetensors); MODEL.report.json and MODEL.panel.png go beside it",
    )
    parser.add_argument("--window", type=int, default=None, help="window-mlp: window size in pixels (default 27)")
    parser.add_argument("--hidden", type=int, default=None, help="window-mlp: hidden nodes (default 6)")
    parser.add_argument(
        "--arch-options",
        type=_arch_options,
        default={},
        metavar="JSON",
        help='other architecture options, e.g. \'{"channels": 32, "depth": 7}\' for conv',
    )
    parser.add_argument(
        "--init",
        default=None,
        metavar="MODEL",
        help="start from this denoiser's weights instead of random ones (fine-tuning, e.g. the shipped "
        "models/denoiser-unet.safetensors on a lab's own pairs; same --arch, its options come from the file; "
        "a smaller --lr suits)",
    )
    parser.add_argument("--steps", type=int, default=d.steps, help=f"training steps (default {d.steps})")
    parser.add_argument(
        "--time-limit",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop after this many seconds of training; the learning-rate schedule keeps pace with the clock, "
        "so the run ends annealed even when --steps would take longer",
    )
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument(
        "--patch",
        type=int,
        nargs=2,
        default=(d.patch_rows, d.patch_cols),
        metavar=("ROWS", "COLS"),
        help="random training patch size (default %(default)s; wide patches show more of each row)",
    )
    parser.add_argument(
        "--half-scale",
        action="store_true",
        help="also train on every pair at half scale (objects half as wide in pixels, same noise): "
        "a wider range of feature sizes, so thin or small shapes not in the data are kept better",
    )
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the architecture's)")
    parser.add_argument("--val-fraction", type=float, default=d.val_fraction, help="share of pairs held out")
    parser.add_argument(
        "--clip-grad-norm", type=float, default=None, help="clip the gradient norm (default: the architecture's)"
    )
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch (default: all)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import torch

    from afmwatch.denoise.model import to_device
    from afmwatch.denoise.train import TrainOptions, train_from_folders
    from afmwatch.networks.model_file import ModelError
    from afmwatch.scan import ScanError

    if not args.data and not args.synthetic:
        print("afmwatch train-denoiser: give --data folders, --synthetic PER_KIND, or both", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    arch_options = dict(args.arch_options)
    for key in ("window", "hidden"):
        if getattr(args, key) is not None:
            if args.arch != "window-mlp":
                print(f"afmwatch train-denoiser: --{key} applies to --arch window-mlp only", file=sys.stderr)
                return 2
            arch_options[key] = getattr(args, key)
    options = TrainOptions(
        arch=args.arch,
        steps=args.steps,
        batch_size=args.batch_size,
        patch_rows=args.patch[0],
        patch_cols=args.patch[1],
        learning_rate=args.lr,
        seed=args.seed,
        val_fraction=args.val_fraction,
        device=to_device(args.device),
        arch_options=arch_options,
        half_scale=args.half_scale,
        clip_grad_norm=args.clip_grad_norm,
        init=args.init,
        time_limit_s=args.time_limit,
    )
    try:
        report = train_from_folders(
            args.data,
            args.out,
            options,
            progress=not args.no_progress,
            self_supervised=args.self_supervised,
            synthetic_per_kind=args.synthetic,
            synthetic_seed=args.synthetic_seed,
            synthetic_sizes=tuple(args.synthetic_sizes),
            workers=args.workers,
        )
    except (ScanError, ModelError, ValueError, TypeError) as exc:
        print(f"afmwatch train-denoiser: {exc}", file=sys.stderr)
        return 1
    summary = {"model": report["model"], "loss_last_50": round(report["loss_last_50"], 5), "seconds": report["seconds"]}
    if "validation" in report:
        summary["validation_mean"] = report["validation"]["mean"]
    print(json.dumps(summary, indent=2))
    return 0
