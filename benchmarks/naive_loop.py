"""The naive loop: what a user writes without afmwatch, as the original GUI did. For each file, one
after the other: read it, preprocess it, one forward pass for that one scan, write a result file.

    python -m benchmarks.naive_loop [--quick] [--files 200] [--models convnet,default]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import (
    bench_models,
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


def naive_rate(files: list[Path], model_path: Path, out: Path, device: str = "cpu") -> float:
    """Files/s of the one-file-at-a-time loop (the model is loaded before the clock starts)."""
    from afmwatch.networks.classifier import load_classifier
    from afmwatch.readers import read_scan

    classifier = load_classifier(model_path, device=device)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for path in files:
        scan = read_scan(path, classifier.reading_config())
        prediction = classifier.predict(classifier.preprocess(scan)[None])[0]
        result = {"file": str(path), "label": prediction.label, "confidence": prediction.confidence}
        (out / f"{path.name}.json").write_text(json.dumps(result))
    return len(files) / (time.perf_counter() - started)


def markdown(rows: list[dict[str, Any]], files: int) -> str:
    return (
        f"{files} synthetic scans, one after the other: read, preprocess, one forward pass of batch 1, "
        "write a JSON result; files/s.\n\n"
        + table(["model", "device", "naive loop"], [[r["model"], r["device"], fmt(r["files_per_s"])] for r in rows])
    )


def main(argv: list[str] | None = None) -> int:
    p = parser("Files/s of the naive read-preprocess-classify-write loop.")
    p.add_argument("--files", type=int, default=200, help="scans to process (default 200)")
    model_arguments(p, "convnet,default")
    args = p.parse_args(argv)
    device = setup(args)
    n, size = (8, 64) if args.quick else (args.files, 256)
    files = synthetic_scans(n, size, args.cache)
    rows = []
    with work_folder(args, "naive-loop") as work:
        models, notes = bench_models(work, args.models.split(","))
        for name, path in models.items():
            rate = naive_rate(files, path, work / f"results-{name}", device)
            rows.append({"model": model_label(name, path), "device": device, "files_per_s": rate})
    body = markdown(rows, len(files)) + "".join(f"\n\nNote: {note}." for note in notes)
    return report(args, "naive", "python -m benchmarks.naive_loop", "The naive loop", body,
                  {"rows": rows, "files": len(files)})


if __name__ == "__main__":
    sys.exit(main())
