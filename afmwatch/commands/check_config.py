"""`afmwatch check-config FILE`: print the effective configuration, or every error (exit 1).
`afmwatch check-config --schema`: print the config's JSON Schema (for editors).

It runs every check `afmwatch run` makes before it starts (the folders and where they lie, the device,
the model loaded and probed, the denoise model loaded), without creating a folder or starting anything,
so that a config that passes here also starts."""

from __future__ import annotations

import argparse
import sys

import yaml

from afmwatch.config import Config, ConfigError, config_schema_text, config_to_dict, load_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", nargs="?", help="YAML config file")
    parser.add_argument(
        "--schema",
        action="store_true",
        help="print the JSON Schema of the config file (for an editor's completion and checks) and exit",
    )
    parser.add_argument(
        "--no-model",
        action="store_true",
        help="skip loading the classifier and the denoise model (quick; checks the file and the folders only)",
    )


def start_errors(config: Config, *, load_models: bool = True) -> list[str]:
    """What would stop `afmwatch run` with this config, each naming the setting."""
    from afmwatch.daemon.service import startup_errors

    # a config without a watch folder serves the commands that need none (train, classify): no folder checks
    errors = startup_errors(config, create=False) if config.watch_folder is not None else []
    from afmwatch.networks.classifier import resolve_device

    device = "cpu"
    try:
        device = str(resolve_device(config.device))
    except RuntimeError as exc:
        errors.append(f"device: {exc}")
    if not load_models:
        return errors
    from afmwatch.daemon.worker import load_checked, model_path
    from afmwatch.networks.model_file import ModelError

    try:
        load_checked(model_path(config), device)
    except ModelError as exc:
        errors.append(f"model: {exc.path}: {exc.reason}")
    if config.denoise.enabled and config.denoise.model is not None:
        from afmwatch.denoise.model import load_denoiser

        try:
            load_denoiser(config.denoise.model, device="cpu")
        except ModelError as exc:
            errors.append(f"denoise.model: {exc.path}: {exc.reason}")
    return errors


def run(args: argparse.Namespace) -> int:
    if args.schema:
        print(config_schema_text(), end="")
        return 0
    if args.file is None:
        print("afmwatch check-config: give a config FILE (or --schema)", file=sys.stderr)
        return 2
    try:
        config = load_config(args.file)
    except ConfigError as exc:
        print(f"{exc.source}: invalid configuration", file=sys.stderr)
        for error in exc.errors:
            print(f"  - {error}", file=sys.stderr)
        return 1
    errors = start_errors(config, load_models=not args.no_model)
    if errors:
        print(f"{args.file}: afmwatch run would not start", file=sys.stderr)
        for error in errors:
            print(f"  - {error}", file=sys.stderr)
        return 1
    print(yaml.safe_dump(config_to_dict(config), sort_keys=False), end="")
    return 0
