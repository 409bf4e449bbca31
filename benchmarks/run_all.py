"""Run every benchmark, each in its own process, and write their sections of BENCHMARKS.md plus a
summary of the targets. The denoising benchmark (benchmarks/denoise_quality.py) runs too when it is
there; it writes its own `## Denoising` section.

    python -m benchmarks.run_all [--quick] [--only e2e,latency] [--skip memory] [--results DIR]

`make bench` runs this. A full run takes long (the memory benchmark alone sorts 5,000 scans); run it
on a quiet machine, since other work on the same cores changes every number.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.common import BENCHMARKS_MD, DEFAULT_CACHE, REPO, fmt, stamp, table, write_section

# section name -> module, in the order they run (cheap and basic first)
SCRIPTS: dict[str, str] = {
    "machine": "benchmarks.machine",
    "forward": "benchmarks.forward_limit",
    "readers": "benchmarks.readers",
    "read": "benchmarks.read_limit",
    "naive": "benchmarks.naive_loop",
    "e2e": "benchmarks.daemon_e2e",
    "latency": "benchmarks.latency",
    "memory": "benchmarks.memory",
    "profile": "benchmarks.profile_e2e",
    "denoise": "benchmarks.denoise_quality",
    "denoise-real": "benchmarks.denoise_real",
}
NO_CACHE = {"denoise", "denoise-real"}  # make their own test pairs; write their own `## Denoising ...` sections


def run_script(name: str, module: str, args: Any, results: Path) -> dict[str, Any]:
    command = [sys.executable, "-m", module] + (["--quick"] if args.quick else [])
    command += ["--markdown", str(args.markdown), "--json", str(results / f"{name}.json")]
    if name not in NO_CACHE:
        command += ["--cache", str(args.cache)]
    print(f"== {name}: {' '.join(command[1:])}", flush=True)
    started = time.monotonic()
    code = subprocess.run(command, cwd=REPO).returncode
    seconds = time.monotonic() - started
    print(f"== {name}: exit {code} after {seconds:.0f} s", flush=True)
    return {"name": name, "exit": code, "seconds": seconds}


def _load(results: Path, name: str) -> dict[str, Any] | None:
    path = results / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _mark(ok: bool) -> str:
    return "✓ met" if ok else "✗ not met"


def summary(results: Path, runs: list[dict[str, Any]]) -> str:
    """The targets of the issue, each with its measured value and whether it is met."""
    rows = []
    e2e = _load(results, "e2e")
    for r in (e2e or {}).get("rows", []):
        rows.append(
            [
                f"daemon ≥ 0.85 × end-to-end limit ({r['model']}, {r['device']})",
                f"{fmt(r['daemon']['files_per_s'])} vs limit {fmt(r['e2e_limit'])} files/s = {r['ratio_limit']:.2f} ×",
                _mark(r["meets_limit_target"]),
            ]
        )
        rows.append(
            [
                f"daemon ≥ 3 × naive loop ({r['model']}, {r['device']})",
                f"{fmt(r['daemon']['files_per_s'])} vs {fmt(r['naive'])} files/s = {r['ratio_naive']:.2f} ×",
                _mark(r["meets_naive_target"]),
            ]
        )
    latency = _load(results, "latency")
    for r in (latency or {}).get("rows", []):
        rows.append(
            [
                f"latency p95 ≤ settle_seconds + 1 s ({r['model']}, {r['device']})",
                f"p95 {r['p95_s']:.2f} s (target {latency['target_s']:g} s)",
                _mark(r["meets_target"]),
            ]
        )
    memory = _load(results, "memory")
    for r in (memory or {}).get("rows", []):
        rows.append(
            [
                f"memory growth after warm-up < 50 MB ({r['model']}, {memory['files']} files)",
                f"{fmt(r['growth_after_warmup_mb'])} MB",
                _mark(r["meets_target"]),
            ]
        )
    readers = _load(results, "readers")
    timed = [r for r in (readers or {}).get("rows", []) if "files_per_s" in r]
    if timed:
        slowest = min(timed, key=lambda r: r["files_per_s"])
        rows.append(
            [
                "slowest reader (information)",
                f"{slowest['format']} {slowest['file']}: {fmt(slowest['files_per_s'])} files/s",
                "–",
            ]
        )
    failed = [f"{run['name']} (exit {run['exit']})" for run in runs if run["exit"] != 0]
    text = table(["target", "measured", ""], rows) if rows else "No target was measured in this run."
    if failed:
        text += "\n\nScripts that failed in this run: " + ", ".join(failed) + "."
    return text


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(description="Run every afmwatch benchmark and update BENCHMARKS.md.")
    p.add_argument("--quick", action="store_true", help="every script in its smoke mode (seconds each)")
    p.add_argument("--only", help="comma-separated sections to run: " + ", ".join(SCRIPTS))
    p.add_argument("--skip", default="", help="comma-separated sections not to run")
    p.add_argument(
        "--markdown",
        type=Path,
        help="the file to update (default BENCHMARKS.md; with --quick, BENCHMARKS.md in the results folder)",
    )
    p.add_argument("--results", type=Path, help="folder for the JSON results (default runs/bench-DATE)")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="generated scan sets kept between runs")
    args = p.parse_args(argv)
    names = args.only.split(",") if args.only else list(SCRIPTS)
    unknown = sorted(set(names + [s for s in args.skip.split(",") if s]) - set(SCRIPTS))
    if unknown:
        p.error(f"unknown sections {', '.join(unknown)} (known: {', '.join(SCRIPTS)})")
    names = [n for n in names if n not in args.skip.split(",")]
    results = args.results or REPO / "runs" / f"bench-{datetime.now():%Y%m%d-%H%M%S}"
    results.mkdir(parents=True, exist_ok=True)
    if args.markdown is None:  # a smoke run must not overwrite measurements
        args.markdown = results / "BENCHMARKS.md" if args.quick else BENCHMARKS_MD
    runs = []
    for name in names:
        if name == "denoise" and not (REPO / "benchmarks" / "denoise_quality.py").is_file():
            continue
        runs.append(run_script(name, SCRIPTS[name], args, results))
    command = "python -m benchmarks.run_all" + (" --quick" if args.quick else "")
    text = f"## Summary: the targets\n\n{stamp(command, args.quick)}\n\n{summary(results, runs)}\n"
    write_section(args.markdown, "summary", text)
    (results / "runs.json").write_text(json.dumps(runs, indent=1))
    print(text)
    print(f"results: {results}; sections written into {args.markdown}")
    return 0 if all(run["exit"] == 0 for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
