"""The panel beside every denoised copy: input, denoised and the removed part (input - denoised),
side by side on one colour scale, so anyone can see at a glance what the denoiser took away.

The input and the denoised scan share the colour limits (the input's 0.5-99.5 percentiles); the
removed part is drawn with the same colour map over the same span of heights, centred so that
"nothing removed" has the colour of the input's median height. Noise taken away then looks like
fine, even grain; a surface taken away looks like the surface.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib
import numpy as np

from afmwatch.denoise.guard import GuardReport
from afmwatch.durable import atomic_write_bytes
from afmwatch.render import display_limits

matplotlib.use("Agg")  # no display: the panel is a file
from matplotlib import pyplot as plt
from matplotlib.figure import Figure

COLOUR_MAP = "afmhot"


def _lateral(pixel_size_nm: float | None, shape: tuple[int, int]) -> str:
    if not pixel_size_nm:
        return f"{shape[1]} x {shape[0]} px"
    width = shape[1] * pixel_size_nm
    return f"{width / 1000:.3g} µm wide" if width >= 1000 else f"{width:.3g} nm wide"


def panel_figure(
    before: np.ndarray,
    after: np.ndarray,
    *,
    units: str = "nm",
    pixel_size_nm: float | None = None,
    title: str = "",
    guard: GuardReport | None = None,
) -> Figure:
    """The three images with one colour bar (the z scale) in `units`; the guard's verdict under the title."""
    low, high = display_limits(before)
    if not high > low:
        low, high = low - 0.5, high + 0.5
    centre = float(np.nanmedian(before)) if np.isfinite(before).any() else 0.0
    removed = before.astype(np.float64) - after
    fig, axes = plt.subplots(1, 3, figsize=(12.6, 4.6), constrained_layout=True)
    views = [
        (before, "input"),
        (after, "denoised"),
        (removed + centre, f"removed (input - denoised), 0 at the input's median {centre:.3g} {units}"),
    ]
    for ax, (image, label) in zip(axes, views):
        shown = ax.imshow(image, cmap=COLOUR_MAP, vmin=low, vmax=high, interpolation="nearest")
        ax.set_title(label, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    bar = fig.colorbar(shown, ax=list(axes), shrink=0.85, pad=0.01)
    bar.set_label(f"height ({units}); removed: same scale, {centre:.3g} = nothing removed", fontsize=8)
    heading = f"{title}  ({_lateral(pixel_size_nm, before.shape)})".strip()
    if guard is not None:
        verdict = {
            "faithful": "faithful: only noise removed",
            "unverified": "UNVERIFIED: mostly noise, heights not checked; not a measurement",
        }.get(guard.verdict, "SURFACE CHANGED: not a measurement")
        heading += f"\nguard: {verdict}. {guard.numbers()}"
    fig.suptitle(heading, fontsize=9, color="black" if guard is None or guard.faithful else "firebrick")
    return fig


def panel_png(before: np.ndarray, after: np.ndarray, **kwargs) -> bytes:
    """`panel_figure` as PNG bytes."""
    fig = panel_figure(before, after, **kwargs)
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=90)
    finally:
        plt.close(fig)
    return buffer.getvalue()


def write_panel(path: str | Path, before: np.ndarray, after: np.ndarray, **kwargs) -> Path:
    """Atomically write the panel PNG; returns the path."""
    path = Path(path)
    atomic_write_bytes(path, panel_png(before, after, **kwargs))
    return path
