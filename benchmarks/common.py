"""What every benchmark script shares: its arguments, the synthetic scan set, the models it times,
timing helpers and writing its own section of BENCHMARKS.md.

Each script measures what it compares within one run, because the machines these run on are
shared and noisy: a ratio from one run means more than two absolute numbers from two runs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS_MD = REPO / "BENCHMARKS.md"
DEFAULT_CACHE = Path(tempfile.gettempdir()) / "afmwatch-bench-cache"
SCAN_SEED = 7
QUICK_NOTE = "**Quick smoke run (`--quick`)**: proves the script works; the numbers are not a measurement."

# The sections of BENCHMARKS.md these scripts own, in the order they appear. `## Denoising` belongs to
# benchmarks/denoise_quality.py and is never touched here.
SECTIONS = (
    "summary",
    "machine",
    "forward",
    "read",
    "naive",
    "e2e",
    "latency",
    "memory",
    "readers",
    "profile",
    "review",
    "soak",
)
HEADER = """# afmwatch benchmarks

Measured on the machine named in each section by the committed scripts in `benchmarks/`; rerun them
all with `make bench` (see README, Benchmarks). Each section says which command wrote it and when.
Ratios are measured within one run, because a shared machine's absolute speed changes from minute
to minute.
"""


def cpu_count() -> int:
    """The cores this process may use (a container's or taskset's limit, not the host's)."""
    from afmwatch.system import available_cores

    return available_cores()


def parser(description: str) -> argparse.ArgumentParser:
    """The arguments every script takes."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke mode: tiny workload, finishes in seconds; numbers are not a measurement",
    )
    p.add_argument(
        "--markdown",
        type=Path,
        help=f"write this script's section into this file (default {BENCHMARKS_MD.name}; with --quick only when given)",
    )
    p.add_argument("--json", type=Path, help="also write the numbers as JSON to this file")
    p.add_argument("--work", type=Path, help="scratch folder (default: a temporary folder, removed afterwards)")
    p.add_argument(
        "--cache",
        type=Path,
        default=DEFAULT_CACHE,
        help=f"where generated scan sets are kept between runs (default {DEFAULT_CACHE})",
    )
    return p


def model_arguments(p: argparse.ArgumentParser, models: str = "convnet,default", device: bool = True) -> None:
    """--models (which models to time) and, with `device`, --device (where the network runs)."""
    p.add_argument(
        "--models",
        default=models,
        help=f"comma-separated: convnet (the study's net), default (the shipped model); default {models}",
    )
    if device:
        p.add_argument(
            "--device",
            default="auto",
            choices=["auto", "cpu", "cuda"],
            help="where the network runs (default auto: the GPU when there is one)",
        )


def setup(args: argparse.Namespace) -> str:
    """Quiet afmwatch's per-file log events (benchmarks print tables); returns the device to run on
    (`--device`, resolved). In `--quick` mode PyTorch uses one thread: on a busy shared CI machine
    its thread pool waits for cores far longer than it computes."""
    import warnings

    from afmwatch.log import configure_logging

    configure_logging("warning")
    warnings.filterwarnings("ignore", category=RuntimeWarning)  # all-NaN rows in deliberately ruined scans
    import torch

    from afmwatch.networks.classifier import resolve_device

    if args.quick:
        torch.set_num_threads(1)
    return str(resolve_device(getattr(args, "device", "cpu")))


def child_env(args: argparse.Namespace) -> dict[str, str]:
    """The environment for an `afmwatch` child process (one PyTorch thread in `--quick` mode)."""
    return {**os.environ, "OMP_NUM_THREADS": "1"} if args.quick else dict(os.environ)


@contextmanager
def work_folder(args: argparse.Namespace, name: str) -> Iterator[Path]:
    """`--work` (kept), or a temporary folder removed afterwards."""
    if args.work is not None:
        folder = args.work / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        yield folder
        return
    with tempfile.TemporaryDirectory(prefix=f"afmwatch-bench-{name}-") as tmp:
        yield Path(tmp)


# -- the scans ----------------------------------------------------------------------------------------
def _set_size(folder: Path) -> int:
    match = re.search(r"-n(\d+)$", folder.name)
    return int(match.group(1)) if match and (folder / "manifest.json").is_file() else 0


def synthetic_scans(n: int, size: int = 256, cache: Path = DEFAULT_CACHE, seed: int = SCAN_SEED) -> list[Path]:
    """`n` distinct synthetic scans (float32 TIFF, half good, half bad, every surface kind) from
    `afmwatch.synth`, generated once and kept in `cache`. File i is the same in every set of this
    seed and size, so a larger cached set serves a smaller request."""
    from afmwatch.synth.sets import generate_classify_set
    from afmwatch.synth.surfaces import SURFACES

    cache.mkdir(parents=True, exist_ok=True)
    # keyed by the number of surface kinds too: a set cached before the generator gained one is not served
    stem = f"classify-s{seed}-{size}px-k{len(SURFACES)}-n"
    usable = [f for f in cache.glob(f"{stem}*") if _set_size(f) >= n]
    if usable:
        folder = min(usable, key=_set_size)
    else:
        folder = cache / f"{stem}{n}"
        partial = cache / f".{folder.name}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        generate_classify_set(
            partial, n, seed=seed, size=size, gwy=False, previews=False, retrace=False, workers=cpu_count()
        )
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(partial, folder)
    files = sorted((folder / "good").glob("*.tif")) + sorted((folder / "bad").glob("*.tif"))
    files.sort(key=lambda p: p.name)  # s<seed>-<index>-<kind>.tif: index order
    return files[:n]


def copy_files(files: list[Path], folder: Path) -> list[Path]:
    """Copies of `files` in `folder` (flat; the names are unique)."""
    folder.mkdir(parents=True, exist_ok=True)
    copies = []
    for path in files:
        target = folder / path.name
        shutil.copyfile(path, target)
        copies.append(target)
    return copies


def mean_file_mb(files: list[Path]) -> float:
    return sum(p.stat().st_size for p in files) / len(files) / 1e6 if files else 0.0


# -- the models ---------------------------------------------------------------------------------------
def convnet_model(folder: Path) -> Path:
    """The study's ConvNet with its input pipeline (short edge 256, centre crop 224, ImageNet
    normalisation), seeded random weights: speed does not depend on what the weights learnt."""
    import torch

    from afmwatch.networks.architectures import get_architecture
    from afmwatch.networks.classifier import save_classifier
    from afmwatch.networks.pipeline import make_pipeline

    torch.manual_seed(0)
    arch = get_architecture("convnet")
    meta = {
        "name": "bench-convnet",
        "arch": "convnet",
        "pipeline": make_pipeline(arch.channels, arch.normalise),
        "class_names": ["good", "bad"],
        "temperature": 1.0,
        "review_band": [0.35, 0.65],
    }
    folder.mkdir(parents=True, exist_ok=True)
    return save_classifier(folder / "bench-convnet.safetensors", arch.build(2, 224, None), meta)


def bench_models(folder: Path, names: list[str]) -> tuple[dict[str, Path], list[str]]:
    """The models asked for by name ("convnet", "default") and notes on any that are missing."""
    from afmwatch.networks.store import default_model_path

    models, notes = {}, []
    for name in names:
        if name == "convnet":
            models[name] = convnet_model(folder)
        elif name == "default":
            path = default_model_path()
            if path.is_file():
                models[name] = path
            else:
                notes.append(
                    f"the shipped default model {path.relative_to(REPO)} is missing "
                    "(`make default-model` trains it); measured without it"
                )
        else:
            raise SystemExit(f"unknown model {name!r}: choose convnet or default")
    return models, notes


def model_label(name: str, path: Path) -> str:
    """'convnet' or 'default (compact)': the name with the architecture read from the file."""
    from afmwatch.networks.model_file import read_metadata

    arch = read_metadata(path).get("arch", "?")
    return name if name == arch else f"{name} ({arch})"


# -- timing -------------------------------------------------------------------------------------------
def repeat_rate(
    call: Callable[[], Any],
    items_per_call: int,
    min_seconds: float,
    min_calls: int = 3,
    sync: Callable[[], None] = lambda: None,
) -> float:
    """Items per second of `call`, repeated for at least `min_seconds` and `min_calls` calls
    (after one untimed warm-up call)."""
    call()
    sync()
    calls, started = 0, time.perf_counter()
    while True:
        call()
        calls += 1
        sync()
        elapsed = time.perf_counter() - started
        if calls >= min_calls and elapsed >= min_seconds:
            return calls * items_per_call / elapsed


def percentile(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q)) if values else float("nan")


def fmt(value: float | None, digits: int = 1) -> str:
    if value is None or value != value:  # None or NaN
        return "–"
    return f"{value:,.{digits}f}"


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


# -- results ------------------------------------------------------------------------------------------
def stamp(command: str, quick: bool) -> str:
    """The line under each heading: which command, when, on what, how loaded the machine was."""
    from benchmarks.machine import short_description

    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    line = f"_`{command}`, {when}, {short_description()}; load average {load:.1f} at the end._"
    return f"{line}\n\n{QUICK_NOTE}" if quick else line


def _block(name: str, text: str = "") -> str:
    return f"<!-- bench:{name} -->\n{text.strip()}\n<!-- /bench:{name} -->\n".replace("\n\n<!-- /", "\n<!-- /")


def _with_all_sections(content: str) -> str:
    """`content` with an (empty) block for each of our sections it lacks, in SECTIONS order, all
    before the `## Denoising` section: that one must stay last, since its script replaces
    everything from its heading to the next `## ` heading."""
    for index, name in enumerate(SECTIONS):
        if f"<!-- bench:{name} -->" in content:
            continue
        previous = [f"<!-- /bench:{s} -->\n" for s in SECTIONS[:index] if f"<!-- /bench:{s} -->\n" in content]
        denoising = re.search(r"^## Denoising", content, re.MULTILINE)
        if previous:
            at = content.index(previous[-1]) + len(previous[-1])
            content = content[:at] + "\n" + _block(name) + content[at:]
        elif denoising:
            content = content[: denoising.start()] + _block(name) + "\n" + content[denoising.start() :]
        else:
            content = content.rstrip("\n") + "\n\n" + _block(name)
    return content


def write_section(markdown: Path, name: str, text: str) -> None:
    """Put `text` between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->` in `markdown`, leaving
    everything else in the file (notes written by hand, the denoising section) as it is."""
    content = markdown.read_text(encoding="utf-8") if markdown.exists() else HEADER
    content = _with_all_sections(content)
    pattern = re.compile(
        re.escape(f"<!-- bench:{name} -->") + r".*?" + re.escape(f"<!-- /bench:{name} -->\n"), re.DOTALL
    )
    content = pattern.sub(lambda _: _block(name, text), content, count=1)
    markdown.parent.mkdir(parents=True, exist_ok=True)
    tmp = markdown.with_name(f".{markdown.name}.tmp")
    tmp.write_text(content, encoding="utf-8")
    os.replace(tmp, markdown)


def report(args: argparse.Namespace, name: str, command: str, title: str, body: str, results: dict[str, Any]) -> int:
    """Print the section, write it into the Markdown file and the numbers into `--json`; returns 0."""
    text = f"## {title}\n\n{stamp(command + (' --quick' if args.quick else ''), args.quick)}\n\n{body.strip()}\n"
    print(text)
    markdown = args.markdown if (args.markdown is not None or args.quick) else BENCHMARKS_MD
    if markdown is not None:
        write_section(markdown, name, text)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {"name": name, "quick": args.quick, "command": command, **results}
        args.json.write_text(json.dumps(payload, indent=1, default=str), encoding="utf-8")
    return 0
