"""Latency: scans arriving at a steady rate (default 5 per second, as a fast instrument exports),
each written straight into the watch folder; the time from the file's close to its sidecar being
written, p50 / p95 / max. Target: p95 within settle_seconds + 1 s.

    python -m benchmarks.latency [--quick] [--rate 5] [--seconds 60] [--settle 2] [--model convnet|default]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import (
    bench_models,
    child_env,
    cpu_count,
    fmt,
    model_arguments,
    model_label,
    parser,
    percentile,
    report,
    setup,
    synthetic_scans,
    table,
    work_folder,
)
from benchmarks.daemon_e2e import stage_means, stage_table
from benchmarks.daemon_run import DaemonProcess, read_sidecars

TARGET_MARGIN_S = 1.0


def steady_latencies(
    files: list[Path], model: Path, work: Path, *, rate: float, settle: float, device: str, env: dict[str, str]
) -> dict[str, Any]:
    """Write `files` into a daemon's inbox at `rate` per second; latency of each from close to sidecar."""
    contents = [(path.name, path.read_bytes()) for path in files]  # no disk reads while feeding
    closed: dict[str, float] = {}
    with DaemonProcess(work, model, settle_seconds=settle, device=device, read_workers=cpu_count(), env=env) as daemon:
        due = time.monotonic()
        for name, data in contents:
            time.sleep(max(0.0, due - time.monotonic()))
            with open(daemon.inbox / name, "wb") as handle:  # written in place, as most instruments do
                handle.write(data)
            closed[name] = time.time()
            due += 1.0 / rate
        paths = daemon.wait_for(len(files), timeout=300 + 2.0 * len(files))
    sidecars = read_sidecars(paths)
    latencies = [s["written_at"] - closed[Path(s["original_path"]).name] for s in sidecars]
    return {
        "files": len(latencies),
        "p50_s": percentile(latencies, 50),
        "p95_s": percentile(latencies, 95),
        "max_s": max(latencies),
        "stage_ms": stage_means(sidecars),
    }


def main(argv: list[str] | None = None) -> int:
    p = parser("Latency from a scan's close to its sidecar at a steady arrival rate.")
    p.add_argument("--rate", type=float, default=5.0, help="scans per second (default 5)")
    p.add_argument("--seconds", type=float, default=60.0, help="how long scans arrive (default 60)")
    p.add_argument("--settle", type=float, default=2.0, help="settle_seconds (default 2, the daemon's default)")
    model_arguments(p, "convnet,default")
    args = p.parse_args(argv)
    device = setup(args)
    if args.quick:
        args.seconds, args.settle = 2.0, 0.3
    count = max(1, round(args.rate * args.seconds))
    size = 64 if args.quick else 256
    files = synthetic_scans(count, size, args.cache)
    target = args.settle + TARGET_MARGIN_S
    rows = []
    with work_folder(args, "latency") as work:
        models, notes = bench_models(work / "models", args.models.split(","))
        for name, model in models.items():
            result = steady_latencies(
                files, model, work / name, rate=args.rate, settle=args.settle, device=device, env=child_env(args)
            )
            rows.append(
                {
                    "model": model_label(name, model),
                    "device": device,
                    **result,
                    "meets_target": result["p95_s"] <= target,
                }
            )
    lines = [
        [
            r["model"],
            r["device"],
            r["files"],
            fmt(r["p50_s"], 2),
            fmt(r["p95_s"], 2),
            fmt(r["max_s"], 2),
            f"{'✓' if r['meets_target'] else '✗'} (≤ {target:g} s)",
        ]
        for r in rows
    ]
    body = (
        f"{count} synthetic scans ({size}×{size} px) written into the watch folder at {args.rate:g} per second "
        f"for {args.seconds:g} s (settle_seconds {args.settle:g}); latency = the sidecar's write time − the "
        "moment the file was closed, in seconds. A file is first seen changing at its close, then waits "
        "settle_seconds without change before it is read.\n\n"
        + table(["model", "device", "files", "p50", "p95", "max", "p95 target"], lines)
        + "\n\nMean milliseconds per file in each stage:\n\n"
        + stage_table([(r["model"], r["stage_ms"]) for r in rows])
        + "".join(f"\n\nNote: {note}." for note in notes)
    )
    return report(
        args,
        "latency",
        "python -m benchmarks.latency",
        "Latency at a steady arrival rate",
        body,
        {"rows": rows, "rate": args.rate, "settle_seconds": args.settle, "target_s": target},
    )


if __name__ == "__main__":
    sys.exit(main())
