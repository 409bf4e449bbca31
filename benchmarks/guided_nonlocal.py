"""Non-local means guided by the unet (models/DENOISERS.md, "A non-local stage without BM3D"): weights from
the unet output's patches, an average of the noisy input; h chosen on synthetic pairs (seed 7000).

    .venv/bin/python -m benchmarks.guided_nonlocal
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from afmwatch.denoise.metrics import psnr
from afmwatch.denoise.noise import noise_rms
from afmwatch.denoise.pairs import SURFACE_KINDS, synthetic_pair
from benchmarks.denoise_real import denoiser_method

SEED, PER_KIND, SIZE = 7000, 3, 256
H_FACTORS = (0.5, 1.0, 2.0)  # h in units of the scan's noise RMS


def guided_nlm(noisy: np.ndarray, pilot: np.ndarray, h: float, radius: int = 8, patch: int = 2) -> np.ndarray:
    """Each pixel: the mean of the noisy pixels within `radius`, weighted by exp(-d / h²), d the mean
    squared difference of the pilot's (2 patch + 1)² patches around the two."""
    x = torch.as_tensor(noisy, dtype=torch.float32)[None, None]
    g = torch.as_tensor(pilot, dtype=torch.float32)[None, None]
    rows, cols = x.shape[-2:]
    pad = radius + patch
    xp = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    gp = F.pad(g, (pad, pad, pad, pad), mode="reflect")
    span_r, span_c = rows + 2 * patch, cols + 2 * patch
    centre = gp[..., radius : radius + span_r, radius : radius + span_c]
    num, den = torch.zeros(1, 1, rows, cols), torch.zeros(1, 1, rows, cols)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            moved = gp[..., radius + dy : radius + dy + span_r, radius + dx : radius + dx + span_c]
            weight = torch.exp(-F.avg_pool2d((moved - centre) ** 2, 2 * patch + 1, stride=1) / (h * h))
            num += weight * xp[..., pad + dy : pad + dy + rows, pad + dx : pad + dx + cols]
            den += weight
    return (num / den)[0, 0].numpy().astype(np.float64)


def main() -> int:
    torch.set_num_threads(1)
    unet = denoiser_method("models/denoiser-unet.safetensors", align_first=False)
    scores: dict[str, dict[str, list[float]]] = {}
    for k, kind in enumerate(SURFACE_KINDS):
        for i in range(PER_KIND):
            pair = synthetic_pair(SEED, k * 1000 + i, kind, SIZE)
            clean, noisy = pair.clean.astype(np.float64), pair.noisy.astype(np.float64)
            out = unet(noisy)
            flat = noisy - np.median(noisy - out, axis=1, keepdims=True)  # row offsets out, against the unet
            sigma = noise_rms(flat)
            row = {"unet": psnr(out, clean)}
            for factor in H_FACTORS:
                guided = guided_nlm(flat, out, factor * sigma)
                row[f"guided h={factor:g}"] = psnr(guided, clean)
                row[f"mean of unet and guided h={factor:g}"] = psnr(0.5 * (guided + out), clean)
            for method, value in row.items():
                scores.setdefault(method, {}).setdefault(kind, []).append(value)
    print("| method | mean PSNR dB | " + " | ".join(SURFACE_KINDS) + " |")
    print("|---|---|" + "---|" * len(SURFACE_KINDS))
    for method, by_kind in scores.items():
        means = [float(np.mean(by_kind[kind])) for kind in SURFACE_KINDS]
        print(f"| {method} | {np.mean(means):.2f} | " + " | ".join(f"{m:.2f}" for m in means) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
