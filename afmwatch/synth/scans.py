"""One synthetic scan as an instrument records it: a surface, artefacts, noise, raw tilt and bow,
in both scan directions (trace and retrace)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from afmwatch.scan import Scan
from afmwatch.synth.artefacts import ARTEFACTS, STAGES, applicable, noise_floor
from afmwatch.synth.surfaces import SURFACES, Surface

GOOD, BAD = "good", "bad"
BAD_SEVERITY = (0.5, 1.0)  # a microscopist rejects the scan
TRACE_SEVERITY = (0.0, 0.1)  # a trace nobody would reject


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
        trace = Scan(self.trace, self.pixel_size_nm, "Height", path, "synthetic", channels=channels,
                     metadata={**self.metadata, "retrace_channel": "Height retrace"})
        retrace = Scan(self.retrace, self.pixel_size_nm, "Height retrace", path, "synthetic", direction="backward",
                       channels=channels, metadata={**self.metadata, "trace_channel": "Height"})
        return trace, retrace


def file_rng(seed: int, index: int) -> np.random.Generator:
    """The generator for file `index` of a set made with `seed`: the same file whatever the set size."""
    return np.random.default_rng([seed, index])


def plan_artefacts(rng: np.random.Generator, label: str, surface_kind: str) -> list[tuple[str, float]]:
    """Artefacts for a scan: one to three at a rejectable severity when bad, at most one trace when good."""
    if label == BAD:
        names = applicable(surface_kind)
        count = int(rng.choice([1, 2, 3], p=[0.7, 0.25, 0.05]))
        chosen = rng.choice(names, size=count, replace=False)
        if "blank" in chosen:  # nothing left to damage: a blank scan is just blank
            return [("blank", 1.0)]
        return [(str(name), float(rng.uniform(*BAD_SEVERITY))) for name in chosen]
    if rng.random() < 0.5:
        return [(str(rng.choice(applicable(surface_kind, trace=True))), float(rng.uniform(*TRACE_SEVERITY)))]
    return []


def _raw_background(rng: np.random.Generator, shape: tuple[int, int], surface: Surface) -> tuple[np.ndarray, dict]:
    """What every raw scan carries and the standard levelling removes: sample tilt, slow-axis bow,
    row offsets; plus a fast-axis bow too small to matter."""
    rows, cols = shape
    h = surface.feature_height_nm
    y, x = np.meshgrid(np.linspace(-1, 1, rows), np.linspace(-1, 1, cols), indexing="ij")
    half_size_nm = 0.5 * cols * surface.pixel_size_nm
    slope = rng.uniform(-0.01, 0.01, 2)  # sample tilt up to about 0.6 degrees
    slow_bow = rng.uniform(-1, 1) * max(h, 1e-3 * half_size_nm)
    fast_bow = rng.uniform(-0.1, 0.1) * h
    offsets = np.cumsum(rng.normal(0, 0.05 * h, rows))  # z drift between rows
    background = (
        half_size_nm * (slope[0] * x + slope[1] * y) + slow_bow * y * y + fast_bow * x * x + offsets[:, None]
    )
    return background, {
        "tilt_x": float(slope[0]), "tilt_y": float(slope[1]), "slow_bow_nm": float(slow_bow),
        "fast_bow_nm": float(fast_bow), "row_offset_rms_nm": float(offsets.std()),
    }


def synth_scan(
    rng: np.random.Generator,
    size: int = 256,
    label: str | None = None,
    *,
    surface: str | None = None,
    artefacts: list[tuple[str, float]] | None = None,
) -> SynthScan:
    """Make one scan. Without `label` it is drawn (good or bad); without `surface` a kind is drawn;
    without `artefacts` they are planned from the label. Explicit `artefacts` set the label to bad when
    any is at a severity of 0.5 or more, unless `label` is given."""
    label = label or (str(rng.choice([GOOD, BAD])) if artefacts is None else None)
    kind = surface or str(rng.choice(list(SURFACES)))
    if kind not in SURFACES:
        raise ValueError(f"unknown surface {kind!r}; choose from {', '.join(SURFACES)}")
    if artefacts is None:
        artefacts = plan_artefacts(rng, label, kind)
    for name, _ in artefacts:
        if name not in ARTEFACTS:
            raise ValueError(f"unknown artefact {name!r}; choose from {', '.join(ARTEFACTS)}")
    if label is None:
        label = BAD if any(severity >= BAD_SEVERITY[0] for _, severity in artefacts) else GOOD
    by_stage = {stage: [(n, s) for n, s in artefacts if ARTEFACTS[n].stage == stage] for stage in STAGES}
    needs_margin = bool(by_stage["geometry"])

    surf = SURFACES[kind](rng, size, cols=int(2.7 * size) + 2 if needs_margin else size)
    clean = surf.height[:, :size].copy()
    records: list[dict[str, Any]] = []

    def apply(stage: str, z: np.ndarray, stage_rng: np.random.Generator, record: bool = True) -> np.ndarray:
        for name, severity in by_stage[stage]:
            z, params = ARTEFACTS[name].function(z, stage_rng, severity, surf)
            if record:
                records.append({"name": name, "severity": round(severity, 4), "stage": stage, **params})
        return z

    z = apply("surface", surf.height, rng)
    z = apply("tip", z, rng)
    z = apply("geometry", z, rng)[:, :size]
    noise_rms = noise_floor(rng, surf)
    background, background_params = _raw_background(rng, z.shape, surf)
    directions = []
    for direction, direction_seed in zip(("trace", "retrace"), rng.integers(0, 2**63, 2)):
        # the retrace is scanned right to left: its scan artefacts trail the other way and fall elsewhere
        direction_rng = np.random.default_rng(direction_seed)
        is_trace = direction == "trace"
        scanned = z if is_trace else z[:, ::-1]
        scanned = apply("scan", scanned, direction_rng, record=is_trace)
        scanned = scanned + direction_rng.normal(0.0, noise_rms, scanned.shape)
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

    rows = size
    acquired = next((r["lines_acquired"] for r in records if r["name"] == "aborted"), rows)
    params = {
        "label": label,
        "surface": {"kind": kind, **surf.params},
        "artefacts": records,
        "noise_rms_nm": noise_rms,
        "background": background_params,
        "pixel_size_nm": surf.pixel_size_nm,
        "scan_size_nm": size * surf.pixel_size_nm,
        "feature_height_nm": surf.feature_height_nm,
        "feature_width_nm": surf.feature_width_nm,
        "lines_set": rows,
        "lines_acquired": acquired,
    }
    return SynthScan(
        trace.astype(np.float32), retrace.astype(np.float32), clean.astype(np.float32),
        surf.pixel_size_nm, label, params,
    )
