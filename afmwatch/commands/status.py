"""`afmwatch status --config FILE [--json]`: what the daemon has done, read from its journal."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from typing import Any

from afmwatch.config import ConfigError, load_config

STATE_FOLDER_LOW_BYTES = 1 << 20  # below this the journal's next writes are likely to fail


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="the daemon's YAML config file")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--errors", type=int, default=5, help="how many recent errors to show (default 5)")


def collect(config: Any, errors: int = 5) -> dict[str, Any]:
    """The status as plain data (what `--json` prints)."""
    from afmwatch.daemon.journal import OPEN_STATES, Journal, State, journal_path, state_folder

    folder = state_folder(config)
    if not journal_path(folder).exists():
        raise FileNotFoundError(f"no journal in {folder}: the daemon has not run with this config yet")
    journal = Journal(folder, readonly=True)
    try:
        service = journal.service()
        counts = journal.counts()
        now = time.time()
        last_minute, last_hour = journal.finished_since(now - 60), journal.finished_since(now - 3600)
        recent = [
            {"file": e.path, "state": e.state, "error": e.error, "at": e.updated_at}
            for e in journal.last_errors(errors)
        ]
        decisions = journal.decision_counts()
    finally:
        journal.close()
    updated = service.get("updated_at")
    running = bool(service.get("running")) and updated is not None and now - updated < 30
    trouble = service.get("trouble", "") if running else ""
    free = shutil.disk_usage(folder).free
    if free < STATE_FOLDER_LOW_BYTES:  # the service cannot record its status either: say it from here
        running = bool(service.get("running")) and _alive(service.get("pid"))
        note = f"state folder {folder} full ({free} bytes free): the journal cannot be written, intake paused"
        trouble = f"{note}; {trouble}" if trouble else note
    return {
        "running": running,
        "pid": service.get("pid"),
        "started_at": service.get("started_at"),
        "status_updated_at": updated,
        "journal": str(journal_path(folder)),
        "watch_folder": str(config.watch_folder),
        "output_root": str(config.output_root),
        "states": counts,
        "decisions": {k: v for k, v in decisions.items() if k != "none"},
        "in_progress": sum(counts.get(s, 0) for s in (*OPEN_STATES, State.ACTING)),
        "queues": service.get("queues", {}),
        "sort_waiting": service.get("sort_waiting", {}) if running else {},
        "trouble": trouble,
        "state_folder_free_bytes": free,
        "model": service.get("model"),
        "throughput": {
            "last_minute": last_minute,
            "last_hour": last_hour,
            "per_second_last_minute": round(last_minute / 60, 3),
        },
        "last_errors": recent,
    }


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, another user's
    return True


def _print(status: dict[str, Any]) -> None:
    from afmwatch.daemon.sidecar import iso_utc
    from afmwatch.verdict import Decision

    state = "running" if status["running"] else "not running"
    print(f"afmwatch: {state}" + (f" (pid {status['pid']})" if status["running"] else ""))
    if status["trouble"]:
        print(f"  held up    {status['trouble']}")
    print(f"  watching   {status['watch_folder']}")
    print(f"  sorting to {status['output_root']}")
    model = status["model"] or {}
    if model:
        print(
            f"  model      {model.get('name')} ({model.get('arch')}, sha256 {model.get('sha256', '')[:12]}, {model.get('device')})"
        )
    decisions = status["decisions"]
    print("  sorted     " + ", ".join(f"{d} {decisions.get(d, 0)}" for d in Decision))
    print("  states     " + ", ".join(f"{k} {v}" for k, v in sorted(status["states"].items())))
    queues = status["queues"]
    if queues:
        print("  queue      " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in queues.items()))
    tp = status["throughput"]
    print(f"  throughput {tp['last_minute']} in the last minute, {tp['last_hour']} in the last hour")
    if status["last_errors"]:
        print("  last errors:")
        for error in status["last_errors"]:
            print(f"    {iso_utc(error['at'])}  {error['file']}: {error['error']}")


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
        status = collect(config, args.errors)
    except ConfigError as exc:
        print(f"{exc.source}: invalid configuration", file=sys.stderr)
        for error in exc.errors:
            print(f"  - {error}", file=sys.stderr)
        return 1
    except FileNotFoundError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        _print(status)
    return 0
