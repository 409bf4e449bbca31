"""Good surfaces in physical units (nm), like Gwyddion's Synthetic modules.

Every generator takes a random generator and the number of rows, and returns a `Surface`: a clean,
level height map plus the parameters a microscopist would quote. Each also states its feature height
and width, so artefacts can be scaled to what would hide *these* features. Overrides: `points` (the
image's pixels along the fast axis; default `size`), `cols` (the array's width when a geometry artefact
needs a margin beyond the image; default `size`), `scan_size_nm` (the image's fast-axis width; drawn
log-uniform in the kind's range of 0.2-50 µm otherwise), and kind-specific parameters. Pixels are square.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

SRTIO3_STEP_NM = 0.3905  # one unit cell of SrTiO3
SUBSTRATE_STEPS_NM = {"sapphire": 0.216, "silicon": 0.314}  # Al2O3(0001): c/6; Si(111): one bilayer


@dataclass
class Surface:
    """A clean height map (nm, float64) with the scale of its features and its generation parameters."""

    height: np.ndarray
    pixel_size_nm: float
    kind: str
    feature_height_nm: float
    feature_width_nm: float
    params: dict[str, Any] = field(default_factory=dict)
    image_cols: int | None = None  # the recorded image's width when `height` carries a margin; None: rows


def _frame(
    rng: np.random.Generator, size: int, overrides: dict[str, Any], low_nm: float, high_nm: float
) -> tuple[int, int, float, float]:
    """(array cols, image cols, scan size nm, pixel size nm) for a kind whose scans are `low_nm` to
    `high_nm` wide (log-uniform unless `scan_size_nm` is given)."""
    cols = overrides.get("cols", size)
    points = overrides.get("points", size)
    scan_nm = overrides.get("scan_size_nm") or log_uniform(rng, low_nm, high_nm)
    return cols, points, scan_nm, scan_nm / points


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
    points = overrides.get("points", size)
    # 0.2-10 µm, and pixels of at most 40 nm so that 100 nm particles still span 2.5 pixels
    cols, points, scan_nm, pixel = _frame(rng, size, overrides, 200, min(10000, 40 * points))
    # radius between 2.5 and 12 pixels (visible, not a few huge blobs), and 5-100 nm as real particles
    low, high = max(2.5 * pixel, 5.0), min(12 * pixel, 100.0)
    radius_nm = overrides.get("radius_nm") or log_uniform(rng, low, max(high, low * 1.01))
    spread = overrides.get("radius_spread", rng.uniform(0.05, 0.35))
    coverage = overrides.get("coverage", rng.uniform(0.04, 0.35))
    height, count = deposit((size, cols), rng, radius_nm / pixel, spread, coverage, pixel)
    return Surface(
        height,
        pixel,
        "particles",
        2 * radius_nm,
        2 * radius_nm,
        {"radius_nm": radius_nm, "radius_spread": spread, "coverage": coverage, "count": count},
        points,
    )


def _smooth_noise(rng: np.random.Generator, n: int, correlation_px: float) -> np.ndarray:
    """1-D Gaussian-correlated noise of unit RMS."""
    values = ndimage.gaussian_filter1d(rng.standard_normal(n + 8 * int(correlation_px) + 8), correlation_px)
    values = values[4 * int(correlation_px) + 4 :][:n]
    return values / (values.std() or 1.0)


def _steps(
    rng: np.random.Generator,
    y: np.ndarray,
    x: np.ndarray,
    pixel: float,
    width_nm: float,
    step_nm: float,
    angle: float,
    meander: float,
) -> np.ndarray:
    """A vicinal surface: terraces `width_nm` wide, steps `step_nm` high running at `angle`, their
    edges meandering by `meander` terrace widths; mean height zero."""
    rows, cols = y.shape
    across = (x * np.cos(angle) + y * np.sin(angle)) * pixel
    along = (-x * np.sin(angle) + y * np.cos(angle)) * pixel
    # meandering step edges: a smooth random offset as a function of position along the step
    span = int(np.ceil(np.hypot(rows, cols))) * 2 + 2
    correlation_px = max(4.0, rng.uniform(0.05, 0.3) * width_nm / pixel)  # edges wander, never zigzag
    wiggle = _smooth_noise(rng, span, correlation_px) * meander * width_nm
    offset = np.interp(along / pixel + span / 2, np.arange(span), wiggle)
    height = step_nm * np.floor((across + offset) / width_nm)
    return height - height.mean()


def terraces(rng: np.random.Generator, size: int, **overrides: Any) -> Surface:
    """An atomically flat oxide substrate (SrTiO3-like): terraces separated by unit-cell steps of 0.39 nm."""
    cols, points, scan_nm, pixel = _frame(rng, size, overrides, 500, 20000)
    width_nm = overrides.get("terrace_width_nm") or log_uniform(rng, max(80, 10 * pixel), max(600, 12 * pixel))
    step_nm = SRTIO3_STEP_NM * (2 if rng.random() < 0.15 else 1)  # occasional step bunching
    angle = rng.uniform(0, np.pi)
    meander = rng.uniform(0.05, 0.4)
    y, x = _grid((size, cols))
    height = _steps(rng, y, x, pixel, width_nm, step_nm, angle, meander)
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
        height,
        pixel,
        "terraces",
        step_nm,
        width_nm,
        {
            "terrace_width_nm": width_nm,
            "step_nm": step_nm,
            "step_angle_deg": float(np.degrees(angle)),
            "meander": meander,
            "islands": islands,
        },
        points,
    )


def grains(rng: np.random.Generator, size: int, **overrides: Any) -> Surface:
    """A polycrystalline film: Voronoi grains with domed tops and grooves at the grain boundaries,
    from a few large grains filling the frame (a smooth, tip-limited thin film) to dozens across it."""
    cols, points, scan_nm, pixel = _frame(rng, size, overrides, 200, 20000)
    across = log_uniform(rng, 1.5, max(40.0, 1.6))
    grain_nm = overrides.get("grain_size_nm") or max(scan_nm / across, 7 * pixel)
    relief_nm = overrides.get("relief_nm") or log_uniform(rng, 1, 20)
    roundness = rng.uniform(0.3, 1.0)  # exponent of the dome: low = flat tops and sharp grooves
    count = max(4, int(round((scan_nm / grain_nm) ** 2 * cols / points * size / points)))
    seeds = rng.uniform(-0.05, 1.05, (count, 2)) * (size, cols)
    y, x = _grid((size, cols))
    points_yx = np.stack([y.ravel(), x.ravel()], axis=1)
    dist, index = cKDTree(seeds).query(points_yx, k=2)
    d1, d2 = dist[:, 0], dist[:, 1]
    grain_px = grain_nm / pixel
    base = rng.normal(0, 0.35, count)[index[:, 0]]
    dome = np.clip((d2 - d1) / (0.5 * grain_px), 0, 1) ** roundness  # grooves at boundaries, rounded tops
    height = relief_nm * (base + dome).reshape(size, cols)
    return Surface(
        height,
        pixel,
        "grains",
        relief_nm,
        grain_nm,
        {"grain_size_nm": grain_nm, "relief_nm": relief_nm, "grains": count, "roundness": roundness},
        points,
    )


def fibres(rng: np.random.Generator, size: int, **overrides: Any) -> Surface:
    """Worm-like chains on mica, like DNA: 0.5-2 nm high, tip-broadened to 5-20 nm apparent width."""
    cols, points, scan_nm, pixel = _frame(rng, size, overrides, 200, 5000)
    height_nm = overrides.get("fibre_height_nm") or rng.uniform(0.5, 2.0)
    width_nm = overrides.get("fibre_width_nm") or rng.uniform(max(5, 2 * pixel), max(20, 3 * pixel))
    persistence_nm = rng.uniform(30, 80)
    density = rng.uniform(3, 15)  # µm of contour per µm² of surface
    total = density * (scan_nm / 1000) ** 2 * 1000 * cols / points * size / points
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
        height,
        pixel,
        "fibres",
        height_nm,
        width_nm,
        {
            "fibre_height_nm": height_nm,
            "fibre_width_nm": width_nm,
            "persistence_nm": persistence_nm,
            "chains": chains,
            "contour_um_per_um2": density,
        },
        points,
    )


def grid(rng: np.random.Generator, size: int, **overrides: Any) -> Surface:
    """A calibration grating: square pillars, pits or lines, tens to hundreds of nm deep at µm pitch."""
    cols, points, scan_nm, pixel = _frame(rng, size, overrides, 3000, 50000)
    low = max(1000, 12 * pixel)
    pitch_nm = overrides.get("pitch_nm") or log_uniform(rng, low, max(scan_nm / 3, 1.01 * low))
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
        height,
        pixel,
        "grid",
        depth_nm,
        duty * pitch_nm,
        {
            "pattern": pattern,
            "pitch_nm": pitch_nm,
            "depth_nm": depth_nm,
            "duty": duty,
            "angle_deg": float(np.degrees(angle)),
        },
        points,
    )


def _band_pass_field(
    rng: np.random.Generator,
    shape: tuple[int, int],
    period_px: float,
    spread: float,
    angle: float | None = None,
    angle_spread: float = 0.3,
) -> np.ndarray:
    """Random field (unit RMS) whose spectrum is a ring at one period: a labyrinth of that period; with
    `angle`, only the part of the ring near that direction: stripes with defects, running across it."""
    rows, cols = shape
    ky = np.fft.fftfreq(rows)[:, None]
    kx = np.fft.rfftfreq(cols)[None, :]
    k = np.hypot(ky, kx)
    k0 = 1.0 / period_px
    weight = np.exp(-0.5 * ((k - k0) / (spread * k0)) ** 2)
    if angle is not None:
        # the rfft half-plane holds each direction once, up to sign: compare directions modulo pi
        off = np.angle(np.exp(2j * (np.arctan2(ky, kx) - angle))) / 2
        weight = weight * np.exp(-0.5 * (off / angle_spread) ** 2)
    spectrum = np.fft.rfft2(rng.standard_normal(shape)) * weight
    field_ = np.fft.irfft2(spectrum, s=shape)
    return field_ / (field_.std() or 1.0)


def domains(rng: np.random.Generator, size: int, **overrides: Any) -> Surface:
    """Ferroelectric domains in a thin film: stripes or a labyrinth, each domain a few pixels wide,
    up and down domains a fraction of a nm to a few nm apart, walls a pixel or two wide."""
    cols, points, scan_nm, pixel = _frame(rng, size, overrides, 300, 10000)
    period_px = overrides.get("period_px") or log_uniform(rng, 4, 24)
    pattern = "stripes" if rng.random() < 0.5 else "labyrinth"
    angle = rng.uniform(0, np.pi)
    angle_spread = rng.uniform(0.1, 0.4)
    relief_nm = overrides.get("relief_nm") or log_uniform(rng, 0.3, 3.0)
    wall = rng.uniform(0.15, 0.5)  # wall width relative to the field's RMS: sharp to soft domain walls
    field_ = _band_pass_field(rng, (size, cols), period_px, 0.25, angle if pattern == "stripes" else None, angle_spread)
    roughness = 0.05 * relief_nm * _band_pass_field(rng, (size, cols), 3.0, 0.8)
    height = 0.5 * relief_nm * np.tanh(field_ / wall) + roughness
    return Surface(
        height,
        pixel,
        "domains",
        relief_nm,
        0.5 * period_px * pixel,
        {
            "pattern": pattern,
            "period_nm": period_px * pixel,
            "period_px": period_px,
            "relief_nm": relief_nm,
            "stripe_angle_deg": float(np.degrees(angle)) if pattern == "stripes" else None,
            "wall": wall,
        },
        points,
    )


def blend(rng: np.random.Generator, size: int, **overrides: Any) -> Surface:
    """A phase-separated polymer blend or block copolymer (SBS-PMMA-like): a minority phase as blobs
    (droplets) or, near half and half, worm-like domains, a few nm above or below the matrix."""
    cols, points, scan_nm, pixel = _frame(rng, size, overrides, 500, 50000)
    across = log_uniform(rng, 4, 60)
    domain_nm = overrides.get("domain_size_nm") or max(scan_nm / across, 6 * pixel)
    fraction = overrides.get("fraction") or rng.uniform(0.15, 0.5)
    morphology = "blobs" if fraction < 0.33 else "worms"
    step_nm = overrides.get("step_nm") or log_uniform(rng, 1.0, 30.0)
    sign = 1.0 if rng.random() < 0.6 else -1.0  # minority phase raised (or sunk: selectively dissolved)
    domain_px = domain_nm / pixel
    field_ = _band_pass_field(rng, (size, cols), 2 * domain_px, rng.uniform(0.3, 0.6))
    minority = field_ > np.quantile(field_, 1 - fraction)
    interface_px = max(0.7, rng.uniform(0.03, 0.1) * domain_px)
    phase = _fft_gaussian(minority.astype(np.float64), interface_px)
    texture = _band_pass_field(rng, (size, cols), max(3.0, 0.3 * domain_px), 0.8)
    height = sign * step_nm * phase + rng.uniform(0.02, 0.08) * step_nm * texture
    return Surface(
        height,
        pixel,
        "blend",
        step_nm,
        domain_nm,
        {
            "morphology": morphology,
            "domain_size_nm": domain_nm,
            "fraction": fraction,
            "step_nm": step_nm,
            "minority_raised": sign > 0,
            "interface_px": interface_px,
        },
        points,
    )


def _carve(
    depth: np.ndarray, rim: np.ndarray, cy: float, cx: float, radius_px: float, wall_px: float, rim_px: float
) -> None:
    """One hole in `depth` (0 on the film, 1 at the bottom; the deepest hole wins where two overlap) and
    its rim in `rim` (a Gaussian ridge just outside the edge, peak 1)."""
    rows, cols = depth.shape
    reach = radius_px + 2 * wall_px + 3 * rim_px + 1
    y0, y1 = max(int(cy - reach), 0), min(int(cy + reach) + 2, rows)
    x0, x1 = max(int(cx - reach), 0), min(int(cx + reach) + 2, cols)
    if y0 >= y1 or x0 >= x1:
        return
    d = np.hypot(np.arange(y0, y1)[:, None] - cy, np.arange(x0, x1)[None, :] - cx) - radius_px
    window = depth[y0:y1, x0:x1]
    np.maximum(window, 0.5 * (1.0 - np.tanh(d / wall_px)), out=window)
    if rim_px > 0:
        ridge = rim[y0:y1, x0:x1]
        np.maximum(ridge, np.exp(-0.5 * ((d - wall_px - rim_px) / rim_px) ** 2), out=ridge)


def holes(rng: np.random.Generator, size: int, **overrides: Any) -> Surface:
    """A thin film with holes: a dewetting polymer film or a film with pinholes, round holes of many sizes
    (a few to tens across the frame) down to the substrate or part way, often with a raised rim of the
    material that left the hole, and a little roughness on the film and on the floor."""
    cols, points, scan_nm, pixel = _frame(rng, size, overrides, 500, 50000)
    across = log_uniform(rng, 4, 40)  # mean hole diameters across the frame
    radius_px = max(0.5 * scan_nm / across / pixel, 2.0)
    spread = rng.uniform(0.2, 0.7)  # log-normal spread of the radii: young holes beside grown ones
    fraction = overrides.get("fraction") or rng.uniform(0.05, 0.4)
    film_nm = overrides.get("film_nm") or log_uniform(rng, 3, 100)
    through = rng.random() < 0.7  # down to the substrate, else part way into the film
    depth_nm = film_nm * (1.0 if through else rng.uniform(0.3, 0.8))
    rim_height = rng.uniform(0.05, 0.5) if rng.random() < 0.6 else 0.0  # of the depth
    wall = rng.uniform(0.05, 0.2)  # the wall's width relative to the radius
    rim_width = rng.uniform(0.1, 0.4)
    # holes one after another until they cover the drawn fraction (checked now and then: overlaps merge)
    expected = fraction * size * cols / (np.pi * radius_px**2 * np.exp(2 * spread**2))
    check_every = max(1, int(expected / 20))
    largest = min(2.5 * radius_px, 0.3 * min(size, cols))
    depth = np.zeros((size, cols))
    rim = np.zeros((size, cols))
    count = 0
    while count < 3000:
        r = float(np.clip(radius_px * rng.lognormal(0.0, spread), 1.0, largest))
        cy, cx = rng.uniform(0, 1, 2) * (size, cols)
        _carve(depth, rim, cy, cx, r, max(0.6, wall * r), rim_width * r if rim_height else 0.0)
        count += 1
        if count % check_every == 0 and np.mean(depth > 0.5) >= fraction:
            break
    roughness = _fft_gaussian(rng.standard_normal((size, cols)), rng.uniform(1.0, 4.0))
    roughness_nm = rng.uniform(0.01, 0.05) * film_nm
    roughness *= roughness_nm / (roughness.std() or 1.0)
    height = -depth_nm * depth + rim_height * depth_nm * rim * (1.0 - depth) + roughness
    return Surface(
        height,
        pixel,
        "holes",
        depth_nm,
        2 * radius_px * pixel,
        {
            "hole_diameter_nm": 2 * radius_px * pixel,
            "holes": count,
            "fraction": fraction,
            "film_nm": film_nm,
            "depth_nm": depth_nm,
            "through": through,
            "rim_height": rim_height,
            "radius_spread": spread,
            "roughness_nm": roughness_nm,
        },
        points,
    )


def _fft_gaussian(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian blur by FFT (periodic edges): constant cost however wide the blur."""
    ky = np.fft.fftfreq(image.shape[0])[:, None]
    kx = np.fft.rfftfreq(image.shape[1])[None, :]
    kernel = np.exp(-2 * (np.pi * sigma_px) ** 2 * (ky * ky + kx * kx))
    return np.fft.irfft2(np.fft.rfft2(image) * kernel, s=image.shape)


