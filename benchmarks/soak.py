"""Soak: N scans through a real `afmwatch run` while it is killed with kill -9 at random moments (and
restarted at once, as systemd would), its output disk is full for a while and then read-only for a
while. Not a timed test: it reports what a user would notice, lost, doubled and stuck scans (target
0, 0, 0), sidecars that do not name their scan's sha256, and the longest wait from a scan's arrival
to its sidecar.

    .venv/bin/python -m benchmarks.soak              # 10,000 scans, 20 kills, 30 s full, 30 s read-only
    .venv/bin/python -m benchmarks.soak --n 1000     # smaller

The output folder is a tmpfs mounted for the run (root only): filled with a file for the full window,
remounted read-only for the other. Where mounting is not allowed, both windows are skipped and the
section says so (kill -9 still runs). The network is a small untrained ConvNet on 32 px inputs: what
is soaked is the daemon's bookkeeping, not the network's speed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from benchmarks.common import REPO, fmt, parser, report, table, work_folder

SIDECAR = ".afmwatch.json"
READY_TIMEOUT_S = 300.0


def tiny_model(folder: Path) -> Path:
    import torch

    from afmwatch.networks.architectures import get_architecture
    from afmwatch.networks.classifier import save_classifier
    from afmwatch.networks.pipeline import make_pipeline

    torch.manual_seed(0)
    arch = get_architecture("convnet")
    meta = {
        "name": "soak-convnet-32",
        "arch": "convnet",
        "pipeline": make_pipeline(arch.channels, arch.normalise, resize=40, crop=32),
        "class_names": ["good", "bad"],
        "temperature": 1.0,
        "review_band": [0.45, 0.55],
    }
    folder.mkdir(parents=True, exist_ok=True)
    return save_classifier(folder / "soak.safetensors", arch.build(2, 32, None), meta)


def make_scans(folder: Path, n: int, size: int, seed: int) -> dict[str, str]:
    """`n` distinct float32 TIFF height maps; returns name -> sha256."""
    from afmwatch.writers import write_tiff

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    expected = {}
    for i in range(n):
        height = 0.3 * rng.standard_normal((size, size)).astype(np.float32) + 0.02 * x + 0.01 * y
        path = write_tiff(folder / f"s{i:05d}.tif", height, 2.0)
        expected[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return expected


def _run(*command: str) -> bool:
    return subprocess.run(command, capture_output=True).returncode == 0


class Service:
    """The daemon as a child process, restarted after each kill (what systemd's Restart= does)."""

    def __init__(self, config: Path, log: Path):
        self.config, self.log = config, log
        self.process: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        with open(self.log, "a") as handle:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "afmwatch", "run", "--config", str(self.config)],
                cwd=REPO,
                stdout=handle,
                stderr=subprocess.STDOUT,
            )
        self.starts += 1
        deadline = time.monotonic() + READY_TIMEOUT_S
        while self.log.read_text().count('"daemon_ready"') < self.starts:
            if self.process.poll() is not None:
                raise RuntimeError(f"afmwatch run exited with {self.process.returncode}; see {self.log}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"afmwatch run not ready after {READY_TIMEOUT_S:.0f} s; see {self.log}")
            time.sleep(0.1)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(300)


def soak(args: Any, work: Path) -> dict[str, Any]:
    staging, inbox, out, state = work / "staging", work / "inbox", work / "out", work / "state"
    inbox.mkdir(parents=True)
    out.mkdir()
    expected = make_scans(staging, args.n, args.size, args.seed)
    scan_bytes = sum((staging / name).stat().st_size for name in expected)
    mounted = _run(
        "mount", "-t", "tmpfs", "-o", f"size={max(64 << 20, 4 * scan_bytes + (64 << 20))}", "tmpfs", str(out)
    )
    config = work / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "watch_folder": str(inbox),
                "output_root": str(out),
                "state_folder": str(state),
                "model": str(tiny_model(work / "model")),
                "device": "cpu",
                "settle": {"settle_seconds": args.settle_seconds},
                "workers": {"read_workers": 2, "queue_size": 32, "batch_size": 16},
            }
        )
    )
    feed_seconds = max(args.min_feed_seconds, args.n / args.rate)
    rng = random.Random(args.seed)
    kills = sorted(rng.uniform(0.03, 0.97) * feed_seconds for _ in range(args.kills))
    full_at, read_only_at = 0.3 * feed_seconds, 0.6 * feed_seconds
    arrived: dict[str, float] = {}
    service = Service(config, work / "daemon.log")
    service.start()
    started = time.monotonic()

    def feed() -> None:
        for i, name in enumerate(sorted(expected)):
            delay = started + i * feed_seconds / args.n - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            (staging / name).replace(inbox / name)
            arrived[name] = time.time()

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    events: list[tuple[float, str]] = []
    windows = (
        [
            (full_at, "full"),
            (full_at + args.full_seconds, "room"),
            (read_only_at, "ro"),
            (read_only_at + args.read_only_seconds, "rw"),
        ]
        if mounted
        else []
    )
    schedule = sorted([(t, "kill") for t in kills] + windows)
    filler = out / ".filler"
    for at, what in schedule:
        time.sleep(max(0.0, started + at - time.monotonic()))
        if what == "kill":
            service.kill()
            service.start()
        elif what == "full":
            with contextlib.suppress(OSError), open(filler, "wb", buffering=0) as handle:
                while True:
                    handle.write(b"\0" * (1 << 16))
        elif what == "room":
            filler.unlink()
        elif what == "ro":
            _run("mount", "-o", "remount,ro", str(out))
        elif what == "rw":
            _run("mount", "-o", "remount,rw", str(out))
        events.append((time.monotonic() - started, what))
    feeder.join()
    deadline = time.monotonic() + args.drain_timeout
    while _sidecar_count(out) < len(expected) and time.monotonic() < deadline:
        time.sleep(1.0)
    code = service.stop()
    total_s = time.monotonic() - started
    results = _check(expected, arrived, inbox, out, state)
    results.update(
        n=args.n,
        kills=len(kills),
        restarts=service.starts - 1,
        exit_code=code,
        total_s=round(total_s, 1),
        feed_s=round(feed_seconds, 1),
        mounted=mounted,
        full_seconds=args.full_seconds if mounted else 0,
        read_only_seconds=args.read_only_seconds if mounted else 0,
        log_counts={
            e: service.log.read_text().count(f'"{e}"')
            for e in ("sort_waiting", "scan_failed_in_place", "stage_died", "reconcile_waiting")
        },
    )
    if mounted:
        _run("umount", "-l", str(out))
    return results


