"""The daemon end to end, against its limits, in one run.

N synthetic scans (default 2,000) are dropped into the watch folder of a real `afmwatch run` at once.
The daemon's rate is files/s from the first scan settling until the last sidecar is written;
`settle_seconds` (the wait before a file counts as complete) is reported apart. In the same run and
on the same files this measures the limits it is held to:

- forward limit: the network alone on tensors in memory, at the daemon's batch size;
- read limit: the reader pool alone, every core (benchmarks.read_limit);
- end-to-end limit: the smaller of the two (the pipeline cannot beat its slower stage);
- naive loop: one file after the other (benchmarks.naive_loop).

Targets: daemon >= 0.85 x the end-to-end limit and >= 3 x the naive loop, for the study's convnet and
for the shipped default model.

    python -m benchmarks.daemon_e2e [--quick] [--files 2000] [--models convnet,default] [--settle 1]
"""

from __future__ import annotations

import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.common import (
    bench_models,
    child_env,
    copy_files,
    cpu_count,
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
from benchmarks.daemon_run import DaemonProcess, drop, epoch, read_sidecars
from benchmarks.forward_limit import classifier_forward_rate
from benchmarks.naive_loop import naive_full_rate, naive_rate
from benchmarks.read_limit import read_limits

LIMIT_TARGET = 0.85
NAIVE_TARGET = 3.0
STAGES = ("settle", "hash", "read", "quality", "preprocess", "wait", "inference", "act", "total")


def stage_means(sidecars: list[dict[str, Any]]) -> dict[str, float]:
    """Mean milliseconds per file of every stage the sidecars time."""
    totals: Counter = Counter()
    counts: Counter = Counter()
    for sidecar in sidecars:
        for stage, ms in (sidecar.get("timings_ms") or {}).items():
            if ms is not None:
                totals[stage] += ms
                counts[stage] += 1
    return {stage: totals[stage] / counts[stage] for stage in totals}


def stage_table(models: list[tuple[str, dict[str, float]]]) -> str:
    """Mean ms per stage for each (model, stage_ms), stages in pipeline order."""
    stages = [s for s in STAGES if any(s in ms for _, ms in models)]
    stages += sorted({s for _, ms in models for s in ms} - set(stages))
    return table(["model"] + stages, [[name] + [fmt(ms.get(s), 1) for s in stages] for name, ms in models])


def daemon_rate(
    files: list[Path],
    model: Path,
    work: Path,
    *,
    settle: float,
    device: str,
    read_workers: int,
    batch_size: int,
    act_workers: int | None,
    env: dict[str, str],
) -> dict[str, Any]:
    """Drop `files` (copies) into a fresh daemon's inbox at once; the rate from the first file settling
    to the last sidecar, with the settle wait and the whole wall time apart."""
    staging = copy_files(files, work / "staging")
    daemon = DaemonProcess(
        work / "daemon",
        model,
        settle_seconds=settle,
        device=device,
        read_workers=read_workers,
        batch_size=batch_size,
        act_workers=act_workers,
        env=env,
    )
    with daemon:
        began = drop(staging, daemon.inbox)
        paths = daemon.wait_for(len(files), timeout=600 + 2.0 * len(files), interval=0.5)
    sidecars = read_sidecars(paths)
    first_seen = min(epoch(s["seen_at"]) for s in sidecars)
    first_settled = min(epoch(s["settled_at"]) for s in sidecars if s.get("settled_at"))
    last_written = max(s["written_at"] for s in sidecars)
    processing = last_written - first_settled
    return {
        "files": len(sidecars),
        "files_per_s": len(sidecars) / processing,
        "files_per_s_with_settle": len(sidecars) / (last_written - first_seen),
        "processing_s": processing,
        "settle_wait_s": first_settled - first_seen,
        "first_event_after_drop_s": first_seen - began,
        "wall_s": last_written - began,
        "decisions": dict(Counter(s["decision"] for s in sidecars)),
        "stage_ms": stage_means(sidecars),
    }


def measure_model(name: str, model: Path, files: list[Path], work: Path, args: Any, device: str) -> dict[str, Any]:
    limit_files = files[: args.limit_files]
    forward = classifier_forward_rate(model, args.batch_size, device, args.seconds, 1 if args.quick else 3)
    modes = ("threads",) if args.quick else ("threads", "processes")  # --quick: no slow process start-up
    reads = read_limits(limit_files, model, cpu_count(), modes)
    naive = naive_rate(files[: args.naive_files], model, work / "naive", device)
    naive_full = naive_full_rate(files[: args.naive_files], model, work / "naive-full", device)
    daemon = daemon_rate(
        files,
        model,
        work / "daemon",
        settle=args.settle,
        device=device,
        read_workers=args.read_workers,
        batch_size=args.batch_size,
        act_workers=args.act_workers,
        env=child_env(args),
    )
    limit = min(reads["limit"], forward)
    return {
        "model": model_label(name, model),
        "device": device,
        "forward_limit": forward,
        "read_limit": reads["limit"],
        "read_threads": reads["threads"],
        "read_processes": reads["processes"],
        "e2e_limit": limit,
        "shared_cpu_limit": 1 / (1 / reads["limit"] + 1 / forward),
        "naive": naive,
        "naive_full": naive_full,
        "daemon": daemon,
        "ratio_naive_full": daemon["files_per_s"] / naive_full,
        "ratio_limit": daemon["files_per_s"] / limit,
        "ratio_naive": daemon["files_per_s"] / naive,
        "meets_limit_target": daemon["files_per_s"] >= LIMIT_TARGET * limit,
        "meets_naive_target": daemon["files_per_s"] >= NAIVE_TARGET * naive,
    }


def _verdict(ratio: float, ok: bool) -> str:
    return f"{ratio:.2f} {'✓' if ok else '✗'}"


def markdown(rows: list[dict[str, Any]], args: Any, files: int, size: int) -> str:
    lines = [
        [
            r["model"],
            r["device"],
            fmt(r["forward_limit"]),
            fmt(r["read_limit"]),
            fmt(r["e2e_limit"]),
            fmt(r["naive"]),
            fmt(r["naive_full"]),
            fmt(r["daemon"]["files_per_s"]),
            _verdict(r["ratio_limit"], r["meets_limit_target"]),
            _verdict(r["ratio_naive"], r["meets_naive_target"]),
            f"{r['ratio_naive_full']:.2f}",
        ]
        for r in rows
    ]
    walls = "; ".join(
        f"{r['model']}: first file event {r['daemon']['first_event_after_drop_s']:.2f} s after the drop, "
        f"first file settled {r['daemon']['settle_wait_s']:.2f} s later, last sidecar "
        f"{r['daemon']['wall_s']:.1f} s after the drop; {fmt(r['daemon']['files_per_s_with_settle'])} files/s "
        f"with the settle wait counted ({r['daemon']['decisions']})"
        for r in rows
    )
    shared = "; ".join(f"{r['model']} {fmt(r['shared_cpu_limit'])}" for r in rows if r["device"] == "cpu")
    text = (
        f"{files} synthetic scans ({size}×{size} px float32 TIFF) renamed into the watch folder of a real "
        f"`afmwatch run` at once (batch size {args.batch_size}, {args.read_workers} reader threads, "
        + (f"{args.act_workers} sorting threads, " if args.act_workers else "")
        + f"settle_seconds {args.settle:g}). **Daemon** = files / (last sidecar written − first file settled): "
        "the settle wait is excluded and reported below. In the same run: the **forward limit** (network "
        f"alone, batch {args.batch_size}, tensors in memory), the **read limit** (reader pool alone on "
        f"{min(files, args.limit_files)} of the same files, every core), the **end-to-end limit** (the smaller "
        f"of the two), the **naive loop** (one file after the other, {min(files, args.naive_files)} files: read, "
        "preprocess, one forward pass, a JSON result) and the same loop doing **the daemon's work** per file "
        "(hash, quality metrics, rules, preview PNG, durable sidecar; `naive_loop.naive_full_rate`). "
        f"All in files/s. Targets: daemon ≥ {LIMIT_TARGET} × limit and ≥ {NAIVE_TARGET:g} × naive loop; the "
        "last column (no target) compares the daemon with one-at-a-time processing of the same work.\n\n"
        + table(
            [
                "model",
                "device",
                "forward limit",
                "read limit",
                "end-to-end limit",
                "naive loop",
                "naive loop, daemon's work",
                "daemon",
                "daemon / limit",
                "daemon / naive",
                "daemon / same-work loop",
            ],
            lines,
        )
        + "\n\nMean milliseconds per file in each stage, from the sidecars' `timings_ms` (reading runs in "
        "parallel reader processes, so its stages overlap in time; `wait` is time queued for the inference "
        "worker; `total` is first event to sorted):\n\n"
        + stage_table([(r["model"], r["daemon"]["stage_ms"]) for r in rows])
        + f"\n\nWall clock: {walls}."
    )
    if shared:
        text += (
            f"\n\nOn a CPU the readers and the network share the same cores, so the two stages cannot "
            f"both run at full speed at once: 1 / (1/read + 1/forward) gives {shared} files/s, a "
            "tighter bound than the smaller of the two."
        )
    return text


def main(argv: list[str] | None = None) -> int:
    p = parser("The daemon end to end against the read and forward limits and the naive loop.")
    p.add_argument("--files", type=int, default=2000, help="scans dropped at once (default 2000)")
    model_arguments(p)
    p.add_argument("--settle", type=float, default=1.0, help="settle_seconds of the daemon (default 1)")
    p.add_argument("--batch-size", type=int, default=16, help="the daemon's batch_size (default 16)")
    p.add_argument("--read-workers", type=int, default=cpu_count(), help="reader threads (default: one per core)")
    p.add_argument("--act-workers", type=int, help="sorting threads (default: the daemon's own default)")
    p.add_argument("--limit-files", type=int, default=500, help="files for the read limit (default 500)")
    p.add_argument("--naive-files", type=int, default=200, help="files for the naive loop (default 200)")
    p.add_argument("--seconds", type=float, default=3.0, help="least time for the forward limit (default 3)")
    args = p.parse_args(argv)
    device = setup(args)
    if args.quick:
        args.files, args.settle, args.limit_files, args.naive_files, args.seconds = 16, 0.3, 8, 8, 0.0
    size = 64 if args.quick else 256
    files = synthetic_scans(args.files, size, args.cache)
    rows = []
    with work_folder(args, "daemon-e2e") as work:
        models, notes = bench_models(work / "models", args.models.split(","))
        for name, model in models.items():
            rows.append(measure_model(name, model, files, work / name, args, device))
            shutil.rmtree(work / name, ignore_errors=True)
    body = markdown(rows, args, len(files), size) + "".join(f"\n\nNote: {note}." for note in notes)
    return report(
        args,
        "e2e",
        "python -m benchmarks.daemon_e2e",
        "The daemon end to end",
        body,
        {"rows": rows, "files": len(files), "settle_seconds": args.settle, "batch_size": args.batch_size},
    )


if __name__ == "__main__":
    sys.exit(main())
