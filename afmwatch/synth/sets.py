"""Writing synthetic sets to disk: labelled classification sets and denoising pairs, with a manifest.

Layout of a classification set (only the scans themselves sit in `good/` and `bad/`, so anything that
reads every file there reads each scan once):

    DIR/good/NAME.tif, DIR/bad/NAME.tif     trace height maps, float32 nm, pixel size stored
    DIR/retrace/{good,bad}/NAME.tif         the retrace of the same scan (channel "Height retrace")
    DIR/gwy/{good,bad}/NAME.gwy             the trace for Gwyddion (option)
    DIR/previews/{good,bad}/NAME.png        levelled colour previews with the artefacts in the caption
    DIR/manifest.json                       every file's generation parameters

A denoising set has `clean/` and `noisy/` in place of `good/` and `bad/` (and no retrace).
File i of a set depends only on the set's seed and i, never on how many files the set has.
A classification set without a fixed size draws each scan's lines and points from `LINES_MIX`
(128 to 1024, sometimes non-square), alike for good and bad scans.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import structlog

from afmwatch import __version__
from afmwatch.durable import atomic_write_bytes
from afmwatch.level import level_array
from afmwatch.render import write_preview
from afmwatch.synth.artefacts import line_noise_field
from afmwatch.synth.scans import BAD, GOOD, LINES_MIX, NON_SQUARE, file_rng, synth_scan
from afmwatch.synth.surfaces import DENOISE_SHAPES, SURFACES, deposited_shapes
from afmwatch.writers import write_gwy, write_tiff

log = structlog.get_logger(__name__)

MANIFEST = "manifest.json"
GENERATOR = "afmwatch.synth"  # the manifest's "generator": a folder this module wrote
DENOISE_SCAN_NM = 10000.0  # Gwyddion's example: 10 µm particles at 256 px


def _json_ready(value: Any) -> Any:
    """Numbers rounded for a readable manifest; numpy scalars as plain Python."""
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(f"{float(value):.6g}")
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _write_outputs(
    out: Path,
    folder: str,
    name: str,
    height: np.ndarray,
    pixel_size_nm: float,
    metadata: dict[str, Any],
    caption: str,
    gwy: bool,
    previews: bool,
) -> dict[str, str]:
    """One height map as TIFF (+ .gwy, + preview); returns the written paths relative to `out`."""
    paths = {"tiff": f"{folder}/{name}.tif"}
    write_tiff(out / paths["tiff"], height, pixel_size_nm, metadata=_json_ready(metadata))
    if gwy:
        paths["gwy"] = f"gwy/{folder}/{name}.gwy"
        write_gwy(out / paths["gwy"], np.nan_to_num(height, nan=0.0), pixel_size_nm)
    if previews:
        paths["preview"] = f"previews/{folder}/{name}.png"
        with warnings.catch_warnings():  # rows never acquired (aborted scans) are all NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            levelled = level_array(height)
        write_preview(out / paths["preview"], levelled, pixel_size_nm, caption)
    return paths


def _caption(label: str, params: dict[str, Any]) -> str:
    artefacts = ", ".join(f"{a['name']} {a['severity']:.2f}" for a in params["artefacts"])
    return f"{label}: {params['surface']['kind']}" + (f" | {artefacts}" if artefacts else "")


def classify_file(
    out: Path,
    seed: int,
    index: int,
    size: int | None,
    gwy: bool,
    previews: bool,
    retrace: bool,
    accepted: float = 0.0,
    kinds: tuple[str, ...] | None = None,
) -> dict:
    """Generate and write file `index` of a classification set (even index good, odd bad); `size`
    None draws its shape; `accepted` is the chance of a flaw microscopists accept; `kinds` the surface
    kinds drawn from (None: every kind)."""
    label = GOOD if index % 2 == 0 else BAD
    scan = synth_scan(file_rng(seed, index), size, label, accepted_rate=accepted, kinds=kinds)
    name = f"s{seed}-{index:05d}-{scan.params['surface']['kind']}"
    metadata = scan.metadata
    if retrace:
        metadata["retrace_file"] = f"../retrace/{label}/{name}.tif"
    entry: dict[str, Any] = {
        "name": name,
        "index": index,
        "label": label,
        **_write_outputs(
            out, label, name, scan.trace, scan.pixel_size_nm, metadata, _caption(label, scan.params), gwy, previews
        ),
    }
    if retrace:
        entry["retrace"] = f"retrace/{label}/{name}.tif"
        back = dict(scan.metadata, direction="backward", trace_file=f"../../{label}/{name}.tif")
        write_tiff(
            out / entry["retrace"],
            scan.retrace,
            scan.pixel_size_nm,
            channel="Height retrace",
            metadata=_json_ready(back),
        )
    entry["seed"] = [seed, index]
    entry.update(scan.params)
    return _json_ready(entry)


def denoise_file(
    out: Path, seed: int, index: int, size: int, shape: str, noise: float, gwy: bool, previews: bool
) -> dict:
    """Generate and write pair `index` of a denoising set: the clean surface and the same with noise."""
    rng = file_rng(seed, index)
    surface = deposited_shapes(rng, size, shape, DENOISE_SCAN_NM)
    noise_rms = noise * surface.feature_height_nm
    line_rms = 0.5 * noise * surface.feature_height_nm
    noisy = (
        surface.height
        + rng.normal(0.0, noise_rms, surface.height.shape)
        + line_noise_field(surface.height.shape, rng, 1.0, line_rms, cumulative=False)
    )
    name = f"s{seed}-{index:05d}-{shape}"
    entry: dict[str, Any] = {"name": name, "index": index, "seed": [seed, index]}
    base = {
        "instrument": "afmwatch synthetic",
        "scan_size_nm": [size * surface.pixel_size_nm] * 2,
        "lines_set": size,
        "points_set": size,
        "lines_acquired": size,
    }
    for folder, height in (("clean", surface.height), ("noisy", noisy)):
        meta = dict(
            base, synthetic={"pair": folder, "shape": shape, "noise_rms_nm": noise_rms, "line_noise_rms_nm": line_rms}
        )
        paths = _write_outputs(
            out,
            folder,
            name,
            height.astype(np.float32),
            surface.pixel_size_nm,
            meta,
            f"{folder}: {shape}",
            gwy,
            previews,
        )
        entry[folder] = paths
    entry.update(
        {
            "surface": surface.params,
            "pixel_size_nm": surface.pixel_size_nm,
            "noise_level": noise,
            "noise_rms_nm": noise_rms,
            "line_noise_rms_nm": line_rms,
            "line_noise_changes_per_row": 1.0,
            "line_noise_cumulative": False,
        }
    )
    return _json_ready(entry)


def _run(job: Callable[..., dict], args: Iterable[tuple], workers: int) -> list[dict]:
    """Run the per-file jobs, in worker processes when asked; results in file order."""
    args = list(args)
    if workers <= 1 or len(args) < 2:
        return [job(*a) for a in args]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(job, *zip(*args), chunksize=max(1, len(args) // (4 * workers))))


def _written_paths(files: list[dict]) -> set[str]:
    """Every file path (relative to the set folder) that manifest entries name."""
    found: set[str] = set()
    for entry in files:
        for value in entry.values():
            if isinstance(value, dict):
                found |= _written_paths([value])
            elif isinstance(value, str) and "/" in value and Path(value).suffix in (".tif", ".gwy", ".png"):
                found.add(value)
    return found


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest of a set this module wrote into `folder`; None where there is none, it cannot be
    read, or another program wrote it."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("generator") == GENERATOR else None


def _remove_stale(out: Path, files: list[dict]) -> None:
    """Delete what an earlier generation into the same folder wrote and this one did not (a larger
    --n before, or previews now off), so good/ and bad/ hold exactly the set the manifest describes."""
    previous = read_manifest(out)
    if previous is None:
        return
    stale = _written_paths(previous.get("files", [])) - _written_paths(files)
    for relative in sorted(stale):
        (out / relative).unlink(missing_ok=True)
    if stale:
        log.info("synth_stale_removed", out=str(out), files=len(stale))


def _write_manifest(out: Path, header: dict[str, Any], files: list[dict]) -> Path:
    _remove_stale(out, files)
    manifest = {"generator": GENERATOR, "version": __version__, **header, "files": files}
    path = out / MANIFEST
    atomic_write_bytes(path, json.dumps(_json_ready(manifest), indent=1).encode())
    return path


def _check_set(n: int, size: int | None) -> None:
    if n < 1:
        raise ValueError(f"the number of scans must be at least 1, got {n}")
    if size is not None and size < 32:
        raise ValueError(f"the image size must be at least 32 pixels, got {size}")


def generate_classify_set(
    out: str | Path,
    n: int,
    seed: int = 1,
    size: int | None = None,
    *,
    gwy: bool = True,
    previews: bool = True,
    retrace: bool = True,
    workers: int = 1,
    accepted: float = 0.0,
    surfaces: tuple[str, ...] | None = None,
) -> Path:
    """Write a labelled set of `n` scans (half good, half bad) under `out`; returns the manifest path.

    `size` makes every scan that many pixels square; None draws each scan's lines and points from
    `LINES_MIX` (what a set for training a classifier should do: pixel counts then say nothing of
    the label). `accepted` is each scan's chance of a flaw microscopists accept (`afmwatch.synth.accepted`:
    the scan-start settling), good and bad alike. `surfaces` are the surface kinds drawn from, in
    `SURFACES` order (None: every kind; a recipe that names them keeps its scans when a kind is added)."""
    _check_set(n, size)
    wanted = tuple(SURFACES) if surfaces is None else tuple(surfaces)
    unknown = [k for k in wanted if k not in SURFACES]
    if unknown or not wanted:
        raise ValueError(
            f"unknown surface kinds: {', '.join(unknown) or '(none given)'}; choose from {', '.join(SURFACES)}"
        )
    kinds = tuple(k for k in SURFACES if k in wanted)
    if not 0.0 <= accepted <= 1.0:
        raise ValueError(f"the chance of an accepted flaw must be between 0 and 1, got {accepted}")
    out = Path(out)
    log.info("synth_classify_start", out=str(out), n=n, seed=seed, size=size, workers=workers)
    files = _run(
        classify_file, ((out, seed, i, size, gwy, previews, retrace, accepted, kinds) for i in range(n)), workers
    )
    sizes = (
        "fixed"
        if size is not None
        else {
            "lines": {str(k): v for k, v in LINES_MIX.items()},
            "non_square": f"{NON_SQUARE:.0%}: half the lines (or twice, at 128 points)",
        }
    )
    header = {
        "kind": "classify",
        "seed": seed,
        "n": n,
        "size": size if size is not None else "auto",
        "sizes": sizes,
        **({"accepted_flaws": {"rate": accepted, "kinds": ["settling"]}} if accepted else {}),
        "surfaces": list(kinds),
        "labels": {GOOD: sum(f["label"] == GOOD for f in files), BAD: sum(f["label"] == BAD for f in files)},
        "layout": {
            "scans": "good/, bad/",
            "retrace": "retrace/<label>/ (same name; channel 'Height retrace')",
            "gwy": "gwy/<label>/",
            "previews": "previews/<label>/",
        },
        "severity": "0 none .. 1 ruined; bad scans carry at least one artefact at 0.5 or more, "
        "good scans at most one below 0.1; a rejectable tip or drift artefact records its 'visibility': the "
        "largest change it made to a stretch of 5 lines by 1/8 line, in noise RMS",
    }
    path = _write_manifest(out, header, files)
    log.info("synth_classify_done", out=str(out), n=n, manifest=str(path))
    return path


def generate_denoise_set(
    out: str | Path,
    n: int,
    seed: int = 1,
    shapes: str = "particles",
    *,
    noise: float = 0.1,
    size: int = 256,
    gwy: bool = True,
    previews: bool = True,
    workers: int = 1,
) -> Path:
    """Write `n` clean/noisy pairs (Gwyddion's neural-network example) under `out`; returns the manifest.

    `noise` is the random-noise RMS as a fraction of the objects' height; the non-cumulative line noise
    is half of it. `shapes` "stars" and "donuts" make test sets of shapes a particle-trained denoiser
    never saw.
    """
    if shapes not in DENOISE_SHAPES:
        raise ValueError(f"unknown shapes {shapes!r}; choose from {', '.join(DENOISE_SHAPES)}")
    _check_set(n, size)
    if noise < 0:
        raise ValueError(f"the noise level must not be negative, got {noise}")
    out = Path(out)
    log.info("synth_denoise_start", out=str(out), n=n, seed=seed, shapes=shapes, noise=noise)
    files = _run(denoise_file, ((out, seed, i, size, shapes, noise, gwy, previews) for i in range(n)), workers)
    header = {
        "kind": "denoise",
        "seed": seed,
        "n": n,
        "size": size,
        "shapes": shapes,
        "noise_level": noise,
        "scan_size_nm": DENOISE_SCAN_NM,
        "layout": {
            "pairs": "clean/NAME.tif, noisy/NAME.tif",
            "gwy": "gwy/<clean|noisy>/",
            "previews": "previews/<clean|noisy>/",
        },
    }
    path = _write_manifest(out, header, files)
    log.info("synth_denoise_done", out=str(out), n=n, manifest=str(path))
    return path
