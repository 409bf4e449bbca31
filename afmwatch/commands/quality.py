"""`afmwatch quality FILE... [--json] [--config FILE]`: the quality metrics of each scan and what the rules say."""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="scan files (any format afmwatch reads); a folder stands for every scan in it",
    )
    parser.add_argument("--json", action="store_true", help="one JSON document: a list with one object per file")
    parser.add_argument("--config", help="take the reading settings and rules from this config file")


def run(args: argparse.Namespace) -> int:
    from afmwatch.commands.inspect import expand_folders
    from afmwatch.config import ConfigError, load_config
    from afmwatch.quality import measure
    from afmwatch.readers import read_retrace, read_scan
    from afmwatch.scan import ScanError
    from afmwatch.verdict import Policy, rules_block

    try:
        config = load_config(args.config) if args.config else None
    except ConfigError as exc:
        print(f"{exc.source}: invalid configuration", file=sys.stderr)
        for error in exc.errors:
            print(f"  - {error}", file=sys.stderr)
        return 1
    reports, status = [], 0
    for path in expand_folders(args.files):
        name = str(path)
        try:
            scan = read_scan(name, config.reading if config else None)
        except ScanError as exc:
            status = 1
            reports.append({"file": name, "error": exc.reason})
            if not args.json:
                print(f"{name}: cannot read: {exc.reason}", file=sys.stderr)
            continue
        block = rules_block(
            measure(scan, read_retrace(scan, config.reading if config else None)), Policy.from_config(config)
        )
        reports.append({"file": name, "channel": scan.channel, "units": scan.units, **block})
        if not args.json:
            print(_as_text(name, scan.channel, scan.units, block))
    if args.json:
        json.dump(reports, sys.stdout, indent=2)
        print()
    return status


def _as_text(name: str, channel: str, units: str, block: dict) -> str:
    from afmwatch.quality import METRICS, format_value

    verdict = block["decision"] or "no rule fired"
    lines = [f"{name} ({channel}): {verdict}"]
    lines += [f"  ! {reason}" for reason in block["reasons"]]
    width = max(len(k) for k in METRICS)
    for key, value in block["metrics"].items():
        lines.append(f"  {key:<{width}}  {format_value(key, value, units)}")
    return "\n".join(lines)
