"""`afmwatch run --config FILE`: the watch-folder daemon (under systemd or in a terminal)."""

from __future__ import annotations

import argparse
import os
import sys

from afmwatch.config import ConfigError, load_config

EX_CONFIG = 78  # sysexits: configuration error (the unit's RestartPreventExitStatus)
EX_TEMPFAIL = 75  # sysexits: another service already runs on this state folder (try again later)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="YAML config file (see config.example.yaml)")


def print_config_errors(exc: ConfigError) -> None:
    print(f"{exc.source}: afmwatch cannot start", file=sys.stderr)
    for error in exc.errors:
        print(f"  - {error}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from afmwatch.daemon.lock import AlreadyRunning
    from afmwatch.daemon.notify import Notifier
    from afmwatch.daemon.service import Service
    from afmwatch.log import configure_logging
    from afmwatch.networks.model_file import ModelError

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print_config_errors(exc)
        return EX_CONFIG
    configure_logging(config.log_level)
    service = Service(config, config_path=args.config, notifier=Notifier.from_environ(os.environ))
    service.install_signal_handlers()
    try:
        service.start()
    except AlreadyRunning as exc:
        print(f"afmwatch cannot start: {exc}", file=sys.stderr)
        return EX_TEMPFAIL
    except ConfigError as exc:
        print_config_errors(exc)
        return EX_CONFIG
    except ModelError as exc:
        print(f"afmwatch cannot start: model {exc.path}: {exc.reason}", file=sys.stderr)
        return EX_CONFIG
    return service.serve()
