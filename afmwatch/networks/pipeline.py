"""The input pipeline: Scan -> network input. Its settings are stored in every model file, so
training and inference can never disagree.

    level -> data area -> resize short edge -> crop (random in training, centre at inference)
          -> normalise (ImageNet statistics or per-scan standardisation) -> 1 or 3 channels

Training splits this in two: `prepare` (deterministic, done once per scan and cached) and `finish`
(crop, augmentation, normalisation; done every epoch). Inference is `to_tensor = finish(prepare(scan))`.
Augmentation: horizontal and vertical flips, never 90° rotations (the fast-scan axis matters for line
artefacts), and an optional small intensity jitter.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from afmwatch.level import level_array, levelled_heights
from afmwatch.scan import Scan

if TYPE_CHECKING:
    import torch

PIPELINE_VERSION = 1
NORMALISATIONS = ("imagenet", "standardise")
DATA_AREAS = ("auto", "crop-right-30", "whole")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGENET_GREY = (0.449, 0.226)
STANDARDISED_CLIP = 10.0  # standard deviations; keeps a saturated stripe from swamping the input
EXPORT_FORMATS = ("png", "jpg", "bmp", "gif")
MAX_ASPECT = 4  # a longer side is cut to its centre first: only a centre square is used anyway
# The largest short edge (resize) and input (crop) a model may ask for. A prepared scan is at most
# MAX_INPUT_EDGE x MAX_ASPECT * MAX_INPUT_EDGE float32 (16 MiB) and an input 3 x 1024 x 1024 (12 MiB);
# a pipeline asking for 8192 px would cost about 1 GiB per scan in every reader and batch.
MAX_INPUT_EDGE = 1024


def make_pipeline(
    channels: int,
    normalise: str,
    *,
    resize: int = 256,
    crop: int = 224,
    data_area: str = "auto",
    level_polynomial: int = 0,
    jitter: float = 0.0,
) -> dict[str, Any]:
    """A pipeline spec (plain JSON data) checked for consistency."""
    spec = {
        "version": PIPELINE_VERSION,
        "level_polynomial": level_polynomial,
        "data_area": data_area,
        "resize": resize,
        "crop": crop,
        "normalise": normalise,
        "channels": channels,
        "jitter": jitter,
    }
    return check_pipeline(spec, "<new model>")


def check_pipeline(spec: Any, path: str | Path) -> dict[str, Any]:
    """The spec if this version of afmwatch can run it exactly; otherwise ModelError saying why."""
    from afmwatch.networks.model_file import ModelError  # PyTorch-heavy; the reader processes never need it

    if not isinstance(spec, dict):
        raise ModelError(path, "the model file has no input pipeline")
    if spec.get("version") != PIPELINE_VERSION:
        raise ModelError(
            path,
            f"input pipeline version {spec.get('version')!r} is unknown to this afmwatch "
            f"(it knows version {PIPELINE_VERSION}); upgrade afmwatch or retrain the model",
        )
    problems = []
    if spec.get("normalise") not in NORMALISATIONS:
        problems.append(f"normalisation {spec.get('normalise')!r} (known: {', '.join(NORMALISATIONS)})")
    if spec.get("data_area") not in DATA_AREAS:
        problems.append(f"data area {spec.get('data_area')!r} (known: {', '.join(DATA_AREAS)})")
    if spec.get("channels") not in (1, 3):
        problems.append(f"channels {spec.get('channels')!r} (must be 1 or 3)")
    resize, crop = spec.get("resize"), spec.get("crop")
    if not (isinstance(crop, int) and isinstance(resize, int) and 8 <= crop <= resize):
        problems.append(f"resize {resize!r} / crop {crop!r} (need whole numbers, 8 <= crop <= resize)")
    elif resize > MAX_INPUT_EDGE:
        problems.append(
            f"resize {resize} / crop {crop} px: more than the {MAX_INPUT_EDGE} px per side afmwatch allows "
            f"(about {MAX_ASPECT * resize * resize * 4 / 2**20:.0f} MiB per prepared scan)"
        )
    if not isinstance(spec.get("level_polynomial"), int) or not isinstance(spec.get("jitter"), (int, float)):
        problems.append("levelling order or jitter")
    if problems:
        raise ModelError(path, "input pipeline not understood: " + "; ".join(problems))
    return dict(spec)


def data_area(scan: Scan, mode: str) -> np.ndarray:
    """The part of the image that holds data. Native files are data throughout; the readers already cut
    exports to their detected data area (metadata `data_area`); `crop-right-30` drops the right 30 %
    of an export whose data area was not detected (the original study's crop, for colour-bar figures)."""
    height = scan.height
    is_export = scan.format in EXPORT_FORMATS or (scan.format == "tiff" and not scan.is_height)
    if mode == "crop-right-30" and is_export and "data_area" not in scan.metadata:
        return height[:, : max(1, int(round(height.shape[1] * 0.7)))]
    return height


def resize_short_edge(image: np.ndarray, short_edge: int) -> np.ndarray:
    """Bilinear resize (antialiased when shrinking) so the shorter side is `short_edge` pixels."""
    rows, cols = image.shape
    scale = short_edge / min(rows, cols)
    size = (max(short_edge, round(rows * scale)), max(short_edge, round(cols * scale)))
    if size == (rows, cols):
        return image.astype(np.float32, copy=True)
    import torch  # only here: a reader process that never resizes never loads PyTorch (about 450 MB)
    import torch.nn.functional as F

    copy = np.array(image, dtype=np.float32, order="C")  # shared levelled heights are read-only
    tensor = torch.from_numpy(copy)[None, None]
    out = F.interpolate(tensor, size=size, mode="bilinear", align_corners=False, antialias=scale < 1)
    return out[0, 0].numpy()


def prepare(scan: Scan, spec: dict[str, Any]) -> np.ndarray:
    """The deterministic part: levelled data area, short edge resized (float32, no NaN)."""
    area = data_area(scan, spec["data_area"])
    rows, cols = area.shape
    longest = MAX_ASPECT * min(rows, cols)
    if max(rows, cols) > longest:  # e.g. a line scan: never resize it into a huge image
        top, left = max(0, (rows - longest) // 2), max(0, (cols - longest) // 2)
        area = area[top : top + longest, left : left + longest]
    if area is scan.height:  # the whole scan: its levelled heights are shared with the preview
        levelled = levelled_heights(scan, spec["level_polynomial"])
    else:
        levelled = level_array(area, spec["level_polynomial"])
    finite = np.isfinite(levelled)
    if not finite.all():  # lines never acquired: the lowest height, as instruments show them (not "flat")
        fill = float(levelled[finite].min()) if finite.any() else 0.0
        levelled = np.where(finite, levelled, fill).astype(np.float32)
    return resize_short_edge(levelled, spec["resize"])


def _normalise(crop: np.ndarray, spec: dict[str, Any]) -> np.ndarray:
    """(H, W) float32 array -> (channels, H, W) network input (float32).

    Plain numpy: the daemon's reader processes run this for every scan without loading PyTorch."""
    if spec["normalise"] == "standardise":
        std = float(crop.std(ddof=1, dtype=np.float64)) if crop.size > 1 else 0.0
        if std > 0:
            x = (crop - np.float32(crop.mean(dtype=np.float64))) / np.float32(std)
            np.clip(x, -STANDARDISED_CLIP, STANDARDISED_CLIP, out=x)
        else:
            x = np.zeros_like(crop)
        return np.repeat(x[None], spec["channels"], axis=0)
    # ImageNet: show the height map like a grey image in [0, 1] (0.5th..99.5th percentile), then the
    # ImageNet mean and standard deviation per channel, as torchvision's pretrained networks expect.
    low, high = np.percentile(crop, [0.5, 99.5])
    if high > low:
        grey = (crop - np.float32(low)) / np.float32(high - low)
        np.clip(grey, 0, 1, out=grey)
    else:
        grey = np.zeros_like(crop)
    channel_mean: tuple[float, ...]
    channel_std: tuple[float, ...]
    if spec["channels"] == 1:
        channel_mean, channel_std = (IMAGENET_GREY[0],), (IMAGENET_GREY[1],)
    else:
        channel_mean, channel_std = IMAGENET_MEAN, IMAGENET_STD
    mean_a = np.array(channel_mean, dtype=np.float32)[:, None, None]
    std_a = np.array(channel_std, dtype=np.float32)[:, None, None]
    return (grey[None] - mean_a) / std_a


def finish_array(prepared: np.ndarray, spec: dict[str, Any], rng: np.random.Generator | None = None) -> np.ndarray:
    """Crop, (augment when `rng` is given: training), normalise: (channels, crop, crop) float32."""
    size = spec["crop"]
    rows, cols = prepared.shape
    if rng is None:
        top, left = (rows - size) // 2, (cols - size) // 2
    else:
        top, left = int(rng.integers(0, rows - size + 1)), int(rng.integers(0, cols - size + 1))
    crop = prepared[top : top + size, left : left + size]
    if rng is not None:
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        if rng.random() < 0.5:
            crop = crop[::-1, :]
    x = _normalise(np.ascontiguousarray(crop, dtype=np.float32), spec)
    if rng is not None and spec["jitter"] > 0:
        gain, offset = rng.uniform(-spec["jitter"], spec["jitter"], size=2)
        x = x * np.float32(1 + gain) + np.float32(offset)
    return np.ascontiguousarray(x, dtype=np.float32)


def finish(prepared: np.ndarray, spec: dict[str, Any], rng: np.random.Generator | None = None) -> torch.Tensor:
    """`finish_array` as a tensor (training and the in-process path)."""
    import torch

    return torch.from_numpy(finish_array(prepared, spec, rng))


def to_array(scan: Scan, spec: dict[str, Any]) -> np.ndarray:
    """The inference input for one scan as a numpy array (what the daemon's reader processes make)."""
    return finish_array(prepare(scan, spec), spec)


def to_tensor(scan: Scan, spec: dict[str, Any]) -> torch.Tensor:
    """The inference input for one scan (pure; safe to call from several threads)."""
    import torch

    return torch.from_numpy(to_array(scan, spec))
