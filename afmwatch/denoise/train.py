"""Training a denoiser on noisy/clean pairs: an explicit PyTorch loop over random patches.

Each pair is normalised with the noisy image's centre and spread, as the network normalises at run
time (median and robust standard deviation for `conv`, Gwyddion's mean and RMS for `window-mlp`);
the clean image is put in the same units, so the loss is comparable across scans of any height range.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import structlog
import torch
from torch import nn
from tqdm import tqdm

from afmwatch.denoise.metrics import quality
from afmwatch.denoise.model import Denoiser, save_denoiser
from afmwatch.denoise.networks import NORMALISATIONS, DenoisingNetwork, WindowMLP, build_network, normalise
from afmwatch.denoise.options import TrainOptions
from afmwatch.denoise.pairs import Pair, synthetic_pairs
from afmwatch.durable import atomic_write_bytes
from afmwatch.scan import Scan, ScanError

log = structlog.get_logger(__name__)

# When one name exists in several formats (a synthetic set writes .tiff, .gwy and a .png preview),
# the first of these is used.
PREFERRED_SUFFIXES = (".tiff", ".tif", ".gwy")
PREVIEW_SUFFIXES = (".png", ".jpg", ".jpeg")


# Adam learning rates that train each architecture well in a few hundred to a few thousand steps.
DEFAULT_LEARNING_RATES = {"window-mlp": 1e-2, "conv": 3e-3, "unet": 1e-3}
# Gradient clipping: the bias-free U-Net, without batch normalisation, sees heights up to 64 noise units
# (a grating) beside flat substrates; one such batch early in training must not throw the weights away.
DEFAULT_CLIP_GRAD_NORM: dict[str, float | None] = {"window-mlp": None, "conv": None, "unet": 1.0}


def _pick_files(folder: Path) -> dict[str, Path]:
    """Base name -> file, one per base name, ignoring previews when a height file exists."""
    chosen: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.name.startswith(".") or path.suffix.lower() in (".json", ".txt", ".md"):
            continue
        key = path.stem
        current = chosen.get(key)
        if current is None or _rank(path) < _rank(current):
            chosen[key] = path
    return chosen


def _rank(path: Path) -> int:
    suffix = path.suffix.lower()
    if suffix in PREFERRED_SUFFIXES:
        return PREFERRED_SUFFIXES.index(suffix)
    return len(PREFERRED_SUFFIXES) + (1 if suffix in PREVIEW_SUFFIXES else 0)


def load_pairs(data_dir: str | Path) -> list[Pair]:
    """Pairs from `data_dir/noisy/` and `data_dir/clean/` matched by file name (as `afmwatch synth denoise` writes)."""
    from afmwatch.readers import read_scan

    data_dir = Path(data_dir)
    noisy_dir, clean_dir = data_dir / "noisy", data_dir / "clean"
    for folder in (noisy_dir, clean_dir):
        if not folder.is_dir():
            raise ScanError(folder, f"training data needs the folders noisy/ and clean/ in {data_dir}")
    noisy_files, clean_files = _pick_files(noisy_dir), _pick_files(clean_dir)
    names = sorted(set(noisy_files) & set(clean_files))
    if not names:
        raise ScanError(data_dir, "no file name appears in both noisy/ and clean/")
    for missing in sorted(set(noisy_files) ^ set(clean_files)):
        log.warning("pair_incomplete", name=missing, data=str(data_dir))
    pairs = []
    for name in names:
        noisy, clean = read_scan(noisy_files[name]), read_scan(clean_files[name])
        if noisy.shape != clean.shape:
            raise ScanError(noisy.path, f"noisy {noisy.shape} and clean {clean.shape} images differ in size")
        pairs.append(Pair(name, noisy.height, clean.height, noisy.pixel_size_nm))
    return pairs


def load_trace_retrace_pairs(data_dir: str | Path) -> list[Pair]:
    """Noise2Noise pairs from a lab's own scans: trace and retrace are two noisy looks at one surface.

    Every readable scan under `data_dir` whose file holds the retrace (a `retrace_channel`, or a
    `retrace_file` beside it as synthetic sets write) gives two pairs, trace -> retrace and retrace ->
    trace. Noise the two directions share (drift, most line offsets) cannot be learned this way.
    """
    from afmwatch.readers import is_supported, read_scan

    pairs = []
    for path in sorted(p for p in Path(data_dir).rglob("*") if p.is_file() and is_supported(p)):
        try:
            trace = read_scan(path)
            if trace.direction != "forward":
                continue
            if trace.metadata.get("retrace_channel"):
                retrace = read_scan(path, channel=trace.metadata["retrace_channel"])
            elif trace.metadata.get("retrace_file"):
                retrace = read_scan((path.parent / trace.metadata["retrace_file"]).resolve())
            else:
                continue
        except ScanError as exc:
            log.warning("pair_unreadable", file=str(path), error=str(exc))
            continue
        if retrace.shape != trace.shape or not np.isfinite(trace.height).all() or not np.isfinite(retrace.height).all():
            log.warning("pair_skipped", file=str(path), reason="trace and retrace differ in size or have gaps")
            continue
        name = str(path.relative_to(data_dir))
        pairs.append(Pair(name, trace.height, retrace.height, trace.pixel_size_nm))
        pairs.append(Pair(name + " (retrace)", retrace.height, trace.height, trace.pixel_size_nm))
    if not pairs:
        raise ScanError(Path(data_dir), "no scan with both trace and retrace found for trace-retrace training")
    return pairs


def split_pairs(pairs: list[Pair], val_fraction: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    """A seeded split by scan (a trace/retrace pair's two directions stay on one side); at least one
    validation scan when there are two or more."""
    scans = sorted({p.name.removesuffix(" (retrace)") for p in pairs})
    random.Random(seed).shuffle(scans)
    n_val = min(len(scans) - 1, max(1, round(len(scans) * val_fraction))) if len(scans) > 1 else 0
    held_out = set(scans[:n_val])
    val = [p for p in pairs if p.name.removesuffix(" (retrace)") in held_out]
    train = [p for p in pairs if p.name.removesuffix(" (retrace)") not in held_out]
    return train, val


def half_scale(pair: Pair) -> Pair:
    """The same pair at half the resolution: objects half as wide in pixels, noise unchanged.

    The clean image is averaged over 2 x 2 pixels; the noise (noisy - clean) is subsampled, not
    averaged, so it keeps its spread, its pixel-to-pixel independence and one line offset per row.
    Training on both scales shows the network particles of a wider range of sizes in pixels.
    """
    rows, cols = (s // 2 * 2 for s in pair.clean.shape)
    clean = pair.clean[:rows, :cols].reshape(rows // 2, 2, cols // 2, 2).mean(axis=(1, 3))
    noise = (pair.noisy - pair.clean)[:rows:2, :cols:2]
    pixel = pair.pixel_size_nm * 2 if pair.pixel_size_nm else None
    return Pair(pair.name + " (half scale)", clean + noise, clean, pixel)


def _normalised(pair: Pair, normalisation: str) -> tuple[np.ndarray, np.ndarray]:
    centre, scale = NORMALISATIONS[normalisation](pair.noisy)
    noisy = normalise(np.nan_to_num(pair.noisy, nan=centre), centre, scale)
    clean = normalise(np.nan_to_num(pair.clean, nan=centre), centre, scale)
    return noisy, clean


def _batches(arrays: list[tuple[np.ndarray, np.ndarray]], options: TrainOptions, rng: np.random.Generator):
    """Endless random patches, flipped up-down and left-right at random (never transposed: rows stay rows).

    Every patch has the same size, cut down to the smallest image when one is smaller than asked."""
    ph = min(options.patch_rows, *(noisy.shape[0] for noisy, _ in arrays))
    pw = min(options.patch_cols, *(noisy.shape[1] for noisy, _ in arrays))
    while True:
        noisy_batch, clean_batch = [], []
        for _ in range(options.batch_size):
            noisy, clean = arrays[rng.integers(len(arrays))]
            rows, cols = noisy.shape
            top, left = rng.integers(rows - ph + 1), rng.integers(cols - pw + 1)
            n, c = noisy[top : top + ph, left : left + pw], clean[top : top + ph, left : left + pw]
            if rng.random() < 0.5:
                n, c = n[::-1], c[::-1]
            if rng.random() < 0.5:
                n, c = n[:, ::-1], c[:, ::-1]
            noisy_batch.append(np.ascontiguousarray(n))
            clean_batch.append(np.ascontiguousarray(c))
        yield torch.from_numpy(np.stack(noisy_batch)[:, None]), torch.from_numpy(np.stack(clean_batch)[:, None])


def evaluate(denoiser: Denoiser, pairs: list[Pair]) -> list[dict[str, Any]]:
    """Quality of the noisy input and of the denoised output against the clean image, per pair."""
    results = []
    for pair in pairs:
        scan = Scan(pair.noisy, pair.pixel_size_nm, "Height", Path(pair.name), "array")
        denoised = denoiser.denoise(scan).height
        results.append(
            {
                "name": pair.name,
                "noisy": quality(pair.noisy, pair.clean),
                "denoised": quality(denoised, pair.clean),
                "_images": (pair.noisy, denoised, pair.clean),
            }
        )
    return results


def starting_network(options: TrainOptions) -> DenoisingNetwork:
    """A fresh network of `options.arch`, or the weights of `options.init` to fine-tune (same architecture;
    its options come from the file, so `arch_options` must be empty or the same)."""
    if not options.init:
        return build_network(options.arch, **options.arch_options)
    from afmwatch.denoise.model import load_denoiser

    start = load_denoiser(options.init)
    if start.arch != options.arch:
        raise ValueError(f"{options.init}: a {start.arch} denoiser cannot start a {options.arch} training")
    if options.arch_options and options.arch_options != start.network.config():
        raise ValueError(
            f"{options.init}: its options {start.network.config()} differ from the given {options.arch_options}"
        )
    return start.network.requires_grad_(True)


def _keep_pace(schedule: torch.optim.lr_scheduler.OneCycleLR, options: TrainOptions, elapsed: float) -> bool:
    """With a time limit the one-cycle schedule runs by the clock when the clock is ahead of the steps: it
    skips forward to the share of the time used, so the run ends on time with its learning rate annealed.
    False when the time is up or the schedule is complete."""
    assert options.time_limit_s
    due = int(options.steps * elapsed / options.time_limit_s)
    if due >= options.steps or schedule.last_epoch >= options.steps:
        return False
    while schedule.last_epoch < due:
        schedule.step()
    return True


def train_denoiser(
    pairs: list[Pair], options: TrainOptions, *, progress: bool = True
) -> tuple[DenoisingNetwork, dict[str, Any]]:
    """Train a fresh network (or `options.init`'s) on `pairs`; returns it (eval mode, CPU) and a report."""
    if not pairs:
        raise ValueError("no training pairs")
    torch.manual_seed(options.seed)
    rng = np.random.default_rng(options.seed)
    device = torch.device(options.device)
    network = starting_network(options)
    if options.half_scale:
        pairs = pairs + [
            half_scale(p)
            for p in pairs
            if p.clean.shape[0] >= 2 * options.patch_rows and p.clean.shape[1] >= 2 * options.patch_cols
        ]
    arrays = [_normalised(p, network.normalisation) for p in pairs]
    if isinstance(network, WindowMLP) and not options.init:
        network.fit_output_range(torch.from_numpy(np.concatenate([c.ravel() for _, c in arrays])))
    network.to(device).train()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # every patch has one size: let cuDNN pick its fastest kernels
    learning_rate = options.learning_rate or DEFAULT_LEARNING_RATES[options.arch]
    clip = options.clip_grad_norm if options.clip_grad_norm is not None else DEFAULT_CLIP_GRAD_NORM[options.arch]
    optimiser = torch.optim.Adam(network.parameters(), lr=learning_rate)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=learning_rate, total_steps=options.steps, pct_start=0.05
    )
    losses: list[float] = []
    started = time.monotonic()
    batches = _batches(arrays, options, rng)
    bar = tqdm(range(options.steps), desc=f"train {options.arch}", unit="step", disable=not progress)
    for step in bar:
        if options.time_limit_s and step and not _keep_pace(schedule, options, time.monotonic() - started):
            break
        noisy, clean = (t.to(device) for t in next(batches))
        loss = nn.functional.mse_loss(network(noisy), clean)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        if clip is not None:
            nn.utils.clip_grad_norm_(network.parameters(), clip)
        optimiser.step()
        schedule.step()
        losses.append(loss.item())
        if step % 50 == 0 or step == options.steps - 1:
            recent = float(np.mean(losses[-50:]))
            bar.set_postfix(loss=f"{recent:.4f}")
            log.debug("denoiser_training", step=step, loss=recent)
    network.to("cpu").eval()
    report = {
        "options": dict(asdict(options), learning_rate=learning_rate, clip_grad_norm=clip),
        "pairs_trained": [p.name for p in pairs],
        "seconds": round(time.monotonic() - started, 1),
        "steps_run": len(losses),
        "loss_first_50": float(np.mean(losses[:50])),
        "loss_last_50": float(np.mean(losses[-50:])),
        "loss_curve": [float(np.mean(losses[i : i + 25])) for i in range(0, len(losses), 25)],
    }
    return network, report


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean metrics over pairs, noisy input vs denoised output."""
    summary: dict[str, Any] = {}
    for which in ("noisy", "denoised"):
        summary[which] = {
            key: float(np.mean([r[which][key] for r in results])) for key in ("psnr_db", "ssim", "line_artefact")
        }
    return summary


def write_panel(path: Path, results: list[dict[str, Any]], max_rows: int = 4) -> Path:
    """PNG: noisy / denoised / clean / denoised - clean for up to `max_rows` validation pairs spread over the set."""
    import matplotlib

    matplotlib.use("Agg")
    import io

    import matplotlib.pyplot as plt

    shown = results[:: max(1, len(results) // max_rows)][:max_rows]
    fig, axes = plt.subplots(len(shown), 4, figsize=(12, 3.1 * len(shown)), squeeze=False)
    for row, result in zip(axes, shown):
        noisy, denoised, clean = result["_images"]
        low, high = np.nanpercentile(clean, [0.5, 99.5])
        difference = denoised - clean
        limit = float(np.nanpercentile(np.abs(difference), 99.5)) or 1.0
        panels = [
            (noisy, f"noisy  {result['noisy']['psnr_db']:.1f} dB", "afmhot", low, high),
            (denoised, f"denoised  {result['denoised']['psnr_db']:.1f} dB", "afmhot", low, high),
            (clean, f"clean  ({result['name']})", "afmhot", low, high),
            (difference, f"denoised - clean  (±{limit:.2g})", "coolwarm", -limit, limit),
        ]
        for ax, (image, title, cmap, vmin, vmax) in zip(row, panels):
            ax.imshow(image, cmap=cmap, vmin=vmin, vmax=vmax)
            ax.set_title(title, fontsize=9)
            ax.axis("off")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _model_identity(path: str | Path) -> dict[str, str]:
    """The file a fine-tuned model started from, so its card can say which weights it grew from."""
    from afmwatch.networks.model_file import file_sha256

    return {"name": Path(path).name, "sha256": file_sha256(Path(path))}


def train_from_folders(
    data_dirs: list[str | Path],
    out_model: str | Path,
    options: TrainOptions,
    progress: bool = True,
    self_supervised: str | None = None,
    synthetic_per_kind: int = 0,
    synthetic_seed: int = 1,
    synthetic_sizes: tuple[int, ...] = (256,),
    workers: int = 1,
) -> dict:
    """`afmwatch train-denoiser`: train on folders of pairs, write the model, a JSON report and a PNG panel.

    The report goes to `<model>.report.json`, the validation panel to `<model>.panel.png`. With
    `self_supervised="trace-retrace"` the folders hold ordinary scans and each scan's retrace is the
    target (Noise2Noise); validation then compares with the other direction, not with a clean image.
    `synthetic_per_kind` adds that many pairs of every synthetic surface kind (`afmwatch.denoise.pairs`,
    drawn from `synthetic_seed`) at each of `synthetic_sizes` pixels, generated in memory by `workers` processes.
    """
    from afmwatch.denoise.model import load_denoiser

    out_model = Path(out_model)
    data = [str(d) for d in data_dirs]
    loader = load_trace_retrace_pairs if self_supervised == "trace-retrace" else load_pairs
    pairs = [pair for data_dir in data_dirs for pair in loader(data_dir)]
    if synthetic_per_kind:
        pairs += synthetic_pairs(synthetic_per_kind, synthetic_seed, synthetic_sizes, workers=workers)
        sizes = ", ".join(f"{n} px" for n in synthetic_sizes)
        data.append(f"synthetic surfaces: {synthetic_per_kind} per kind at {sizes}, seed {synthetic_seed}")
    if not pairs:
        raise ValueError("no training data: give --data folders or --synthetic pairs per kind")
    train_pairs, val_pairs = split_pairs(pairs, options.val_fraction, options.seed)
    log.info("denoiser_training_started", arch=options.arch, train=len(train_pairs), validation=len(val_pairs))
    network, report = train_denoiser(train_pairs, options, progress=progress)
    report["pairs_validation"] = [p.name for p in val_pairs]
    report["data"] = data
    report["self_supervised"] = self_supervised
    metadata = {
        "name": out_model.stem,
        "training": {
            "data": data,
            "self_supervised": self_supervised,
            "pairs": len(train_pairs),
            "steps": report["steps_run"],
            "seed": options.seed,
            **({"init": _model_identity(options.init)} if options.init else {}),
            "half_scale": options.half_scale,
            "loss_last_50": report["loss_last_50"],
        },
    }
    save_denoiser(out_model, network, options.arch, metadata)
    report_path = out_model.with_suffix(".report.json")
    panel_path = out_model.with_suffix(".panel.png")
    if val_pairs:
        results = evaluate(load_denoiser(out_model), val_pairs)
        report["validation"] = {
            "mean": summarise(results),
            "pairs": [{k: v for k, v in r.items() if k != "_images"} for r in results],
        }
        write_panel(panel_path, results)
        report["panel"] = str(panel_path)
    report["model"] = str(out_model)
    atomic_write_bytes(report_path, json.dumps(report, indent=2).encode())
    log.info(
        "denoiser_trained",
        model=str(out_model),
        report=str(report_path),
        loss=round(report["loss_last_50"], 5),
        **(
            {
                "val_psnr_noisy": round(report["validation"]["mean"]["noisy"]["psnr_db"], 2),
                "val_psnr_denoised": round(report["validation"]["mean"]["denoised"]["psnr_db"], 2),
            }
            if val_pairs
            else {}
        ),
    )
    return report
