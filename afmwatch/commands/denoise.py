"""`afmwatch denoise FILE... --model M --out DIR`: denoised height maps (TIFF, .gwy, PNG) and a panel of what
was removed, each checked by the guard; originals untouched."""

from __future__ import annotations

import argparse
import sys

from afmwatch.commands.outputs import output_folder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="scan files (any format afmwatch reads); a folder stands for every scan in it",
    )
    parser.add_argument(
        "--model", default=None, help="denoiser model file (default: the shipped models/denoiser-unet.safetensors)"
    )
    parser.add_argument(
        "--out",
        required=True,
        type=output_folder,
        metavar="DIR",
        help="folder for the denoised files (created if missing)",
    )
    parser.add_argument(
        "--formats",
        default="tiff,gwy,png,panel",
        help="comma-separated: tiff (float32 height map), gwy (Gwyddion), png (preview), panel "
        "(input / denoised / removed part on one colour scale); default %(default)s",
    )
    parser.add_argument(
        "--level",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="level first (plane fit + median row alignment: the denoisers learned on flat, untilted "
        "scans; default on); --no-level denoises the raw heights",
    )
    parser.add_argument("--channel", default=None, help="channel to denoise (default: the height channel)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="cpu")


def run(args: argparse.Namespace) -> int:
    import structlog

    from afmwatch.denoise.model import default_denoiser_path, load_denoiser, to_device
    from afmwatch.denoise.write import FORMATS, write_denoised
    from afmwatch.level import level
    from afmwatch.networks.model_file import ModelError
    from afmwatch.readers import read_scan
    from afmwatch.scan import ScanError

    log = structlog.get_logger("afmwatch.denoise")
    formats = tuple(f.strip().lower() for f in args.formats.split(",") if f.strip())
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        print(
            f"afmwatch denoise: unknown format(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(FORMATS)}",
            file=sys.stderr,
        )
        return 2
    try:
        denoiser = load_denoiser(args.model or default_denoiser_path(), to_device(args.device))
    except ModelError as exc:
        print(f"afmwatch denoise: {exc}", file=sys.stderr)
        return 2
    from afmwatch.commands.inspect import expand_folders

    files = expand_folders(args.files)  # listed before anything is written (--out may lie inside a folder given)
    if not files:
        print(f"afmwatch denoise: no scan files in {', '.join(args.files)}", file=sys.stderr)
        return 1
    failed = 0
    for file in files:
        try:
            scan = read_scan(file, channel=args.channel)
            if args.level:
                scan = level(scan)
            denoised, guard = denoiser.denoise_checked(scan)
            written = write_denoised(denoised, args.out, formats, original=scan, guard=guard)
        except (ScanError, OSError) as exc:
            failed += 1
            log.error("denoise_failed", file=file, error=str(exc))
            continue
        log.info(
            "denoised",
            file=file,
            denoiser=denoiser.name,
            written=[str(p) for p in written],
            guard=guard.verdict,
            reasons=guard.reasons,
        )
        for path in written:
            print(path)
        print(f"guard {file}: {guard.summary()}")
    return 1 if failed else 0
