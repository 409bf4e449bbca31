"""Good surfaces in physical units (nm), like Gwyddion's Synthetic modules.

Every generator takes a random generator, the image size in pixels and the scan size, and returns a
`Surface`: a clean, level height map plus the parameters a microscopist would quote. Each also states
its feature height and width, so artefacts can be scaled to what would hide *these* features.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

SRTIO3_STEP_NM = 0.3905  # one unit cell of SrTiO3


@dataclass
class Surface:
    """A clean height map (nm, float64) with the scale of its features and its generation parameters."""

    height: np.ndarray
    pixel_size_nm: float
    kind: str
    feature_height_nm: float
    feature_width_nm: float
    params: dict[str, Any] = field(default_factory=dict)


def log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (y, x) in pixels."""
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]]
    return y.astype(np.float64), x.astype(np.float64)


def _stamp(height: np.ndarray, cy: float, cx: float, reach: float, profile: Callable) -> None:
    """Raise `height` to max(height, profile(dy, dx)) in a window of half-size `reach` around (cy, cx)."""
    rows, cols = height.shape
    y0, y1 = max(int(cy - reach), 0), min(int(cy + reach) + 2, rows)
    x0, x1 = max(int(cx - reach), 0), min(int(cx + reach) + 2, cols)
    if y0 >= y1 or x0 >= x1:
        return
    dy = np.arange(y0, y1)[:, None] - cy
    dx = np.arange(x0, x1)[None, :] - cx
    window = height[y0:y1, x0:x1]
    np.maximum(window, profile(dy, dx), out=window)


