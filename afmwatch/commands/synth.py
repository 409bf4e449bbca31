"""`afmwatch synth classify|denoise`: write synthetic scan sets (labelled good/bad, or denoising pairs)."""

from __future__ import annotations

import argparse
import sys

from afmwatch.commands.outputs import output_folder


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _size(text: str) -> int:
    value = int(text)
    if value < 32:
        raise argparse.ArgumentTypeError(f"images need at least 32 pixels a side, got {value}")
    return value


def _size_or_auto(text: str) -> int | None:
    return None if text == "auto" else _size(text)


def _common(parser: argparse.ArgumentParser, default_n: int) -> None:
    parser.add_argument(
        "--out", required=True, type=output_folder, help="folder to write the set into (created if missing)"
    )
    parser.add_argument("--n", type=_positive, default=default_n, help=f"number of scans (default {default_n})")
    parser.add_argument("--seed", type=int, default=1, help="random seed; the same seed gives the same files")
    parser.add_argument(
        "--gwy",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also write Gwyddion .gwy files under gwy/ (default on)",
    )
    parser.add_argument(
        "--previews",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="write PNG previews under previews/ (default on)",
    )
    parser.add_argument("--workers", type=_positive, default=1, help="processes to generate in parallel")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sets = parser.add_subparsers(dest="set_kind", metavar="KIND", required=True)
    classify = sets.add_parser("classify", help="a labelled set: good/ and bad/ scans with named artefacts")
    _common(classify, 200)
    classify.add_argument(
        "--size",
        type=_size_or_auto,
        default=None,
        metavar="N|auto",
        help="pixels per side for every scan; auto (default) draws each scan's lines from "
        "128 (15%%), 256 (45%%), 512 (30%%), 1024 (10%%), sometimes non-square (512 x 256), "
        "alike for good and bad scans, as a training set should",
    )
    classify.add_argument(
        "--retrace",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also write each scan's retrace under retrace/ (default on)",
    )
    classify.add_argument(
        "--accepted-flaws",
        type=float,
        default=0.0,
        metavar="P",
        help="chance (0-1) that a scan, good or bad alike, starts with the settling band microscopists "
        "accept (creep and feedback settling over the first 3-12 %% of the lines; default 0)",
    )
    classify.add_argument(
        "--surfaces",
        default=None,
        metavar="KIND,...",
        help="surface kinds to draw from, comma-separated (default: every kind; README, 'Good surfaces'); "
        "a recipe that names them keeps its scans when a kind is added",
    )
    denoise = sets.add_parser("denoise", help="denoising pairs: clean/ and noisy/ (Gwyddion's NN example)")
    _common(denoise, 20)
    denoise.add_argument("--size", type=_size, default=256, help="pixels per side (default 256)")
    denoise.add_argument(
        "--shapes",
        default="particles",
        choices=["particles", "stars", "donuts"],
        help="objects on the surface; stars and donuts are unseen test shapes",
    )
    denoise.add_argument(
        "--noise",
        type=float,
        default=0.1,
        help="random-noise RMS as a fraction of the objects' height (line noise is half)",
    )


def run(args: argparse.Namespace) -> int:
    from afmwatch.synth import generate_classify_set, generate_denoise_set

    try:
        if args.set_kind == "classify":
            manifest = generate_classify_set(
                args.out,
                args.n,
                args.seed,
                args.size,
                gwy=args.gwy,
                previews=args.previews,
                retrace=args.retrace,
                workers=args.workers,
                accepted=args.accepted_flaws,
                surfaces=None
                if args.surfaces is None
                else tuple(k.strip() for k in args.surfaces.split(",") if k.strip()),
            )
        else:
            manifest = generate_denoise_set(
                args.out,
                args.n,
                args.seed,
                args.shapes,
                noise=args.noise,
                size=args.size,
                gwy=args.gwy,
                previews=args.previews,
                workers=args.workers,
            )
    except (ValueError, OSError) as exc:
        print(f"afmwatch synth: {exc}", file=sys.stderr)
        return 1
    print(manifest)
    return 0
