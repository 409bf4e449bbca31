"""The naive loop: what a user writes without afmwatch, as the original GUI did. For each file, one
after the other: read it, preprocess it, one forward pass for that one scan, write a result file.

The daemon does more per file than that (hash, quality metrics, rules, preview, durable sidecar), so
`naive_full_rate` runs the same one-file-at-a-time loop over the daemon's own per-file work: the
ratio to it shows what batching and parallel stages buy, with the work held equal.

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
    from afmwatch.networks.families import load_classifier
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


def naive_full_rate(files: list[Path], model_path: Path, out: Path, device: str = "cpu") -> float:
    """Files/s of the one-file-at-a-time loop doing the daemon's per-file work with the functions the
    daemon calls: hash, `examine.read_file` (read, quality metrics, the model's input), one forward
    pass, `verdict.decide` (rules), preview PNG and a durable JSON sidecar (the files are not moved,
    and there is no journal)."""
    import torch

    from afmwatch.daemon.sidecar import plain, preview_path, write_sidecar
    from afmwatch.durable import atomic_write_bytes, sha256_file
    from afmwatch.examine import ReadTask, read_file
    from afmwatch.level import level
    from afmwatch.networks.families import load_classifier
    from afmwatch.render import png_bytes, preview_image
    from afmwatch.verdict import caption, decide

    classifier = load_classifier(model_path, device=device)
    prepare, argument = classifier.preprocess_task()
    reading = classifier.reading_config()
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for path in files:
        digest = sha256_file(path)
        result = read_file(ReadTask(path, reading, prepare, argument))
        x = torch.stack([torch.from_numpy(array) for array in result.inputs])
        predictions = classifier.predict(x, [result.quality] * len(result.inputs))
        verdict = decide(predictions, result.quality)
        scan = result.frames[0]
        target = out / path.name
        image = preview_image(level(scan).height, scan.pixel_size_nm, caption(verdict, len(result.frames)))
        atomic_write_bytes(preview_path(target), png_bytes(image), sync=False)
        write_sidecar(
            target,
            plain({"original_path": str(path), "sha256": digest, **verdict.to_dict(), "quality": result.quality}),
        )
    return len(files) / (time.perf_counter() - started)


def markdown(rows: list[dict[str, Any]], files: int) -> str:
    return (
        f"{files} synthetic scans, one after the other: read, preprocess, one forward pass of batch 1, "
        "write a JSON result; files/s. The second column does the daemon's per-file work the same way "
        "(hash, quality metrics, rules, preview PNG, durable sidecar).\n\n"
        + table(
            ["model", "device", "naive loop", "naive loop, daemon's work"],
            [[r["model"], r["device"], fmt(r["files_per_s"]), fmt(r["full_files_per_s"])] for r in rows],
        )
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
            full = naive_full_rate(files, path, work / f"full-{name}", device)
            rows.append(
                {"model": model_label(name, path), "device": device, "files_per_s": rate, "full_files_per_s": full}
            )
    body = markdown(rows, len(files)) + "".join(f"\n\nNote: {note}." for note in notes)
    return report(
        args, "naive", "python -m benchmarks.naive_loop", "The naive loop", body, {"rows": rows, "files": len(files)}
    )


if __name__ == "__main__":
    sys.exit(main())
