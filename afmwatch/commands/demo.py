"""`afmwatch demo`: the daemon with the shipped model on a generated inbox (what `make run` runs).

Creates `demo/` (config, inbox, output, state), generates synthetic scans with `afmwatch.synth`
that arrive in the inbox over a few seconds (plus copies of the real sample scans when
$AFMWATCH_SAMPLES or ../shared/afm-samples exists), runs the daemon until every scan is sorted,
and prints a summary and where to look. Offline; nothing but the package is needed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import threading
import time
from pathlib import Path

DEMO_CONFIG = """\
# afmwatch demo configuration (written by `afmwatch demo`; see config.example.yaml for every setting)
{model}watch_folder: inbox
output_root: output
state_folder: state
device: {device}
sort: move
previews: true
settle:
  settle_seconds: 0.5
  max_attempts: 3
  backoff_seconds: 0.5
workers:
  batch_size: 16
  max_batch_wait_ms: 50
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--folder", default="demo", help="demo folder to (re)create (default ./demo)")
    parser.add_argument("--scans", type=int, default=40, help="synthetic scans to generate (default 40)")
    parser.add_argument("--size", type=int, default=256, help="synthetic scan size in pixels (default 256)")
    parser.add_argument("--seconds", type=float, default=4.0, help="spread the arrivals over this time (default 4)")
    parser.add_argument("--seed", type=int, default=2024, help="generator seed (default 2024)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument(
        "--samples", help="folder of real scans to add (default: $AFMWATCH_SAMPLES or ../shared/afm-samples)"
    )
    parser.add_argument("--no-samples", action="store_true", help="only synthetic scans")
    parser.add_argument("--model", help="model file (default: the shipped default model)")
    parser.add_argument("--timeout", type=float, default=600.0, help="give up waiting after this many seconds")


def find_samples(explicit: str | None) -> Path | None:
    for candidate in (
        explicit,
        os.environ.get("AFMWATCH_SAMPLES"),
        "../shared/afm-samples",
        str(Path(__file__).resolve().parents[3] / "shared" / "afm-samples"),
    ):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


def stage(folder: Path, args: argparse.Namespace) -> tuple[list[Path], dict[str, str]]:
    """Generate the synthetic scans (and copy the samples) into staging/; returns the files and true labels."""
    from afmwatch.config import WatchConfig
    from afmwatch.daemon.watcher import wanted
    from afmwatch.synth.sets import generate_classify_set

    staging = folder / "staging"
    generate_classify_set(
        staging / "synthetic", args.scans, seed=args.seed, size=args.size, gwy=False, previews=False, retrace=False
    )
    files = sorted((staging / "synthetic").glob("*/*.tif"))
    truth = {f.name: f.parent.name for f in files}
    samples = None if args.no_samples else find_samples(args.samples)
    if samples is not None:
        for path in sorted(samples.rglob("*")):
            if path.is_file() and wanted(path, samples, WatchConfig()):
                target = staging / "samples" / path.relative_to(samples)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
                files.append(target)
    return files, truth


def feed(files: list[Path], staging: Path, inbox: Path, seconds: float) -> None:
    """Move the staged files into the inbox one by one, as an instrument would export them."""
    pause = seconds / max(1, len(files))
    for path in files:
        relative = path.relative_to(staging)
        if relative.parts[0] == "synthetic":
            target = inbox / "session-1" / path.name  # the instrument's session folder
        else:
            target = inbox / "real-samples" / relative.relative_to("samples")
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.part")  # written under a hidden name, then renamed
        shutil.move(path, temporary)
        os.replace(temporary, target)
        time.sleep(pause)


def run(args: argparse.Namespace) -> int:
    from afmwatch.config import ConfigError, load_config
    from afmwatch.daemon.journal import FINAL_STATES, State
    from afmwatch.daemon.service import Service
    from afmwatch.networks.model_file import ModelError
    from afmwatch.verdict import Decision

    folder = Path(args.folder).resolve()
    for sub in ("inbox", "output", "state", "staging"):
        shutil.rmtree(folder / sub, ignore_errors=True)
        (folder / sub).mkdir(parents=True)
    config_path = folder / "config.yaml"
    model = f"model: {Path(args.model).resolve()}\n" if args.model else ""
    config_path.write_text(DEMO_CONFIG.format(device=args.device, model=model), encoding="utf-8")
    print(f"afmwatch demo in {folder}: generating {args.scans} synthetic scans ...", flush=True)
    files, truth = stage(folder, args)
    try:
        service = Service(load_config(config_path), config_path=config_path)
        service.install_signal_handlers()
        service.start()
    except (ConfigError, ModelError) as exc:
        print(f"afmwatch demo cannot start: {exc}", file=sys.stderr)
        return 1
    started = time.monotonic()
    feeder = threading.Thread(
        target=feed, args=(files, folder / "staging", folder / "inbox", args.seconds), daemon=True
    )
    feeder.start()
    total = len(files)
    finished = 0
    while time.monotonic() - started < args.timeout and not service.stop_requested:  # Ctrl-C: stop early
        counts = service.journal.counts()
        finished = sum(counts.get(s, 0) for s in FINAL_STATES)
        if finished >= total and not feeder.is_alive():
            break
        time.sleep(0.2)
    elapsed = time.monotonic() - started
    decisions = service.journal.decision_counts()
    sidecars = [e.sidecar for e in service.journal.in_states((State.DONE,)) if e.sidecar]
    service.stop()
    agree = sum(1 for s in sidecars if truth.get(Path(s["original_path"]).name) == s["decision"])
    judged = sum(
        1 for s in sidecars if Path(s["original_path"]).name in truth and s["decision"] in (Decision.GOOD, Decision.BAD)
    )
    shutil.rmtree(folder / "staging", ignore_errors=True)
    print()
    print(
        f"afmwatch demo: {finished} of {total} scans processed in {elapsed:.1f} s "
        f"({finished / elapsed:.1f} files/s, arrivals spread over {args.seconds:g} s)"
    )
    print("  " + ", ".join(f"{d}: {decisions.get(d, 0)}" for d in Decision))
    if judged:
        print(f"  synthetic scans decided good/bad: {agree} of {judged} agree with the generator's label")
    print(f"  sorted scans, sidecars (*.afmwatch.json) and previews (*.afmwatch.png): {folder / 'output'}")
    print(f"  configuration: {config_path}")
    print(f"  the afmwatch command lives in the virtual environment: {_activate_hint()}")
    print(f"  status:        afmwatch status --config {config_path}")
    print(f"  review page:   afmwatch review --config {config_path}   (then open http://127.0.0.1:8787)")
    print(f"  run it yourself: afmwatch run --config {config_path}   (then drop scans into {folder / 'inbox'})")
    return 0 if finished >= total else 1


def _activate_hint() -> str:
    """How to call `afmwatch` from a shell: `make run` runs it from .venv, whose bin/ is not on PATH."""
    here = Path(sys.executable).parent
    if shutil.which("afmwatch") == str(here / "afmwatch"):
        return "afmwatch is on your PATH"
    return f"source {here / 'activate'}   (or call {here / 'afmwatch'})"
