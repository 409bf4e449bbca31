"""`afmwatch classify FILE... [--model M] [--json]`: good/bad, the decision and the probabilities per file."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--model / --model-folder / --config / --device, shared by classify and evaluate."""
    parser.add_argument("--model", default=None,
                        help="model file or a model name in the model folder (default: the folder's active "
                             "model, else the shipped default)")
    parser.add_argument("--model-folder", default=None, help="model store folder (default: from --config)")
    parser.add_argument("--config", default=None, help="config file (model, model_folder, reading settings)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="cpu")
    parser.add_argument("--batch-size", type=int, default=16, help="scans per forward pass")


def load_from_args(args: argparse.Namespace):
    """(Classifier, ReadingConfig) from the shared arguments; raises ModelError or ConfigError."""
    from afmwatch.config import ReadingConfig, load_config
    from afmwatch.networks.classifier import load_classifier
    from afmwatch.networks.store import resolve_model

    config = load_config(args.config) if args.config else None
    model = args.model or (config.model if config else None)
    folder = args.model_folder or (config.model_folder if config else None)
    classifier = load_classifier(resolve_model(model, folder), device=args.device)
    return classifier, (config.reading if config else ReadingConfig())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", help="scan files (any format afmwatch reads)")
    add_model_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON array")


def run(args: argparse.Namespace) -> int:
    from afmwatch.config import ConfigError
    from afmwatch.networks.classifier import classify_paths
    from afmwatch.networks.model_file import ModelError

    try:
        classifier, reading = load_from_args(args)
    except (ModelError, ConfigError, RuntimeError) as exc:
        print(f"afmwatch classify: {exc}", file=sys.stderr)
        return 2
    rows = []
    for result in classify_paths(classifier, [Path(f) for f in args.files], batch_size=args.batch_size, reading=reading):
        p = result.prediction
        row = {"path": str(result.path), "label": p.label if p else None, "decision": p.decision if p else None,
               "confidence": round(p.confidence, 6) if p else None,
               "probabilities": {k: round(v, 6) for k, v in p.probabilities.items()} if p else None,
               "error": result.error}
        rows.append(row)
        if not args.json:
            if p:
                print(f"{p.decision:<7} {p.label:<5} conf {p.confidence:.3f}  "
                      f"P(good) {p.probabilities['good']:.3f}  P(bad) {p.probabilities['bad']:.3f}  {result.path}")
            else:
                print(f"error   {result.path}: {result.error}")
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"model {classifier.name} ({classifier.arch}); review when P(bad) in "
              f"[{classifier.review_band[0]:.2f}, {classifier.review_band[1]:.2f}]", file=sys.stderr)
    return 1 if any(row["error"] for row in rows) else 0
