"""One synthetic scan as an instrument records it: a surface, artefacts, noise, raw tilt and bow,
in both scan directions (trace and retrace).

What a classifier must not learn from is drawn alike for good and bad scans: the scan size (each
surface kind's range, 0.2-50 µm overall), the pixel count (`LINES_MIX`, sometimes non-square), the
tip-limited smoothness, the noise floor and its colour, mild feedback shadows, tilt and bow."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from afmwatch.scan import Scan
from afmwatch.synth.accepted import add_accepted, side_rng
from afmwatch.synth.artefacts import ARTEFACTS, STAGES, applicable
from afmwatch.synth.imaging import draw_imaging, feedback_shadow, instrument_noise, tip_limited
from afmwatch.synth.surfaces import SURFACES, Surface
from afmwatch.synth.visibility import SURFACE_DEPENDENT_STAGES, visibility

GOOD, BAD = "good", "bad"
BAD_SEVERITY = (0.5, 1.0)  # a microscopist rejects the scan
TRACE_SEVERITY = (0.0, 0.1)  # a trace nobody would reject
# pixels per line as operators set them; a line count of half (or, at 128, twice) the points now and then
LINES_MIX = {128: 0.15, 256: 0.45, 512: 0.30, 1024: 0.10}
NON_SQUARE = 0.15
# real bad scans fail mostly by tip changes: they are drawn six times as often as any other artefact
BAD_WEIGHTS = {"tip_change": 6.0, "line_skips": 1.5}


@dataclass
class SynthScan:
    """Trace and retrace height maps (float32, nm; retrace stored left to right like the trace) and how
    they were made. `surface` is the clean surface before any artefact, for tests and denoising."""

    trace: np.ndarray
    retrace: np.ndarray
    surface: np.ndarray
    pixel_size_nm: float
    label: str
    params: dict[str, Any]

    @property
    def metadata(self) -> dict[str, Any]:
        """The instrument-style metadata a file of this scan carries (keys as the readers report them)."""
        rows, cols = self.trace.shape
        return {
            "lines_set": self.params["lines_set"],
            "points_set": cols,
            "lines_acquired": self.params["lines_acquired"],
            "scan_size_nm": [cols * self.pixel_size_nm, rows * self.pixel_size_nm],
            "instrument": "afmwatch synthetic",
            "synthetic": {
                "label": self.label,
                "surface": self.params["surface"]["kind"],
                "artefacts": [{"name": a["name"], "severity": a["severity"]} for a in self.params["artefacts"]],
            },
        }

    def scans(self, name: str = "synthetic") -> tuple[Scan, Scan]:
        """(trace, retrace) as Scans, as a reader would return them from a file holding both directions."""
        path = Path(f"{name}.tif")
        channels = ("Height", "Height retrace")
        trace = Scan(
            self.trace,
            self.pixel_size_nm,
            "Height",
            path,
            "synthetic",
            channels=channels,
            metadata={**self.metadata, "retrace_channel": "Height retrace"},
        )
        retrace = Scan(
            self.retrace,
            self.pixel_size_nm,
            "Height retrace",
            path,
            "synthetic",
            direction="backward",
            channels=channels,
            metadata={**self.metadata, "trace_channel": "Height"},
        )
        return trace, retrace


def file_rng(seed: int, index: int) -> np.random.Generator:
    """The generator for file `index` of a set made with `seed`: the same file whatever the set size."""
    return np.random.default_rng([seed, index])


def draw_shape(rng: np.random.Generator) -> tuple[int, int]:
    """(lines, points per line) from `LINES_MIX`: mostly square, sometimes half as many lines (512 x 256)."""
    points = int(rng.choice(list(LINES_MIX), p=list(LINES_MIX.values())))
    if rng.random() < NON_SQUARE:
        return (points // 2, points) if points >= 256 else (2 * points, points)
    return points, points


def drift_margin(rows: int) -> int:
    """Columns beyond the image that the drift artefact may pull into view (1.7 times the rows at most)."""
    return int(1.7 * rows) + 2


def plan_artefacts(rng: np.random.Generator, label: str, surface_kind: str) -> list[tuple[str, float]]:
    """Artefacts for a scan: one to three at a rejectable severity when bad (tip changes most often),
    at most one trace when good (on a calibration grating, often a scar or two)."""
    if label == BAD:
        names = applicable(surface_kind)
        weights = np.array([BAD_WEIGHTS.get(name, 1.0) for name in names])
        count = int(rng.choice([1, 2, 3], p=[0.7, 0.25, 0.05]))
        chosen = rng.choice(names, size=count, replace=False, p=weights / weights.sum())
        if "blank" in chosen:  # nothing left to damage: a blank scan is just blank
            return [("blank", 1.0)]
        return [(str(name), float(rng.uniform(*BAD_SEVERITY))) for name in chosen]
    if rng.random() < 0.5:
        name = str(rng.choice(applicable(surface_kind, trace=True)))
        if surface_kind == "grid" and rng.random() < 0.5:
            name = "scars"
        return [(name, float(rng.uniform(*TRACE_SEVERITY)))]
    return []


def _raw_background(rng: np.random.Generator, shape: tuple[int, int], surface: Surface) -> tuple[np.ndarray, dict]:
    """What every raw scan carries and a plane and low-order polynomial remove: sample tilt, scanner bow
    along both axes and a little twist, row offsets. The bow is drawn alike for good and bad scans, from a
    few percent of the feature height to several times it (real scans: image.nid's bow is about its z
    range), because microscopists level it away before judging a scan: it must never tell good from bad."""
    rows, cols = shape
    h = surface.feature_height_nm
    y, x = np.meshgrid(np.linspace(-1, 1, rows), np.linspace(-1, 1, cols), indexing="ij")
    half_size_nm = 0.5 * cols * surface.pixel_size_nm
    slope = rng.uniform(-0.01, 0.01, 2)  # sample tilt up to about 0.6 degrees
    scale = max(h, 1e-3 * half_size_nm)

    def bow() -> float:
        return float(rng.choice([-1.0, 1.0]) * scale * 10 ** rng.uniform(-1.5, 0.5))

    slow_bow, fast_bow, twist = bow(), bow(), 0.2 * bow()
    offsets = np.cumsum(rng.normal(0, 0.05 * h, rows))  # z drift between rows
    background = (
        half_size_nm * (slope[0] * x + slope[1] * y)
        + slow_bow * y * y
        + fast_bow * x * x
        + twist * x * y
        + offsets[:, None]
    )
    return background, {
        "tilt_x": float(slope[0]),
        "tilt_y": float(slope[1]),
        "slow_bow_nm": slow_bow,
        "fast_bow_nm": fast_bow,
        "twist_nm": twist,
        "row_offset_rms_nm": float(offsets.std()),
    }


def synth_scan(
    rng: np.random.Generator,
    size: int | tuple[int, int] | None = 256,
    label: str | None = None,
    *,
    surface: str | None = None,
    artefacts: list[tuple[str, float]] | None = None,
    surface_params: dict[str, Any] | None = None,
    accepted_rate: float = 0.0,
    kinds: tuple[str, ...] | None = None,
) -> SynthScan:
    """Make one scan, `size` pixels square, (lines, points), or None for a shape drawn from
    `LINES_MIX`. Without `label` it is drawn (good or bad); without `surface` a kind is drawn; without
    `artefacts` they are planned from the label. Explicit `artefacts` set the label to bad when any is
    at a severity of 0.5 or more, unless `label` is given. `surface_params` pins the surface's own
    parameters (`scan_size_nm`, `grain_size_nm`, ...: the generator's overrides), e.g. to calibrate a
    metric on one kind of film. `accepted_rate` is the chance of a flaw microscopists accept
    (`afmwatch.synth.accepted`), drawn from a generator of its own: the scan is otherwise the same.
    `kinds` are the surface kinds drawn from when `surface` is not given (default: every kind)."""
    accepted_rng = side_rng(rng)
    label = label or (str(rng.choice([GOOD, BAD])) if artefacts is None else None)
    kind = surface or str(rng.choice(list(kinds or SURFACES)))
    if kind not in SURFACES:
        raise ValueError(f"unknown surface {kind!r}; choose from {', '.join(SURFACES)}")
    if size is None:
        rows, cols = draw_shape(rng)
    elif isinstance(size, (int, np.integer)):
        rows, cols = int(size), int(size)
    else:
        rows, cols = (int(n) for n in size)
    if artefacts is None:
        assert label is not None  # drawn above when no artefacts are given
        artefacts = plan_artefacts(rng, label, kind)
    for name, _ in artefacts:
        if name not in ARTEFACTS:
            raise ValueError(f"unknown artefact {name!r}; choose from {', '.join(ARTEFACTS)}")
    if label is None:
        label = BAD if any(severity >= BAD_SEVERITY[0] for _, severity in artefacts) else GOOD
    by_stage = {stage: [(n, s) for n, s in artefacts if ARTEFACTS[n].stage == stage] for stage in STAGES}
    needs_margin = bool(by_stage["geometry"])

    margin = drift_margin(rows) if needs_margin else 0
    surf = SURFACES[kind](rng, rows, **{**(surface_params or {}), "cols": cols + margin, "points": cols})
    imaging = draw_imaging(rng, surf)
    imaged = tip_limited(surf.height, imaging, surf)
    clean = imaged[:, :cols].copy()
    records: list[dict[str, Any]] = []

    def apply(stage: str, z: np.ndarray, stage_rng: np.random.Generator, record: bool = True) -> np.ndarray:
        for name, severity in by_stage[stage]:
            before = z
            z, params = ARTEFACTS[name].function(before, stage_rng, severity, surf)
            if stage in SURFACE_DEPENDENT_STAGES and severity >= BAD_SEVERITY[0]:
                params["visibility"] = round(min(visibility(before, z, imaging["noise_rms_nm"]), 1e6), 2)
            if record:
                records.append({"name": name, "severity": round(severity, 4), "stage": stage, **params})
        return z

    z = apply("surface", imaged, rng)
    z = apply("tip", z, rng)
    z = apply("geometry", z, rng)[:, :cols]
    z, accepted = add_accepted(z, accepted_rng, accepted_rate, surf)
    background, background_params = _raw_background(rng, z.shape, surf)
    directions = []
    for direction, direction_seed in zip(("trace", "retrace"), rng.integers(0, 2**63, 2)):
        # the retrace is scanned right to left: its scan artefacts and feedback shadows trail the other
        # way, and its noise and failures fall elsewhere
        direction_rng = np.random.default_rng(direction_seed)
        is_trace = direction == "trace"
        scanned = z if is_trace else z[:, ::-1]
        scanned = feedback_shadow(scanned, imaging)
        scanned = apply("scan", scanned, direction_rng, record=is_trace)
        scanned = scanned + instrument_noise(direction_rng, scanned.shape, imaging)
        directions.append(scanned if is_trace else scanned[:, ::-1])
    trace, retrace = (d + background for d in directions)
    trace = apply("background", trace, rng)
    retrace = retrace + (trace - directions[0] - background)  # the same bow and twist in both directions
    for name, severity in by_stage["range"]:
        spec = ARTEFACTS[name]
        state = rng.bit_generator.state
        trace, params = spec.function(trace, rng, severity, surf)
        if not spec.per_direction:
            rng.bit_generator.state = state  # the same clip in both directions
        retrace, _ = spec.function(retrace, rng, severity, surf)
        records.append({"name": name, "severity": round(severity, 4), "stage": "range", **params})
    state = rng.bit_generator.state
    trace = apply("acquisition", trace, rng)
    rng.bit_generator.state = state
    retrace = apply("acquisition", retrace, rng, record=False)

    acquired = next((r["lines_acquired"] for r in records if r["name"] == "aborted"), rows)
    params = {
        "label": label,
        "surface": {"kind": kind, **surf.params},
        "artefacts": records,
        **({"accepted_flaws": accepted} if accepted else {}),
        "noise_rms_nm": imaging["noise_rms_nm"],
        "imaging": imaging,
        "background": background_params,
        "pixel_size_nm": surf.pixel_size_nm,
        "scan_size_nm": cols * surf.pixel_size_nm,
        "feature_height_nm": surf.feature_height_nm,
        "feature_width_nm": surf.feature_width_nm,
        "lines_set": rows,
        "points_set": cols,
        "lines_acquired": acquired,
    }
    return SynthScan(
        trace.astype(np.float32),
        retrace.astype(np.float32),
        clean.astype(np.float32),
        surf.pixel_size_nm,
        label,
        params,
    )
