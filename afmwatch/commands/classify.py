"""`afmwatch classify FILE... [--model M] [--config C] [--json]`: the decision for each file, as the daemon
would sort it (model, quality rules and familiarity through `afmwatch.verdict`), with its reasons."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import cast


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--model / --model-folder / --config / --device, shared by classify and evaluate."""
    parser.add_argument(
        "--model",
        default=None,
        help="model file or a model name in the model folder (default: the folder's active "
        "model, else the shipped default)",
    )
    parser.add_argument("--model-folder", default=None, help="model store folder (default: from --config)")
    parser.add_argument("--config", default=None, help="config file (model, model_folder, reading settings)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="cpu")
    parser.add_argument("--batch-size", type=int, default=16, help="scans per forward pass")


def load_from_args(args: argparse.Namespace):
    """(Classifier, Config or None) from the shared arguments; raises ModelError or ConfigError."""
    from afmwatch.config import load_config
    from afmwatch.networks.families import load_classifier
    from afmwatch.networks.store import resolve_model

    config = load_config(args.config) if args.config else None
    model = args.model or (config.model if config else None)
    folder = args.model_folder or (config.model_folder if config else None)
    classifier = load_classifier(resolve_model(model, folder), device=args.device)
    return classifier, config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "files", nargs="+", help="scan files (any format afmwatch reads); a folder stands for every scan in it"
    )
    add_model_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON array")


def run(args: argparse.Namespace) -> int:
    from afmwatch.commands.inspect import expand_folders
    from afmwatch.config import ConfigError
    from afmwatch.judge import judge_paths
    from afmwatch.networks.model_file import ModelError
    from afmwatch.verdict import Policy, failed

    try:
        classifier, config = load_from_args(args)
    except (ModelError, ConfigError, RuntimeError) as exc:
        print(f"afmwatch classify: {exc}", file=sys.stderr)
        return 2
    rows = []
    paths = [Path(p) for p in expand_folders(args.files)]
    judged = judge_paths(
        classifier,
        paths,
        policy=Policy.from_config(config),
        batch_size=args.batch_size,
        reading=config.reading if config else None,
    )
    for result in judged:
        verdict = result.verdict
        # a file without a verdict has its error (judge.JudgedFile)
        row = {
            "path": str(result.path),
            **(verdict or failed(cast(str, result.error))).to_dict(),
            "quality": result.quality,
            "error": result.error,
        }
        rows.append(row)
        if args.json:
            continue
        if verdict:
            assert verdict.probabilities is not None  # the model judged it
            p_bad = verdict.probabilities["bad"]
            print(f"{verdict.decision:<7} P(bad) {p_bad:.3f}  {result.path}: {'; '.join(verdict.reasons)}")
        else:
            print(f"error   {result.path}: {result.error}")
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        companion = getattr(classifier, "companion", None)
        band = companion["review_band"] if companion else classifier.review_band
        parts = (
            f"{classifier.arch} + {companion['arch']}, weight {companion['weight']:.2f}"
            if companion
            else classifier.arch
        )
        one = (companion or {}).get("one_direction")
        one_direction = (
            f" (files with one scan direction: weight {one['weight']:.2f}, "
            f"[{one['review_band'][0]:.2f}, {one['review_band'][1]:.2f}])"
            if one
            else ""
        )
        print(
            f"model {classifier.name} ({parts}); review when P(bad) in [{band[0]:.2f}, {band[1]:.2f}]{one_direction}",
            file=sys.stderr,
        )
    return 1 if any(row["error"] for row in rows) else 0
