"""`afmwatch review --config FILE [--host 127.0.0.1] [--port 8787] [--read-only]`: the review page.

Serves the page over the daemon's journal and sidecars, beside a running daemon or alone (uvicorn,
one process). The environment variable AFMWATCH_REVIEW_TEST_PAUSE=STEP (planned, moved or written)
makes every correction stop for an hour after that step: the crash tests kill the server there.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from afmwatch.commands.run import EX_CONFIG, print_config_errors
from afmwatch.config import ConfigError

TEST_PAUSE_VARIABLE = "AFMWATCH_REVIEW_TEST_PAUSE"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="the daemon's YAML config file")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this PC only)")
    parser.add_argument("--port", type=int, default=8787, help="TCP port (default 8787)")
    parser.add_argument("--read-only", action="store_true", help="serve the page without any action")
    parser.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="another host name people use to reach the page (checked against the Host header); repeatable",
    )


def _pause_hook(step: str | None):
    if not step:
        return None

    def pause(reached: str) -> None:
        if reached == step:
            print(f"{TEST_PAUSE_VARIABLE}: paused after {step}", file=sys.stderr, flush=True)
            time.sleep(3600)

    return pause


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from afmwatch.log import configure_logging
    from afmwatch.review.app import create_app
    from afmwatch.review.context import ReviewContext
    from afmwatch.review.security import Guard, load_or_create_token

    try:
        from afmwatch.config import load_config
        from afmwatch.daemon.journal import state_folder

        config = load_config(args.config)
        token = load_or_create_token(state_folder(config))
        ctx = ReviewContext.open(Path(args.config), token=token, read_only=args.read_only)
    except ConfigError as exc:
        print_config_errors(exc)
        return EX_CONFIG
    configure_logging(config.log_level)
    guard = Guard.for_server(token, args.host, args.port, args.allow_host)
    app = create_app(ctx, guard, pause=_pause_hook(os.environ.get(TEST_PAUSE_VARIABLE)))
    where = f"http://{args.host}:{args.port}/"
    print(f"afmwatch review: {where} (token in {ctx.state_folder / 'review-token'})", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0
