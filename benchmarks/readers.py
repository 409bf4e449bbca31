"""Readers: files/s and MB/s of every format on the shared real-instrument samples (and a synthetic
TIFF), each file read repeatedly, so that a slow reader stands out. Reading means what the daemon
does: every frame of the height channel (`read_frames`), one core.

    python -m benchmarks.readers [--quick] [--samples FOLDER] [--seconds 1]
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import REPO, fmt, parser, report, setup, synthetic_scans, table


def samples_folder(explicit: Path | None) -> Path | None:
    """--samples, else $AFMWATCH_SAMPLES, else ../shared/afm-samples beside the checkout."""
    for candidate in (explicit, os.environ.get("AFMWATCH_SAMPLES"), REPO.parent / "shared" / "afm-samples"):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


def time_reads(path: Path, min_seconds: float, min_reads: int) -> dict[str, Any]:
    """Reads of one file per second (after a warm-up read that fills the disk cache), or its error.
    Every read parses the file: the readers' cache of the last parses is emptied before each."""
    from afmwatch.readers import read_frames
    from afmwatch.readers.common import forget_parsed
    from afmwatch.scan import ScanError

    row: dict[str, Any] = {"file": path.name, "size_mb": path.stat().st_size / 1e6}
    try:
        frames = read_frames(path)
    except ScanError as exc:
        return {**row, "format": path.suffix.lstrip("."), "error": exc.reason}
    reads, started = 0, time.perf_counter()
    while reads < min_reads or time.perf_counter() - started < min_seconds:
        forget_parsed()
        read_frames(path)
        reads += 1
    elapsed = time.perf_counter() - started
    first = frames[0]
    return {
        **row,
        "format": first.format,
        "frames": len(frames),
        "shape": list(first.shape),
        "files_per_s": reads / elapsed,
        "mb_per_s": reads * row["size_mb"] / elapsed,
        "reads": reads,
    }


def sample_files(folder: Path) -> list[Path]:
    from afmwatch.readers import is_supported

    return sorted(p for p in folder.rglob("*") if p.is_file() and is_supported(p))


def markdown(rows: list[dict[str, Any]], samples: Path | None, min_seconds: float) -> str:
    lines = []
    for r in sorted(rows, key=lambda r: (r["format"], r["file"])):
        if "error" in r:
            lines.append([r["format"], r["file"], fmt(r["size_mb"] * 1000, 0), "–", "refused: " + r["error"], "–"])
            continue
        shape = "×".join(str(s) for s in r["shape"]) + (f" ×{r['frames']} frames" if r["frames"] > 1 else "")
        lines.append(
            [r["format"], r["file"], fmt(r["size_mb"] * 1000, 0), shape, fmt(r["files_per_s"]), fmt(r["mb_per_s"])]
        )
    where = f"the shared samples in `{samples}`" if samples else "no sample folder (set AFMWATCH_SAMPLES)"
    return (
        f"Each file of {where}, plus one synthetic float32 TIFF, read again and again for at least "
        f"{min_seconds:g} s on one core (all frames of the height channel, as the daemon reads them).\n\n"
        + table(["format", "file", "KB", "pixels", "files/s", "MB/s"], lines)
    )


def main(argv: list[str] | None = None) -> int:
    p = parser("Files/s and MB/s of every reader on the shared samples.")
    p.add_argument("--samples", type=Path, help="folder of real scans (default $AFMWATCH_SAMPLES)")
    p.add_argument("--seconds", type=float, default=1.0, help="least time per file (default 1)")
    args = p.parse_args(argv)
    setup(args)
    samples = samples_folder(args.samples)
    files = (sample_files(samples) if samples else []) + synthetic_scans(1, 64 if args.quick else 256, args.cache)
    min_seconds, min_reads = (0.0, 1) if args.quick else (args.seconds, 5)
    rows = [time_reads(path, min_seconds, min_reads) for path in files]
    return report(
        args,
        "readers",
        "python -m benchmarks.readers",
        "Readers",
        markdown(rows, samples, min_seconds),
        {"rows": rows, "samples": str(samples) if samples else None},
    )


if __name__ == "__main__":
    sys.exit(main())
