"""The two denoising networks, readable top to bottom.

Both work on a height map normalised per image (a centre removed, divided by a spread: the
network's `normalisation`, see NORMALISATIONS) and return a height map in the same normalised units,
so `denormalise` puts the result back into nanometres: a denoiser never changes the physical scale
of a scan, and the same surface in other units gives the same result in those units.

- `WindowMLP` is Gwyddion's neural-network filter (Data Process > Multidata > Neural Network): every
  output pixel is computed from a window of input pixels (27 x 27 by default) through one hidden
  layer of sigmoid nodes (6 by default) to one sigmoid output that is scaled to the range of the
  training signal. A dense layer over a sliding window is a convolution, so the whole image is one
  forward pass instead of one network evaluation per pixel.
- `LineAwareDenoiser` is a residual convolutional denoiser (DnCNN/FFDNet-like) that knows AFM line noise:
  besides the per-pixel noise it estimates one offset per fast-scan row, as an attention-weighted
  average along the whole row (the network learns to ignore particles and steps when judging the
  row's level), and subtracts both.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from afmwatch.denoise.noise import noise_rms

MAD_TO_STD = 1.4826
NOISE_UNITS_MAX_SPREAD = 64.0  # median-noise: the heights' spread is at most this many units


def robust_centre_scale(height: np.ndarray) -> tuple[float, float]:
    """Median and robust standard deviation (1.4826 x median absolute deviation) of the finite pixels.

    Falls back to the plain standard deviation, then to 1, for images that are mostly one value.
    """
    finite = height[np.isfinite(height)].astype(np.float64)
    if finite.size == 0:
        return 0.0, 1.0
    centre = float(np.median(finite))
    scale = MAD_TO_STD * float(np.median(np.abs(finite - centre)))
    if not scale > 0:
        scale = float(finite.std())
    if not scale > 0:
        scale = 1.0
    return centre, scale


def mean_rms(height: np.ndarray) -> tuple[float, float]:
    """Mean and RMS deviation of the finite pixels, as Gwyddion normalises its network's input."""
    finite = height[np.isfinite(height)].astype(np.float64)
    if finite.size == 0:
        return 0.0, 1.0
    scale = float(finite.std())
    return float(finite.mean()), scale if scale > 0 else 1.0


def median_noise(height: np.ndarray) -> tuple[float, float]:
    """Median, and the noise RMS (`afmwatch.denoise.noise.noise_rms`: the noise that changes from row to
    row) as the unit, so that the noise has a spread of about 1 whatever the surface: a film of large
    grains and a few particles on a flat substrate look alike to the network in everything but their
    features. The unit is at least 1/64 of the heights' standard deviation, so a scan with almost no
    noise is not blown up beyond what training showed."""
    finite = height[np.isfinite(height)].astype(np.float64)
    if finite.size == 0:
        return 0.0, 1.0
    spread = float(finite.std())
    scale = max(noise_rms(np.where(np.isfinite(height), height, np.median(finite))), spread / NOISE_UNITS_MAX_SPREAD)
    return float(np.median(finite)), scale if scale > 0 else 1.0


NORMALISATIONS = {"median-mad": robust_centre_scale, "mean-rms": mean_rms, "median-noise": median_noise}


def normalise(height: np.ndarray, centre: float, scale: float) -> np.ndarray:
    return ((height - centre) / scale).astype(np.float32)


def denormalise(values: np.ndarray, centre: float, scale: float) -> np.ndarray:
    return (values.astype(np.float64) * scale + centre).astype(np.float32)


class DenoisingNetwork(nn.Module):
    """What every denoising network tells the code that runs it: how its input is normalised, whether it
    is averaged over flips, its options (for the model file) and the smallest image it takes."""

    normalisation: str = "median-mad"
    flip_ensemble: bool = False
    context_rows: int = 32  # rows each side a strip of a large image needs to be denoised as in one piece

    def config(self) -> dict[str, Any]:
        raise NotImplementedError

    @property
    def min_size(self) -> int:
        raise NotImplementedError