def substrate(rng: np.random.Generator, size: int, **overrides: Any) -> Surface:
    """A bare, near-atomically flat substrate: cleaved mica (no steps, a trace of roughness, sometimes a
    few adsorbed specks) or sapphire / silicon with single-atomic steps of 0.2-0.3 nm. Its relief is
    small but real, and the noise floor stays below it: unlike a blank scan, it shows a surface."""
    cols, points, scan_nm, pixel = _frame(rng, size, overrides, 200, 20000)
    material = overrides.get("material") or str(rng.choice(["mica", "sapphire", "silicon"]))
    y, x = _grid((size, cols))
    correlation_px = rng.uniform(1.5, 8.0)
    rms_nm = log_uniform(rng, 0.03, 0.12) if material != "mica" else log_uniform(rng, 0.05, 0.2)
    rough = _fft_gaussian(rng.standard_normal((size, cols)), correlation_px)
    height = rms_nm * rough / (rough.std() or 1.0)
    params: dict[str, Any] = {
        "material": material,
        "roughness_rms_nm": rms_nm,
        "roughness_correlation_nm": correlation_px * pixel,
    }
    if material == "mica":
        specks = int(rng.integers(0, 16)) if rng.random() < 0.5 else 0
        for _ in range(specks):
            r_px = rng.uniform(1.5, 5.0)
            cy, cx = rng.uniform(0, 1, 2) * (size, cols)
            _stamp(height, cy, cx, 3 * r_px, _speck(r_px, rng.uniform(0.2, 1.5)))
        params["specks"] = specks
        feature_height, feature_width = 4 * rms_nm, correlation_px * pixel * 4
    else:
        step_nm = SUBSTRATE_STEPS_NM[material]
        width_nm = log_uniform(rng, max(100, 15 * pixel), max(2000, 20 * pixel))
        angle = rng.uniform(0, np.pi)
        height = height + _steps(rng, y, x, pixel, width_nm, step_nm, angle, rng.uniform(0.02, 0.2))
        params.update(step_nm=step_nm, terrace_width_nm=width_nm, step_angle_deg=float(np.degrees(angle)))
        feature_height, feature_width = step_nm, width_nm
    return Surface(height, pixel, "substrate", feature_height, feature_width, params, points)


def _speck(radius_px: float, height_nm: float) -> Callable:
    """A small adsorbate: a Gaussian bump."""

    def profile(dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
        return height_nm * np.exp(-0.5 * (dy * dy + dx * dx) / (radius_px * radius_px))

    return profile


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


def deposited_shapes(
    rng: np.random.Generator, size: int, shape: str = "particles", scan_size_nm: float = 10000.0
) -> Surface:
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
        height,
        pixel,
        shape,
        2 * radius_nm,
        2 * radius_nm,
        {"shape": shape, "radius_nm": radius_nm, "radius_spread": spread, "coverage": coverage, "count": count},
    )


SURFACES: dict[str, Callable[..., Surface]] = {
    "particles": particles,
    "terraces": terraces,
    "grains": grains,
    "fibres": fibres,
    "grid": grid,
    "domains": domains,
    "blend": blend,
    "substrate": substrate,
    "holes": holes,
}
