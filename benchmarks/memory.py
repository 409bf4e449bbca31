"""Memory: the resident memory (RSS) of a real `afmwatch run` over 5,000 scans, arriving in bursts.
A service that runs for months must not grow: after a warm-up (the first 500 files: caches,
allocator pools, the model's workspace) growth must stay under 50 MB.

    python -m benchmarks.memory [--quick] [--files 5000] [--burst 250] [--warmup 500] [--model convnet|default]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from benchmarks.common import (
    bench_models,
    child_env,
    copy_files,
    fmt,
    model_arguments,
    model_label,
    parser,
    report,
    setup,
    synthetic_scans,
    table,
    work_folder,
)
from benchmarks.daemon_run import DaemonProcess, drop

GROWTH_TARGET_MB = 50.0


def rss_over_files(
    files: list[Path], model: Path, work: Path, *, burst: int, settle: float, device: str, env: dict[str, str]
) -> list[tuple[int, float]]:
    """(files sorted so far, daemon RSS in MB) at start and after every burst has been sorted."""
    points = []
    with DaemonProcess(work / "daemon", model, settle_seconds=settle, device=device, env=env) as daemon:
        points.append((0, daemon.rss_mb()))
        for start in range(0, len(files), burst):
            chunk = copy_files(files[start : start + burst], work / "staging")
            drop(chunk, daemon.inbox)
            daemon.wait_for(start + len(chunk), timeout=300 + 5.0 * len(chunk), interval=1.0)
            points.append((start + len(chunk), daemon.rss_mb()))
    return points


def summarise(points: list[tuple[int, float]], warmup: int) -> dict[str, Any]:
    import numpy as np

    after = [(n, rss) for n, rss in points if n >= warmup] or points[-1:]
    counts, rss = np.array([n for n, _ in after], float), np.array([r for _, r in after])
    slope = float(np.polyfit(counts, rss, 1)[0]) * 1000 if len(after) >= 3 else None
    growth = points[-1][1] - after[0][1]
    return {
        "rss_start_mb": points[0][1],
        "rss_after_warmup_mb": after[0][1],
        "rss_end_mb": points[-1][1],
        "rss_max_mb": max(r for _, r in points),
        "growth_after_warmup_mb": growth,
        "slope_mb_per_1000_files": slope,
        "meets_target": growth < GROWTH_TARGET_MB,
        "points": points,
    }


def main(argv: list[str] | None = None) -> int:
    p = parser("Resident memory of the daemon over thousands of scans.")
    p.add_argument("--files", type=int, default=5000, help="scans in all (default 5000)")
    p.add_argument("--burst", type=int, default=250, help="scans dropped at once (default 250)")
    p.add_argument("--warmup", type=int, default=500, help="scans before growth is counted (default 500)")
    p.add_argument("--settle", type=float, default=0.5, help="settle_seconds (default 0.5)")
    model_arguments(p, "default")
    args = p.parse_args(argv)
    device = setup(args)
    if args.quick:
        args.files, args.burst, args.warmup, args.settle = 24, 8, 8, 0.3
        args.models = "convnet"
    size = 64 if args.quick else 256
    files = synthetic_scans(args.files, size, args.cache)
    rows = []
    with work_folder(args, "memory") as work:
        names = args.models.split(",")
        models, notes = bench_models(work / "models", names)
        if not models and "convnet" not in names:  # no default model: measure the convnet rather than nothing
            models, _ = bench_models(work / "models", ["convnet"])
        for name, model in models.items():
            points = rss_over_files(
                files, model, work / name, burst=args.burst, settle=args.settle, device=device, env=child_env(args)
            )
            rows.append({"model": model_label(name, model), "device": device, **summarise(points, args.warmup)})
    lines = [
        [
            r["model"],
            r["device"],
            fmt(r["rss_start_mb"]),
            fmt(r["rss_after_warmup_mb"]),
            fmt(r["rss_end_mb"]),
            fmt(r["rss_max_mb"]),
            fmt(r["growth_after_warmup_mb"]),
            fmt(r["slope_mb_per_1000_files"], 2),
            "✓" if r["meets_target"] else "✗",
        ]
        for r in rows
    ]
    curve = [
        [r["model"]] + [f"{n}: {fmt(rss, 0)}" for n, rss in r["points"][:: max(1, len(r["points"]) // 10)]]
        for r in rows
    ]
    body = (
        f"{len(files)} synthetic scans ({size}×{size} px) dropped in bursts of {args.burst} into a real `afmwatch run` "
        f"(settle_seconds {args.settle:g}, previews on); the resident memory (VmRSS, MB) of the daemon and its "
        f"reader processes together, read after every burst was sorted. Growth counts from the first "
        f"{args.warmup} files on; target < {GROWTH_TARGET_MB:g} MB.\n\n"
        + table(
            ["model", "device", "ready", f"after {args.warmup}", "end", "max", "growth", "MB per 1000 files", "target"],
            lines,
        )
        + "\n\nRSS (MB) against files sorted:\n\n"
        + "\n".join("- " + row[0] + ": " + ", ".join(row[1:]) for row in curve)
        + "".join(f"\n\nNote: {note}." for note in notes)
    )
    return report(
        args,
        "memory",
        "python -m benchmarks.memory",
        "Memory over thousands of scans",
        body,
        {"rows": rows, "files": len(files), "burst": args.burst, "warmup": args.warmup},
    )


if __name__ == "__main__":
    sys.exit(main())
