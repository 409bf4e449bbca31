"""Command line: argument parsing only. Each subcommand lives in `afmwatch.commands.<name>`
with `add_arguments(parser)` and `run(args) -> exit status`, imported only when used (so
`afmwatch inspect` never pays for importing torch)."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from afmwatch import __version__
from afmwatch.log import configure_logging

# subcommand -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "check-config": ("afmwatch.commands.check_config", "validate a config file and print the effective settings"),
    "inspect": ("afmwatch.commands.inspect", "show what afmwatch reads in scan files: format, channels, size, z range"),
    "run": ("afmwatch.commands.run", "run the watch-folder daemon: settle, classify, sort, write sidecars"),
    "status": ("afmwatch.commands.status", "show the daemon's journal: counts, queue, model, throughput, errors"),
    "review": (
        "afmwatch.commands.review",
        "serve the review page: check and correct decisions in a browser, rules what-if, JSON API",
    ),
    "demo": ("afmwatch.commands.demo", "run the daemon with the shipped model on a generated inbox (make run)"),
    "train": ("afmwatch.commands.train", "train a good/bad classifier on a folder with good/ and bad/"),
    "classify": ("afmwatch.commands.classify", "classify scan files good/bad with a model"),
    "evaluate": ("afmwatch.commands.evaluate", "measure a model on a labelled folder (metrics and plots)"),
    "models": ("afmwatch.commands.models", "the model store: list, show, promote the active model"),
    "quality": (
        "afmwatch.commands.quality",
        "quality metrics of scans (aborted, scars, clipping, noise...) and the rules",
    ),
    "synth": ("afmwatch.commands.synth", "write synthetic scan sets: labelled good/bad, or denoising pairs"),
    "train-denoiser": (
        "afmwatch.commands.train_denoiser",
        "train a denoiser (window-mlp or conv) on noisy/clean pairs",
    ),
    "denoise": ("afmwatch.commands.denoise", "write denoised height maps (TIFF, .gwy, PNG); originals untouched"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="afmwatch", description="Watch an AFM export folder; classify, sort and report every scan."
    )
    parser.add_argument("--version", action="version", version=f"afmwatch {__version__}")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(_module=module_name)
        importlib.import_module(module_name).add_arguments(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`afmwatch inspect DIR | head`): stop quietly, as cat and grep do; stdout
        # points at /dev/null so that Python's flush at exit does not raise again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, the status a shell reports for a killed pipe writer
