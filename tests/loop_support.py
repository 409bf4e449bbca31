"""Helpers for the model-loop tests: labelled scans a metrics model learns in seconds, sorted output
folders as the daemon leaves them (with sidecars, previews and corrections), small trained models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from afmwatch.daemon.sidecar import PREVIEW_SUFFIX, SIDECAR_SUFFIX


def write_scan(
    folder: Path, name: str, lost: bool, rng: np.random.Generator, retrace_root: Path, absolute: bool = False
) -> Path:
    """A synthetic scan whose label only its retrace tells: a lost tip (bad) scans another surface on
    the way back, a good one its own (the metrics model sees trace_retrace_mismatch). The retrace lives
    under `retrace_root` (a hidden folder), named relative to the scan's folder (`absolute`: by its
    absolute path, so that a link to the scan elsewhere finds it too)."""
    import os

    from afmwatch.synth import synth_scan
    from afmwatch.writers import write_tiff

    made = synth_scan(rng, 64, surface="grains", artefacts=[])
    other = synth_scan(rng, 64, surface="grains", artefacts=[]).trace
    retrace = other if lost else made.trace + rng.normal(0, 0.002 * np.nanstd(made.trace), made.trace.shape)
    retrace_path = retrace_root / f"{name}.tif"
    write_tiff(retrace_path, retrace, made.pixel_size_nm, channel="Height retrace")
    folder.mkdir(parents=True, exist_ok=True)
    relative = str(retrace_path) if absolute else os.path.relpath(retrace_path, folder)
    return write_tiff(folder / f"{name}.tif", made.trace, made.pixel_size_nm, metadata={"retrace_file": relative})


def labelled_folder(root: Path, n: int = 24, seed: int = 2, swap: bool = False) -> Path:
    """good/ and bad/ with n scans (alternately good and bad); `swap`: every label the wrong way round."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        lost = i % 2 == 1
        label = ("good", "bad")[lost != swap]
        write_scan(root / label, f"s{i:03d}", lost, rng, root / ".retrace")
    return root


def train_logistic(data: Path, out: Path, *extra: str) -> Path:
    """`afmwatch train --arch metrics-logistic` (seconds on two cores)."""
    from afmwatch.cli import main

    assert (
        main(
            [
                "--log-level",
                "warning",
                "train",
                "--data",
                str(data),
                "--out",
                str(out),
                "--arch",
                "metrics-logistic",
                *extra,
            ]
        )
        == 0
    )
    return out


def sidecar_for(scan: Path, decision: str, *, corrected_to: str | None = None) -> None:
    """A sidecar and a preview beside `scan`, as the daemon writes them (`decision`: what the model
    said); `corrected_to`: a person moved it, recorded as the review page records it."""
    sidecar = {"decision": decision, "label": decision, "final_path": str(scan), "reasons": ["test"]}
    if corrected_to is not None:
        sidecar["review"] = {"from": decision, "to": corrected_to, "by": "test"}
    scan.with_name(scan.name + SIDECAR_SUFFIX).write_text(json.dumps(sidecar))
    # a real PNG, so that a reader would accept it if the sidecar/preview filter were gone
    from PIL import Image

    Image.fromarray(np.full((16, 16), 128, dtype=np.uint8)).save(scan.with_name(scan.name + PREVIEW_SUFFIX))


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file below `folder` with its size and mtime: equal before and after means nothing moved."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()
    }