def _sphere(radius_px: float, radius_nm: float) -> Callable:
    """A sphere resting on the substrate, seen from above: cap height r + sqrt(r^2 - d^2)."""

    def profile(dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
        d2 = (dy * dy + dx * dx) / (radius_px * radius_px)
        return np.where(d2 < 1.0, radius_nm * (1.0 + np.sqrt(np.clip(1.0 - d2, 0.0, None))), 0.0)

    return profile


def deposit(
    shape: tuple[int, int],
    rng: np.random.Generator,
    radius_px: float,
    radius_spread: float,
    coverage: float,
    pixel_size_nm: float,
    profile_for: Callable[[float, float, np.random.Generator], Callable] | None = None,
) -> tuple[np.ndarray, int]:
    """Deposit objects at random until `coverage` of the area is covered (Gwyddion's Deposition).

    Radii are log-normal around `radius_px` with relative spread `radius_spread`; `profile_for(radius_px,
    radius_nm, rng)` gives each object's height profile (spheres by default). Returns (height, count).
    """
    profile_for = profile_for or (lambda r_px, r_nm, _rng: _sphere(r_px, r_nm))
    height = np.zeros(shape)
    covered = 0.0
    count = 0
    area = shape[0] * shape[1]
    while covered < coverage and count < 20000:
        # place a batch sized to the remaining coverage, then measure what is really covered
        mean_area = np.pi * radius_px**2 * np.exp(2 * radius_spread**2)
        batch = max(1, int(0.6 * (coverage - covered) * area / mean_area))
        radii = radius_px * rng.lognormal(0.0, radius_spread, batch)
        centres = rng.uniform(0, 1, (batch, 2)) * np.array(shape)
        for r, (cy, cx) in zip(radii, centres):
            r = max(float(r), 0.7)
            _stamp(height, cy, cx, r + 1, profile_for(r, r * pixel_size_nm, rng))
        count += batch
        covered = float(np.count_nonzero(height > 0)) / area
    return height, count


def particles(rng: np.random.Generator, size: int, **overrides: Any) -> Surface:
    """Nanoparticles (spheres 5-100 nm) deposited on a flat substrate, with a radius distribution."""
    cols = overrides.get("cols", size)
    scan_nm = overrides.get("scan_size_nm") or log_uniform(rng, 1000, 5000)
    pixel = scan_nm / size
    # radius between 2.5 and 12 pixels (visible, not a few huge blobs), and 5-100 nm as real particles
    low, high = max(2.5 * pixel, 5.0), min(12 * pixel, 100.0)
    radius_nm = overrides.get("radius_nm") or log_uniform(rng, low, max(high, low * 1.01))
    spread = overrides.get("radius_spread", rng.uniform(0.05, 0.35))
    coverage = overrides.get("coverage", rng.uniform(0.04, 0.35))
    height, count = deposit((size, cols), rng, radius_nm / pixel, spread, coverage, pixel)
    return Surface(
        height, pixel, "particles", 2 * radius_nm, 2 * radius_nm,
        {"radius_nm": radius_nm, "radius_spread": spread, "coverage": coverage, "count": count},
    )


def _smooth_noise(rng: np.random.Generator, n: int, correlation_px: float) -> np.ndarray:
    """1-D Gaussian-correlated noise of unit RMS."""
    values = ndimage.gaussian_filter1d(rng.standard_normal(n + 8 * int(correlation_px) + 8), correlation_px)
    values = values[4 * int(correlation_px) + 4 :][:n]
    return values / (values.std() or 1.0)


def terraces(rng: np.random.Generator, size: int, **overrides: Any) -> Surface:
    """An atomically flat oxide substrate (SrTiO3-like): terraces separated by unit-cell steps of 0.39 nm."""
    cols = overrides.get("cols", size)
    scan_nm = overrides.get("scan_size_nm") or log_uniform(rng, 1000, 5000)
    pixel = scan_nm / size
    width_nm = overrides.get("terrace_width_nm") or log_uniform(rng, max(80, 10 * pixel), max(600, 12 * pixel))
    step_nm = SRTIO3_STEP_NM * (2 if rng.random() < 0.15 else 1)  # occasional step bunching
    angle = rng.uniform(0, np.pi)
    meander = rng.uniform(0.05, 0.4)
    y, x = _grid((size, cols))
    across = (x * np.cos(angle) + y * np.sin(angle)) * pixel
    along = (-x * np.sin(angle) + y * np.cos(angle)) * pixel
    # meandering step edges: a smooth random offset as a function of position along the step
    span = int(np.ceil(np.hypot(size, cols))) * 2 + 2
    wiggle = _smooth_noise(rng, span, rng.uniform(4, 20)) * meander * width_nm
    offset = np.interp(along / pixel + span / 2, np.arange(span), wiggle)
    height = step_nm * np.floor((across + offset) / width_nm)
    height -= height.mean()
    # a few unit-cell islands and pits on the terraces
    islands = int(rng.integers(0, 12))
    for _ in range(islands):
        r = rng.uniform(0.05, 0.25) * width_nm / pixel
        cy, cx = rng.uniform(0, 1, 2) * (size, cols)
        bump = step_nm * (1 if rng.random() < 0.6 else -1)
        rows = slice(max(int(cy - r), 0), min(int(cy + r) + 2, size))
        columns = slice(max(int(cx - r), 0), min(int(cx + r) + 2, cols))
        inside = (y[rows, columns] - cy) ** 2 + (x[rows, columns] - cx) ** 2 < r * r
        height[rows, columns] += bump * inside
    return Surface(
        height, pixel, "terraces", step_nm, width_nm,
        {"terrace_width_nm": width_nm, "step_nm": step_nm, "step_angle_deg": float(np.degrees(angle)),
         "meander": meander, "islands": islands},
    )


def grains(rng: np.random.Generator, size: int, **overrides: Any) -> Surface:
    """A polycrystalline film: Voronoi grains with domed tops and grooves at the grain boundaries."""
    cols = overrides.get("cols", size)
    scan_nm = overrides.get("scan_size_nm") or log_uniform(rng, 1000, 4000)
    pixel = scan_nm / size
    grain_nm = overrides.get("grain_size_nm") or log_uniform(rng, max(30, 7 * pixel), max(300, 9 * pixel))
    relief_nm = overrides.get("relief_nm") or log_uniform(rng, 2, 20)
    count = max(4, int(round((scan_nm / grain_nm) ** 2 * cols / size)))
    seeds = rng.uniform(-0.05, 1.05, (count, 2)) * (size, cols)
    y, x = _grid((size, cols))
    points = np.stack([y.ravel(), x.ravel()], axis=1)
    dist, index = cKDTree(seeds).query(points, k=2)
    d1, d2 = dist[:, 0], dist[:, 1]
    grain_px = grain_nm / pixel
    base = rng.normal(0, 0.35, count)[index[:, 0]]
    dome = np.clip((d2 - d1) / (0.5 * grain_px), 0, 1) ** 0.5  # grooves at boundaries, rounded tops
    height = relief_nm * (base + dome).reshape(size, cols)
    return Surface(
        height, pixel, "grains", relief_nm, grain_nm,
        {"grain_size_nm": grain_nm, "relief_nm": relief_nm, "grains": count},
    )


def fibres(rng: np.random.Generator, size: int, **overrides: Any) -> Surface:
    """Worm-like chains on mica, like DNA: 0.5-2 nm high, tip-broadened to 5-20 nm apparent width."""
    cols = overrides.get("cols", size)
    scan_nm = overrides.get("scan_size_nm") or log_uniform(rng, 1000, 2000)
    pixel = scan_nm / size
    height_nm = overrides.get("fibre_height_nm") or rng.uniform(0.5, 2.0)
    width_nm = overrides.get("fibre_width_nm") or rng.uniform(max(5, 2 * pixel), max(20, 3 * pixel))
    persistence_nm = rng.uniform(30, 80)
    density = rng.uniform(3, 15)  # µm of contour per µm² of surface
    total = density * (scan_nm / 1000) ** 2 * 1000 * cols / size
    step = 0.5 * pixel
    centreline = np.zeros((size, cols), dtype=bool)
    chains = 0
    placed = 0.0
    while placed < total:
        length = rng.uniform(300, 1500)
        n = int(length / step)
        # worm-like chain: direction changes with variance step / persistence length
        turns = rng.normal(0, np.sqrt(step / persistence_nm), n)
        theta = rng.uniform(0, 2 * np.pi) + np.cumsum(turns)
        start = rng.uniform(0, 1, 2) * (size, cols) * pixel
        ys = (start[0] + np.cumsum(step * np.sin(theta))) / pixel
        xs = (start[1] + np.cumsum(step * np.cos(theta))) / pixel
        keep = (ys >= 0) & (ys < size) & (xs >= 0) & (xs < cols)
        centreline[ys[keep].astype(int), xs[keep].astype(int)] = True
        placed += length
        chains += 1
    distance_px = ndimage.distance_transform_edt(~centreline)
    sigma_px = max(width_nm / 2.355 / pixel, 0.7)
    height = height_nm * np.exp(-0.5 * (distance_px / sigma_px) ** 2)
    return Surface(
        height, pixel, "fibres", height_nm, width_nm,
        {"fibre_height_nm": height_nm, "fibre_width_nm": width_nm, "persistence_nm": persistence_nm,
         "chains": chains, "contour_um_per_um2": density},
    )


def grid(rng: np.random.Generator, size: int, **overrides: Any) -> Surface:
    """A calibration grating: square pillars, pits or lines, tens to hundreds of nm deep at µm pitch."""
    cols = overrides.get("cols", size)
    scan_nm = overrides.get("scan_size_nm") or log_uniform(rng, 5000, 20000)
    pixel = scan_nm / size
    pitch_nm = overrides.get("pitch_nm") or log_uniform(rng, max(1000, 12 * pixel), max(scan_nm / 3, 13 * pixel))
    depth_nm = overrides.get("depth_nm") or log_uniform(rng, 20, 200)
    pattern = str(rng.choice(["pillars", "pits", "lines"]))
    duty = rng.uniform(0.25, 0.42)  # raised area never half of a row: median row alignment stays stable
    angle = np.radians(rng.uniform(-4, 4))
    y, x = _grid((size, cols))
    u = (x * np.cos(angle) + y * np.sin(angle)) * pixel / pitch_nm + rng.random()
    v = (-x * np.sin(angle) + y * np.cos(angle)) * pixel / pitch_nm + rng.random()
    in_u = (u % 1.0) < duty
    in_v = (v % 1.0) < duty
    raised = {"pillars": in_u & in_v, "pits": ~(in_u & in_v), "lines": in_u}[pattern]
    height = ndimage.gaussian_filter(depth_nm * raised.astype(np.float64), 0.8)  # rounded edges
    return Surface(
        height, pixel, "grid", depth_nm, duty * pitch_nm,
        {"pattern": pattern, "pitch_nm": pitch_nm, "depth_nm": depth_nm, "duty": duty,
         "angle_deg": float(np.degrees(angle))},
    )


def _star(radius_px: float, radius_nm: float, rng: np.random.Generator) -> Callable:
    """A domed star: footprint radius r(θ) = R (1 + a cos(nθ)); height up to the particle height."""
    points, depth, turn = int(rng.integers(4, 8)), rng.uniform(0.3, 0.5), rng.uniform(0, 2 * np.pi)

    def profile(dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
        rim = radius_px * (1 + depth * np.cos(points * (np.arctan2(dy, dx) + turn)))
        d2 = (dy * dy + dx * dx) / (rim * rim)
        return np.where(d2 < 1.0, 2 * radius_nm * np.sqrt(np.clip(1.0 - d2, 0.0, None)), 0.0)

    return profile


def _donut(radius_px: float, radius_nm: float, rng: np.random.Generator) -> Callable:
    """A ring (torus): tube radius a quarter to a third of the ring radius, seen from above."""
    tube = radius_px * rng.uniform(0.25, 0.35)

    def profile(dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
        rho = np.sqrt(dy * dy + dx * dx)
        s2 = 1.0 - ((rho - radius_px) / tube) ** 2
        return np.where(s2 > 0, radius_nm * np.sqrt(np.clip(s2, 0.0, None)), 0.0)

    return profile


DENOISE_SHAPES: dict[str, Callable | None] = {"particles": None, "stars": _star, "donuts": _donut}


def deposited_shapes(rng: np.random.Generator, size: int, shape: str = "particles", scan_size_nm: float = 10000.0) -> Surface:
    """Gwyddion's denoising example: objects of one shape on a flat substrate, 10 µm scans by default.

    `stars` and `donuts` are shapes a denoiser trained on `particles` never saw; the heights and
    sizes match so only the shape is new.
    """
    if shape not in DENOISE_SHAPES:
        raise ValueError(f"unknown shape {shape!r}; choose from {', '.join(DENOISE_SHAPES)}")
    pixel = scan_size_nm / size
    radius_px = rng.uniform(3.0, 9.0) * size / 256
    spread = rng.uniform(0.1, 0.3)
    coverage = rng.uniform(0.08, 0.3)
    maker = DENOISE_SHAPES[shape]
    profile_for = None
    if maker is not None:
        # stars and donuts reach further than their nominal radius: stamp in a wider window
        def profile_for(r_px: float, r_nm: float, shape_rng: np.random.Generator) -> Callable:
            return maker(r_px / 1.5, r_nm / 1.5, shape_rng)

    height, count = deposit((size, size), rng, radius_px, spread, coverage, pixel, profile_for)
    radius_nm = radius_px * pixel
    return Surface(
        height, pixel, shape, 2 * radius_nm, 2 * radius_nm,
        {"shape": shape, "radius_nm": radius_nm, "radius_spread": spread, "coverage": coverage, "count": count},
    )


SURFACES: dict[str, Callable[..., Surface]] = {
    "particles": particles,
    "terraces": terraces,
    "grains": grains,
    "fibres": fibres,
    "grid": grid,
}
