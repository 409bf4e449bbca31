"""The read limit: files/s that a pool of readers alone reaches on every core (read the file, level
it, run the model's input pipeline to a tensor), on the same synthetic scans the daemon benchmark
drops. The pipeline can go no faster than its slower stage, so the end-to-end limit is the smaller
of this and the network's forward limit.

Two pools are timed: threads (what the daemon's reader pool is) and processes (which no global
interpreter lock holds back; their tensors travel back to the parent, as they would have to).

    python -m benchmarks.read_limit [--quick] [--files 500] [--model convnet|default] [--workers N]
"""

from __future__ import annotations

import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.common import (
    bench_models,
    cpu_count,
    fmt,
    mean_file_mb,
    model_arguments,
    model_label,
    parser,
    report,
    setup,
    synthetic_scans,
    table,
    work_folder,
)

if TYPE_CHECKING:  # afmwatch itself is imported where timed, not when this module loads
    from afmwatch.networks.protocol import ClassifierModel

_worker_classifier: ClassifierModel | None = None


def _load_tensor(classifier: ClassifierModel | None, path: Path) -> Any:
    from afmwatch.readers import read_scan

    assert classifier is not None, "each reader process loads the model first (_process_init)"
    return classifier.preprocess(read_scan(path, classifier.reading_config()))


def _process_init(model_path: str, quick: bool) -> None:
    global _worker_classifier
    import torch

    from afmwatch.log import configure_logging
    from afmwatch.networks.families import load_classifier

    configure_logging("warning")
    torch.set_num_threads(1)  # one reader per core; a thread pool inside each would oversubscribe
    _worker_classifier = load_classifier(model_path, device="cpu")


def _process_read(path: Path) -> Any:
    return _load_tensor(_worker_classifier, path).numpy()


def read_rate(files: list[Path], model_path: Path, workers: int, mode: str) -> float:
    """Files/s of a warmed-up pool of `workers` threads or processes turning `files` into tensors."""
    from afmwatch.networks.families import load_classifier

    if mode == "threads":
        classifier = load_classifier(model_path, device="cpu")
        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(lambda p: _load_tensor(classifier, p), files[:workers]))  # warm-up
            started = time.perf_counter()
            for _ in pool.map(lambda p: _load_tensor(classifier, p), files):
                pass
            return len(files) / (time.perf_counter() - started)
    context = multiprocessing.get_context("spawn")  # fork after PyTorch started its threads can hang
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=_process_init, initargs=(str(model_path), False)
    ) as pool:
        list(pool.map(_process_read, files[: 2 * workers]))  # starts and warms every worker
        started = time.perf_counter()
        for _ in pool.map(_process_read, files, chunksize=4):
            pass
        return len(files) / (time.perf_counter() - started)


def read_limits(
    files: list[Path], model_path: Path, workers: int, modes: tuple[str, ...] = ("threads", "processes")
) -> dict[str, float | None]:
    """Files/s with threads and with processes; `limit` is the faster of those timed."""
    rates = {
        mode: read_rate(files, model_path, workers, mode) if mode in modes else None
        for mode in ("threads", "processes")
    }
    return {**rates, "limit": max(r for r in rates.values() if r is not None)}


def markdown(rows: list[dict[str, Any]], files: int, mb: float, size: int, workers: int) -> str:
    lines = [[r["model"], fmt(r["threads"]), fmt(r["processes"]), fmt(r["limit"])] for r in rows]
    return (
        f"{files} synthetic scans (float32 TIFF, {mb:.2f} MB each, {size}×{size} px) read, levelled and turned into "
        f"the model's input tensor by {workers} workers (one per core), files/s. The read limit is the faster "
        "pool.\n\n" + table(["model (input pipeline)", "threads", "processes", "read limit"], lines)
    )


def main(argv: list[str] | None = None) -> int:
    p = parser("Files/s of the reader pool alone (read, level, preprocess), every core.")
    p.add_argument("--files", type=int, default=500, help="scans to read (default 500)")
    model_arguments(p, device=False)
    p.add_argument("--workers", type=int, default=cpu_count(), help="pool size (default: one per core)")
    args = p.parse_args(argv)
    setup(args)
    n, size = (12, 64) if args.quick else (args.files, 256)
    files = synthetic_scans(n, size, args.cache)
    rows = []
    with work_folder(args, "read-limit") as work:
        models, notes = bench_models(work, args.models.split(","))
        for name, path in models.items():
            rows.append({"model": model_label(name, path), **read_limits(files, path, args.workers)})
    body = markdown(rows, len(files), mean_file_mb(files), size, args.workers)
    body += "".join(f"\n\nNote: {note}." for note in notes)
    return report(
        args,
        "read",
        "python -m benchmarks.read_limit",
        "The read limit: reader pool alone",
        body,
        {"rows": rows, "files": len(files), "workers": args.workers},
    )


if __name__ == "__main__":
    sys.exit(main())