class WindowMLP(DenoisingNetwork):
    """Gwyddion's window network: window x window inputs -> `hidden` sigmoid nodes -> one sigmoid output.

    The output sigmoid is mapped onto [out_low, out_high], the range of the training targets (in
    normalised units) as Gwyddion maps its output onto the training signal's min..max. The input is
    normalised as Gwyddion does (mean removed, divided by the RMS).
    """

    normalisation = "mean-rms"
    out_low: torch.Tensor
    out_high: torch.Tensor

    def __init__(self, window: int = 27, hidden: int = 6):
        super().__init__()
        if window < 1 or window % 2 == 0:
            raise ValueError(f"window must be a positive odd number of pixels, got {window}")
        self.window = window
        self.hidden_layer = nn.Conv2d(1, hidden, kernel_size=window, padding=window // 2, padding_mode="reflect")
        self.output_layer = nn.Conv2d(hidden, 1, kernel_size=1)
        self.register_buffer("out_low", torch.tensor(-5.0))
        self.register_buffer("out_high", torch.tensor(50.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = torch.sigmoid(self.hidden_layer(x))
        unit = torch.sigmoid(self.output_layer(hidden))
        return self.out_low + (self.out_high - self.out_low) * unit

    def fit_output_range(self, targets: torch.Tensor, margin: float = 0.1) -> None:
        """Set the output range from the training targets, with a margin so extremes stay reachable,
        and start the output at the targets' mean."""
        low, high = float(targets.min()), float(targets.max())
        span = max(high - low, 1e-3)
        self.out_low.fill_(low - margin * span)
        self.out_high.fill_(high + margin * span)
        start = (float(targets.mean()) - float(self.out_low)) / float(self.out_high - self.out_low)
        bias = self.output_layer.bias
        assert bias is not None  # nn.Conv2d has one unless told not to
        with torch.no_grad():
            bias.fill_(float(np.log(start / (1 - start))))

    def config(self) -> dict[str, Any]:
        return {"window": self.window, "hidden": self.hidden_layer.out_channels}

    @property
    def min_size(self) -> int:
        return self.window // 2 + 1


class RowOffset(nn.Module):
    """One offset per fast-scan row: an attention-weighted mean along the row of per-pixel estimates.

    Works on features where each feature row holds `rows_per_feature` image rows (two for the conv's
    half-resolution trunk, one channel each), and returns the offsets at full resolution, shape (B, 1, H, 1).
    `scale_free` (the U-Net): no biases, and the attention is judged on the features divided by their RMS
    along the row, so features ten times larger give offsets ten times larger and the same weights (what
    keeps the U-Net positively homogeneous).
    """

    def __init__(self, channels: int, rows_per_feature: int = 2, scale_free: bool = False):
        super().__init__()
        self.scale_free = scale_free
        self.estimate = nn.Conv2d(channels, rows_per_feature, kernel_size=1, bias=not scale_free)
        self.weight_logits = nn.Conv2d(channels, rows_per_feature, kernel_size=1, bias=not scale_free)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        judged = features
        if self.scale_free:
            judged = features / features.pow(2).mean(dim=(1, 3), keepdim=True).sqrt().clamp_min(1e-12)
        weights = torch.softmax(self.weight_logits(judged), dim=3)
        offsets = (weights * self.estimate(features)).sum(dim=3, keepdim=True)  # (B, r, H/r, 1)
        batch, r, feature_rows, _ = offsets.shape
        return offsets.permute(0, 2, 1, 3).reshape(batch, 1, feature_rows * r, 1)


class ImageBatchNorm(nn.BatchNorm2d):
    """Batch normalisation that, at run time, normalises by the statistics of the image being denoised
    (as in training, where each batch brings its own) instead of the running averages over training.

    In noise units a grating's features are a hundred times a flat substrate's, so one set of averages
    fits neither: with them the shipped conv removed a quarter of the noise from a particle scan and none
    from a grain film at 15 % noise, with the image's own statistics most of it (test-time adaptation of
    batch normalisation, Schneider et al. 2020). The weights and running averages are stored as usual."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return super().forward(x)
        return F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)


class LineAwareDenoiser(DenoisingNetwork):
    """Residual denoiser: output = input - pixel noise - row offsets, all estimated from shared features.

    The input is normalised by its median and, with `normalisation="median-noise"` (the shipped model), its
    noise RMS, so the noise has a spread of about 1 on any surface; `median-mad` (the first models) divides
    by the robust standard deviation of the heights instead, which makes the noise small on a rough surface
    and large on a flat one, and taught a network trained on particles to flatten grain films. As in FFDNet, the
    image is first split into four half-resolution sub-images (pixel unshuffle), so the trunk sees
    twice as far for a quarter of the work. The trunk mixes 3 x 3 convolutions (dilated, for a wide
    field of view) with 1 x `row_kernel` convolutions along the fast-scan axis, where scars and line
    noise live, with batch normalisation as in DnCNN.
    """

    flip_ensemble = True  # applied to the image and its flips, averaged (see Denoiser.denoise)

    def __init__(
        self,
        channels: int = 32,
        depth: int = 6,
        row_kernel: int = 9,
        fine_channels: int = 0,
        normalisation: str = "median-mad",
        image_statistics: bool = False,
    ):
        super().__init__()
        if normalisation not in ("median-mad", "median-noise"):
            raise ValueError(f"conv normalises by median-mad or median-noise, not {normalisation!r}")
        self.channels, self.depth, self.row_kernel, self.fine_channels = channels, depth, row_kernel, fine_channels
        self.normalisation = normalisation
        self.image_statistics = image_statistics
        batch_norm = ImageBatchNorm if image_statistics else nn.BatchNorm2d
        # zero padding: reflect padding at every layer doubles the cost on a CPU for no visible gain
        layers: list[nn.Module] = [nn.Conv2d(4, channels, 3, padding=1)]
        for i in range(depth):
            layers.append(nn.ReLU(inplace=True))
            if i % 2 == 0:
                dilation = min(2 ** (i // 2), 8)
                layers.append(nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation, bias=False))
            else:
                layers.append(nn.Conv2d(channels, channels, (1, row_kernel), padding=(0, row_kernel // 2), bias=False))
            layers.append(batch_norm(channels))  # as in DnCNN: trains in far fewer steps
        layers.append(nn.ReLU(inplace=True))
        self.trunk = nn.Sequential(*layers)
        self.pixel_noise = nn.Conv2d(channels, 4, 3, padding=1)
        self.row_offset = RowOffset(channels)
        # optional full-resolution refinement: the trunk's features back at full resolution, the input and
        # the half-resolution estimate -> a correction for detail finer than two pixels (thin rings, edges)
        self.fine = None
        if fine_channels:
            self.fine = nn.Sequential(
                nn.Conv2d(channels // 4 + 2, fine_channels, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(fine_channels, 1, 3, padding=1),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows, cols = x.shape[-2:]
        padded = F.pad(x, (0, cols % 2, 0, rows % 2), mode="replicate")  # pixel unshuffle needs even sizes
        features = self.trunk(F.pixel_unshuffle(padded, 2))
        noise = F.pixel_shuffle(self.pixel_noise(features), 2) + self.row_offset(features)
        if self.fine is not None:
            noise = noise + self.fine(torch.cat([F.pixel_shuffle(features, 2), padded, noise], dim=1))
        return x - noise[..., :rows, :cols]

    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"channels": self.channels, "depth": self.depth, "row_kernel": self.row_kernel}
        if self.fine_channels:
            config["fine_channels"] = self.fine_channels
        if self.normalisation != "median-mad":  # files of the first models name no normalisation
            config["normalisation"] = self.normalisation
        if self.image_statistics:
            config["image_statistics"] = True
        return config

    @property
    def min_size(self) -> int:
        return 2


class ResidualBlock(nn.Module):
    """x + conv(relu(conv(x))), without biases (as in DRUNet)."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class UNetDenoiser(DenoisingNetwork):
    """Residual U-Net denoiser (DRUNet-like) with the row-offset branch of `conv`.

    Four scales (full, 1/2, 1/4, 1/8 resolution) of residual blocks joined by strided and transposed
    convolutions, skips added back at each scale: the field of view spans well over a hundred pixels, so
    a smooth surface under heavy noise is averaged over a wide area, as block matching (BM3D) does, while
    the full-resolution blocks keep edges. `conv` sees a few dozen pixels, too few on smooth real films
    (models/DENOISERS.md). No batch normalisation and no biases: the network is positively homogeneous,
    so in the heights' noise units (`median-noise`) a feature ten times taller is treated the same way,
    whatever the surface (bias-free networks generalise across noise levels, Mohan et al. 2020). Output =
    input - per-pixel noise - one offset per row (a scale-free `RowOffset` at full resolution).
    """

    flip_ensemble = True
    context_rows = 64  # a wider field of view: 32 rows left seams of up to 0.08 x the noise between strips

    def __init__(self, channels: tuple[int, ...] | list[int] = (16, 32, 64, 96), blocks: int = 2):
        super().__init__()
        self.channels_per_scale = tuple(int(c) for c in channels)
        self.blocks = int(blocks)
        if len(self.channels_per_scale) < 2 or self.blocks < 1:
            raise ValueError("unet needs at least two scales and one block per scale")
        self.normalisation = "median-noise"
        widths = self.channels_per_scale
        self.head = nn.Conv2d(1, widths[0], 3, padding=1, bias=False)
        self.encoders = nn.ModuleList(self._stage(c) for c in widths[:-1])
        self.downs = nn.ModuleList(nn.Conv2d(a, b, 2, stride=2, bias=False) for a, b in zip(widths, widths[1:]))
        self.bottom = self._stage(widths[-1])
        self.ups = nn.ModuleList(
            nn.ConvTranspose2d(b, a, 2, stride=2, bias=False) for a, b in zip(widths[:-1], widths[1:])
        )
        self.decoders = nn.ModuleList(self._stage(c) for c in widths[:-1])
        self.tail = nn.Conv2d(widths[0], 1, 3, padding=1, bias=False)
        self.row_offset = RowOffset(widths[0], rows_per_feature=1, scale_free=True)

    def _stage(self, channels: int) -> nn.Sequential:
        return nn.Sequential(*(ResidualBlock(channels) for _ in range(self.blocks)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows, cols = x.shape[-2:]
        multiple = 2 ** (len(self.channels_per_scale) - 1)
        pad_rows, pad_cols = -rows % multiple, -cols % multiple
        mode = "reflect" if pad_rows < rows and pad_cols < cols else "replicate"
        h = self.head(F.pad(x, (0, pad_cols, 0, pad_rows), mode=mode))
        skips = []
        for encoder, down in zip(self.encoders, self.downs):
            h = encoder(h)
            skips.append(h)
            h = down(h)
        h = self.bottom(h)
        for up, decoder, skip in zip(reversed(self.ups), reversed(self.decoders), reversed(skips)):
            h = decoder(up(h) + skip)
        noise = self.tail(h) + self.row_offset(h)
        return x - noise[..., :rows, :cols]

    def config(self) -> dict[str, Any]:
        return {"channels": list(self.channels_per_scale), "blocks": self.blocks}

    @property
    def min_size(self) -> int:
        return 2


ARCHITECTURES: dict[str, type[DenoisingNetwork]] = {
    "window-mlp": WindowMLP,
    "conv": LineAwareDenoiser,
    "unet": UNetDenoiser,
}


def build_network(arch: str, **options: Any) -> DenoisingNetwork:
    """A fresh network of the named architecture (`window-mlp`, `conv` or `unet`) with its options."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown denoiser architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[arch](**options)


def run_network(network: nn.Module, image: np.ndarray, max_pixels: int = 1 << 20) -> np.ndarray:
    """Apply a network to one normalised 2-D image, in strips of whole rows when the image is large.

    Strips keep full rows (the row-offset branch needs them) and overlap by a margin that is
    discarded, so strip borders do not show.
    """
    rows, cols = image.shape
    strip_rows = max(64, max_pixels // max(cols, 1))
    margin = getattr(network, "context_rows", 32)
    out = np.empty_like(image, dtype=np.float32)
    device = next(network.parameters()).device
    with torch.no_grad():
        start = 0
        while start < rows:
            stop = min(rows, start + strip_rows)
            lo, hi = max(0, start - margin), min(rows, stop + margin)
            tensor = torch.from_numpy(np.ascontiguousarray(image[lo:hi], dtype=np.float32))[None, None].to(device)
            result = network(tensor)[0, 0].float().cpu().numpy()
            out[start:stop] = result[start - lo : start - lo + (stop - start)]
            start = stop
    return out