def _sidecar_count(out: Path) -> int:
    return sum(1 for _, _, names in os.walk(out) for n in names if n.endswith(SIDECAR) and not n.startswith("."))


def _check(expected: dict[str, str], arrived: dict[str, float], inbox: Path, out: Path, state: Path) -> dict[str, Any]:
    """Lost, doubled, stuck, wrong sidecars and the longest wait, from the folders and the journal."""
    import sqlite3

    from afmwatch.daemon.sidecar import sidecar_path

    by_hash: dict[str, list[Path]] = {}
    wrong_sidecars, waits = 0, []
    for folder, _, names in os.walk(out):
        for name in names:
            if name.startswith(".") or name.endswith((SIDECAR, ".afmwatch.png")):
                continue
            path = Path(folder) / name
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            by_hash.setdefault(digest, []).append(path)
            sidecar = sidecar_path(path)
            try:
                data = json.loads(sidecar.read_text())
            except (OSError, ValueError):
                wrong_sidecars += 1
                continue
            if data.get("sha256") != digest:
                wrong_sidecars += 1
            original = Path(data.get("original_path", "")).name
            if original in arrived:
                waits.append(sidecar.stat().st_mtime - arrived[original])
    left = {p.name for p in inbox.rglob("*") if p.is_file()}
    hashes = set(expected.values())
    lost = sum(1 for name, digest in expected.items() if digest not in by_hash and name not in left)
    doubled = sum(len(paths) - 1 for digest, paths in by_hash.items() if digest in hashes and len(paths) > 1)
    doubled += sum(1 for name in left if expected.get(name) in by_hash)
    with contextlib.closing(sqlite3.connect(state / "journal.sqlite3")) as db:
        states = dict(db.execute("SELECT state, COUNT(*) FROM files GROUP BY state").fetchall())
        failed_in_place = db.execute(
            "SELECT COUNT(*) FROM files WHERE state = 'failed' AND error LIKE '%stays in%'"
        ).fetchone()[0]
    stuck = sum(n for s, n in states.items() if s in ("seen", "settled", "processing", "acting")) + len(left)
    return {
        "lost": lost,
        "doubled": doubled,
        "stuck": stuck,
        "left_in_watch_folder": len(left),
        "failed_in_place": failed_in_place,
        "wrong_sidecars": wrong_sidecars,
        "sorted": sum(len(p) for d, p in by_hash.items() if d in hashes),
        "journal_states": states,
        "longest_wait_s": round(max(waits), 1) if waits else None,
        "median_wait_s": round(float(np.median(waits)), 2) if waits else None,
    }


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=10_000, help="scans (default 10,000)")
    p.add_argument("--kills", type=int, default=20, help="kill -9 of the service at random moments (default 20)")
    p.add_argument("--full-seconds", type=float, default=30.0, help="output disk full this long (default 30)")
    p.add_argument("--read-only-seconds", type=float, default=30.0, help="output read-only this long (default 30)")
    p.add_argument("--rate", type=float, default=40.0, help="scans arriving per second (default 40)")
    p.add_argument("--min-feed-seconds", type=float, default=150.0, help="arrivals spread over at least this long")
    p.add_argument("--size", type=int, default=64, help="scan size in pixels (default 64)")
    p.add_argument("--settle-seconds", type=float, default=0.5)
    p.add_argument("--drain-timeout", type=float, default=1800.0, help="wait at most this long for the last scans")
    p.add_argument("--seed", type=int, default=14)
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.kills, args.full_seconds, args.read_only_seconds, args.min_feed_seconds = 60, 2, 5.0, 5.0, 20.0
    with work_folder(args, "soak") as work:
        r = soak(args, work)
    rows = [
        ["scans", r["n"]],
        ["kill -9 of the service (each restarted at once)", f"{r['kills']} ({r['restarts']} restarts)"],
        [
            "output disk full / read-only",
            f"{fmt(r['full_seconds'], 0)} s / {fmt(r['read_only_seconds'], 0)} s"
            if r["mounted"]
            else "skipped: cannot mount a tmpfs here (not root)",
        ],
        ["**lost**", r["lost"]],
        ["**doubled**", r["doubled"]],
        ["**stuck** (not final in the journal, or left in the watch folder)", r["stuck"]],
        ["sidecars whose sha256 is not their scan's", r["wrong_sidecars"]],
        ["failed in place", r["failed_in_place"]],
        ["longest wait, arrival to sidecar", f"{fmt(r['longest_wait_s'])} s (median {fmt(r['median_wait_s'], 2)} s)"],
        ["whole run (arrivals spread over)", f"{fmt(r['total_s'])} s ({fmt(r['feed_s'])} s)"],
        ["`sort_waiting` log events", r["log_counts"]["sort_waiting"]],
        ["exit status of the final SIGTERM", r["exit_code"]],
    ]
    body = (
        "N scans (64 px float32 TIFFs) arrive steadily into a real `afmwatch run` (small untrained ConvNet, "
        "CPU, 2 readers, settle 0.5 s) while it is killed with kill -9 at random moments and restarted at "
        "once; the output folder (a tmpfs) is filled for the full window at 30 % of the arrivals and remounted "
        "read-only at 60 %. Target: lost, doubled, stuck 0, 0, 0. Full run: "
        "`.venv/bin/python -m benchmarks.soak` (10,000 scans).\n\n" + table(["", ""], rows)
    )
    command = f"python -m benchmarks.soak --n {args.n}"
    return report(args, "soak", command, "Soak: kill -9, a full and a read-only output disk", body, r)


if __name__ == "__main__":
    raise SystemExit(main())
