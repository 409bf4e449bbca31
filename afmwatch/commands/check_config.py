"""`afmwatch check-config FILE`: print the effective configuration, or every error (exit 1)."""

from __future__ import annotations

import argparse
import sys

import yaml

from afmwatch.config import ConfigError, config_to_dict, load_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="YAML config file")


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.file)
    except ConfigError as exc:
        print(f"{exc.source}: invalid configuration", file=sys.stderr)
        for error in exc.errors:
            print(f"  - {error}", file=sys.stderr)
        return 1
    print(yaml.safe_dump(config_to_dict(config), sort_keys=False), end="")
    return 0
