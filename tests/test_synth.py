"""The synthetic generator: determinism, physical scales, every artefact doing what its name says,
trace/retrace pairs, sets on disk and their read-back through `afmwatch inspect`."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from afmwatch.cli import main
from afmwatch.level import level_array
from afmwatch.synth import (
    ARTEFACTS, SURFACES, applicable, file_rng, generate_classify_set, generate_denoise_set,
    line_noise_field, synth_scan,
)
from afmwatch.synth import artefacts as art
from afmwatch.synth.surfaces import Surface, deposited_shapes, particles
from afmwatch.synth.tips import blunt_tip_image, dilate, double_tip_image, parabolic_tip


def levelled(z: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return level_array(z)


def test_same_seed_same_scan_and_file_i_independent_of_n(tmp_path):
    a = synth_scan(file_rng(3, 5), 64)
    b = synth_scan(file_rng(3, 5), 64)
    assert np.array_equal(a.trace, b.trace, equal_nan=True) and np.array_equal(a.retrace, b.retrace, equal_nan=True)
    assert a.params == b.params
    assert not np.array_equal(synth_scan(file_rng(4, 5), 64).trace, a.trace, equal_nan=True)

    small = generate_classify_set(tmp_path / "small", 3, seed=7, size=64, gwy=False, previews=False)
    large = generate_classify_set(tmp_path / "large", 5, seed=7, size=64, gwy=False, previews=False)
    files_small = json.loads(small.read_text())["files"]
    files_large = json.loads(large.read_text())["files"]
    assert files_small == files_large[:3]
    for entry in files_small:
        assert (tmp_path / "small" / entry["tiff"]).read_bytes() == (tmp_path / "large" / entry["tiff"]).read_bytes()

    # worker processes make the same files; regenerating a smaller set removes the earlier extra files
    parallel = generate_classify_set(tmp_path / "large", 3, seed=7, size=64, gwy=False, previews=False, workers=2)
    assert json.loads(parallel.read_text())["files"] == files_small
    written = sorted(p.relative_to(tmp_path / "large").as_posix() for p in (tmp_path / "large").rglob("*.tif"))
    assert written == sorted([e["tiff"] for e in files_small] + [e["retrace"] for e in files_small])
    for entry in files_small:
        assert (tmp_path / "small" / entry["tiff"]).read_bytes() == (tmp_path / "large" / entry["tiff"]).read_bytes()


def test_physical_scales_and_sizes():
    for kind in SURFACES:
        for index in range(3):
            scan = synth_scan(file_rng(11, index), 256, "good", surface=kind)
            assert scan.trace.shape == (256, 256) and scan.trace.dtype == np.float32
            assert 1000 <= scan.params["scan_size_nm"] <= 20000, kind
            assert 0.05 <= scan.params["noise_rms_nm"] <= 0.5 or scan.params["noise_rms_nm"] <= 0.12 * scan.params[
                "feature_height_nm"], kind
    terraces = synth_scan(file_rng(1, 0), 128, "good", surface="terraces").params["surface"]
    assert terraces["step_nm"] in (pytest.approx(0.3905), pytest.approx(0.781))
    fibres = synth_scan(file_rng(1, 0), 128, "good", surface="fibres").params["surface"]
    assert 0.5 <= fibres["fibre_height_nm"] <= 2.0
    grid = synth_scan(file_rng(1, 0), 128, "good", surface="grid").params["surface"]
    assert 20 <= grid["depth_nm"] <= 200 and grid["pitch_nm"] >= 1000


def test_good_scans_carry_at_most_a_trace_and_bad_scans_a_rejectable_artefact():
    for index in range(40):
        scan = synth_scan(file_rng(2, index), 64, "good" if index % 2 == 0 else "bad")
        severities = [a["severity"] for a in scan.params["artefacts"]]
        if scan.label == "good":
            assert len(severities) <= 1 and all(s <= 0.1 for s in severities)
        else:
            assert severities and max(severities) >= 0.5


def test_raw_tilt_and_row_offsets_are_what_levelling_removes():
    """A good scan is the clean surface plus noise once plane fit and row alignment have run."""
    scan = synth_scan(file_rng(5, 0), 128, "good", surface="particles", artefacts=[])
    raw_difference = scan.trace - scan.surface
    assert np.ptp(raw_difference) > 5 * scan.params["noise_rms_nm"]  # raw data is tilted and offset
    residual = levelled(scan.trace) - levelled(scan.surface)
    residual -= np.median(residual)
    assert np.std(residual) < 0.1 * scan.params["feature_height_nm"] + 2 * scan.params["noise_rms_nm"]


@pytest.mark.parametrize("cumulative", [True, False])
def test_line_noise_is_constant_along_each_fast_scan_row_segment(cumulative):
    rng = np.random.default_rng(0)
    field = line_noise_field((64, 128), rng, changes_per_row=2.0, amplitude_nm=1.0, cumulative=cumulative)
    changes_within_rows = np.count_nonzero(np.diff(field, axis=1))
    # about two changes per row: each row is a few constant segments, never pixel noise
    assert 0 < changes_within_rows < 4 * 64
    for row in field:
        segments = np.split(row, np.flatnonzero(np.diff(row)) + 1)
        assert all(np.all(s == s[0]) for s in segments)
        assert np.mean([len(s) for s in segments]) > 20
    # cumulative offsets wander (a random walk); independent ones do not
    wander = np.std(field[:32].mean(axis=1) - field[32:].mean(axis=1))
    assert (np.ptp(field) > 5) == cumulative or wander >= 0


def test_cumulative_line_noise_is_a_random_walk():
    rng = np.random.default_rng(1)
    walk = line_noise_field((200, 64), rng, 1.0, 1.0, cumulative=True)
    fresh = line_noise_field((200, 64), np.random.default_rng(1), 1.0, 1.0, cumulative=False)
    assert np.ptp(walk) > 3 * np.ptp(fresh)


@pytest.mark.parametrize("coverage", [0.08, 0.2, 0.35])
def test_particle_coverage_matches_the_request(coverage):
    surface = particles(np.random.default_rng(4), 256, coverage=coverage)
    measured = np.count_nonzero(surface.height > 0) / surface.height.size
    assert measured == pytest.approx(coverage, abs=0.04)
    assert 5 <= surface.params["radius_nm"] <= 100


def _clean(kind: str = "particles", size: int = 128, seed: int = 3) -> Surface:
    return SURFACES[kind](np.random.default_rng(seed), size)


def test_ringing_adds_a_row_periodic_component_at_its_frequency():
    surface = _clean("particles", 256)
    out, params = art.ringing(surface.height, np.random.default_rng(2), 0.8, surface)
    added = out - surface.height
    window = np.hanning(256)
    spectrum = (np.abs(np.fft.rfft((added - added.mean(axis=1, keepdims=True)) * window, axis=1)) ** 2).mean(axis=0)
    peak = np.argmax(spectrum[1:]) + 1
    assert peak / 256 == pytest.approx(params["frequency_per_px"], abs=1.5 / 256)
    # along the rows, not the columns: the column spectrum has no such peak
    columns = (np.abs(np.fft.rfft(added, axis=0)) ** 2).mean(axis=1)
    assert spectrum[peak] > 10 * np.median(columns[1:])


def test_unlevelled_survives_plane_and_row_levelling():
    surface = _clean("particles")
    out, params = art.unlevelled(surface.height, np.random.default_rng(1), 0.6, surface)
    residual = levelled(out) - levelled(surface.height)
    assert np.ptp(residual) > 1.5 * surface.feature_height_nm
    assert params["peak_to_valley_nm"] == pytest.approx(8 * 0.6 * surface.feature_height_nm)


def test_clipping_flattens_the_top():
    surface = _clean("grains")
    out, params = art.clipped(surface.height, np.random.default_rng(0), 0.6, surface)
    flat = np.isclose(out, params["level_nm"])
    assert flat.mean() >= 0.7 * 0.6 - 0.02
    if params["side"] == "top":
        assert out.max() == pytest.approx(params["level_nm"]) and np.all(out <= params["level_nm"] + 1e-9)
    else:
        assert out.min() == pytest.approx(params["level_nm"])


def test_blank_scan_has_no_features_only_noise():
    blank = synth_scan(file_rng(1, 1), 128, surface="particles", artefacts=[("blank", 1.0)])
    good = synth_scan(file_rng(1, 1), 128, surface="particles", artefacts=[])
    assert blank.label == "bad"
    assert np.std(levelled(blank.trace)) < 0.25 * np.std(levelled(good.trace))
    assert np.std(levelled(blank.trace)) < 0.2 * blank.params["feature_height_nm"]


def test_random_noise_has_the_stated_rms():
    surface = _clean("terraces")
    out, params = art.random_noise(surface.height, np.random.default_rng(0), 0.7, surface)
    assert np.std(out - surface.height) == pytest.approx(params["rms_nm"], rel=0.05)


def test_scars_are_short_row_segments():
    surface = _clean("fibres")
    out, params = art.scars(surface.height, np.random.default_rng(0), 0.6, surface)
    added = out - surface.height
    assert np.count_nonzero(added) > 0
    for row in added:
        changes = np.count_nonzero(np.diff(row))
        assert changes <= 2 * params["count"]
    # a scar spans a few rows at most, never a whole column
    assert np.max(np.count_nonzero(added, axis=0)) < 0.8 * added.shape[0]


def test_streaks_trail_to_the_right_in_bands_of_rows():
    surface = _clean("particles")
    out, params = art.streaks(surface.height, np.random.default_rng(0), 0.7, surface)
    added = out - surface.height
    assert np.all(added >= -1e-9)
    rows = np.flatnonzero(added.max(axis=1) > 0)
    assert 0 < rows.size <= params["rows"]
    # inside a streak the height only falls slowly from left to right: drops bounded by the fall rate
    fall = surface.feature_height_nm / params["tail_px"]
    assert np.all(np.diff(out[rows], axis=1) >= -fall - np.maximum(0, -np.diff(surface.height[rows], axis=1)) - 1e-9)


def test_lost_contact_saturates_stripes_to_the_end_of_rows():
    surface = _clean("grains")
    out, params = art.lost_contact(surface.height, np.random.default_rng(3), 0.6, surface)
    saturated = out == params["saturated_nm"]
    for start, height, first_col in params["bands"]:
        assert saturated[start : start + height, first_col:].all()
    assert params["rows"] >= int(0.3 * 0.6 * surface.height.shape[0])


def test_tip_dilation_matches_gwyddion_definition():
    surface = _clean("particles", 64)
    radius = 60.0
    fast = blunt_tip_image(surface.height, radius, surface.pixel_size_nm)
    full = dilate(surface.height, parabolic_tip(radius, surface.pixel_size_nm, np.ptp(surface.height)))
    assert np.allclose(fast, full)
    assert np.all(fast >= surface.height - 1e-9)  # a tip never records below the surface
    one = np.zeros((21, 21))
    one[10, 10] = 5.0
    tip = np.full((9, 9), -100.0)
    tip[4, 4] = 0.0
    tip[4 + 2, 4 + 3] = -1.0
    assert np.allclose(double_tip_image(one, (2, 3), 1.0), dilate(one, tip))


def test_blunt_tip_broadens_and_double_tip_repeats_features():
    surface = particles(np.random.default_rng(5), 128, coverage=0.05)
    blunt, _ = art.blunt_tip(surface.height, np.random.default_rng(0), 0.6, surface)
    half = surface.feature_height_nm / 2
    assert np.count_nonzero(blunt > half) > 1.5 * np.count_nonzero(surface.height > half)

    single = np.zeros((96, 96))
    single_surface = Surface(single, 10.0, "particles", 40.0, 40.0)
    single[40:44, 40:44] = 40.0
    doubled, params = art.double_tip(single, np.random.default_rng(1), 0.8, single_surface)
    dy, dx = params["offset_px"]
    assert params["drop_nm"] == pytest.approx(0.2 * 40.0)
    # the twin: the same square again at the tip's offset, lower by the drop
    ghost = doubled[40 + dy : 44 + dy, 40 + dx : 44 + dx]
    assert np.all(ghost >= 40.0 - params["drop_nm"] - 1e-9)
    assert np.count_nonzero(doubled > 1.0) > 16


def test_drift_shears_the_image():
    surface = SURFACES["grid"](np.random.default_rng(2), 128, cols=256)
    stripes = np.zeros((128, 256))
    stripes[:, 100:140] = 50.0
    out, params = art.drift(stripes, np.random.default_rng(0), 0.8, surface)
    assert out.shape == (128, 128)
    edge = np.argmax(np.diff(out, axis=1) > 25, axis=1)
    # the stripe's left edge moves sideways from the first row to the last, by about the shear
    moved = abs(float(np.median(edge[-10:]) - np.median(edge[40:50])))
    assert moved > 0.3 * abs(params["shear_px"])


def test_aborted_scan_leaves_rows_unacquired_and_says_so(tmp_path):
    scan = synth_scan(file_rng(1, 3), 64, surface="terraces", artefacts=[("aborted", 0.8)])
    acquired = scan.params["lines_acquired"]
    assert scan.params["lines_set"] == 64 and acquired < 64
    tail = scan.trace[acquired:]
    assert np.all(np.isnan(tail)) or np.all(tail == 0)
    assert np.all(np.isfinite(scan.trace[:acquired]))
    assert scan.metadata["lines_acquired"] == acquired and scan.metadata["lines_set"] == 64
    trace, retrace = scan.scans()
    assert trace.metadata["lines_acquired"] == acquired and retrace.direction == "backward"
    assert trace.metadata["retrace_channel"] == retrace.channel
    more = synth_scan(file_rng(1, 3), 64, surface="terraces", artefacts=[("aborted", 1.0)])
    assert more.params["lines_acquired"] < acquired


def test_trace_and_retrace_agree_on_good_scans_and_disagree_where_the_tip_failed():
    def disagreement(scan) -> float:
        difference = levelled(scan.trace) - levelled(scan.retrace)
        return float(np.nanstd(difference) / np.nanstd(levelled(scan.surface)))

    good = synth_scan(file_rng(8, 0), 128, surface="particles", artefacts=[])
    scarred = synth_scan(file_rng(8, 0), 128, surface="particles", artefacts=[("scars", 0.8)])
    blunt = synth_scan(file_rng(8, 0), 128, surface="particles", artefacts=[("blunt_tip", 0.8)])
    assert disagreement(good) < 0.1
    assert disagreement(scarred) > 3 * disagreement(good)
    assert disagreement(blunt) < 0.1  # the same blunt tip images both directions alike


@pytest.mark.parametrize("name", sorted(set(ARTEFACTS) - {"drift"}))  # drift moves rows: its own test
def test_every_artefact_grows_with_severity(name):
    """After the pipeline's levelling, a rejectable severity changes the image far more than a trace."""
    kind = next(k for k in ("particles", "fibres", "grid", "terraces") if name in applicable(k))

    def change(severity: float) -> float:
        reference = synth_scan(file_rng(9, 1), 128, surface=kind, artefacts=[(name, 0.0)])
        damaged = synth_scan(file_rng(9, 1), 128, surface=kind, artefacts=[(name, severity)])
        difference = np.nan_to_num(levelled(damaged.trace)) - np.nan_to_num(levelled(reference.trace))
        return float(np.sqrt(np.mean(difference**2))) / damaged.params["feature_height_nm"]

    if name == "blank":
        assert change(1.0) < 1e-6  # blank at any severity is blank
        return
    strong, trace = change(0.8), change(0.05)
    assert strong > 0.05 and strong > 4 * trace


def test_denoise_pairs_and_unseen_shapes(tmp_path):
    manifest = json.loads(generate_denoise_set(tmp_path / "p", 2, seed=1, size=64, gwy=False).read_text())
    entry = manifest["files"][0]
    from afmwatch.readers import read_scan

    clean = read_scan(tmp_path / "p" / entry["clean"]["tiff"]).height
    noisy = read_scan(tmp_path / "p" / entry["noisy"]["tiff"]).height
    expected = np.hypot(entry["noise_rms_nm"], entry["line_noise_rms_nm"])
    assert np.std(noisy - clean) == pytest.approx(expected, rel=0.15)
    assert (tmp_path / "p" / entry["noisy"]["preview"]).is_file()
    assert entry["pixel_size_nm"] == pytest.approx(10000 / 64)

    rng = np.random.default_rng(0)
    donut = deposited_shapes(rng, 256, "donuts")
    labels, count = ndimage.label(donut.height > 0)
    holes = ndimage.binary_fill_holes(donut.height > 0) & ~(donut.height > 0)
    assert count > 0 and holes.any()  # rings have holes; particles do not
    star = deposited_shapes(np.random.default_rng(0), 256, "stars")
    sphere = deposited_shapes(np.random.default_rng(0), 256, "particles")
    assert not np.array_equal(star.height > 0, sphere.height > 0)
    assert not (ndimage.binary_fill_holes(sphere.height > 0) & ~(sphere.height > 0)).any()


def test_synth_command_writes_a_labelled_set(tmp_path):
    out = tmp_path / "set"
    assert main(["synth", "classify", "--out", str(out), "--n", "4", "--size", "64", "--seed", "2", "--gwy"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["labels"] == {"good": 2, "bad": 2}
    assert sorted(p.name for p in (out / "good").iterdir()) == sorted(
        f["name"] + ".tif" for f in manifest["files"] if f["label"] == "good")
    for entry in manifest["files"]:
        for key in ("tiff", "gwy", "preview", "retrace"):
            assert (out / entry[key]).is_file(), key
        assert entry["surface"]["kind"] in SURFACES and "noise_rms_nm" in entry
        assert all({"name", "severity"} <= set(a) for a in entry["artefacts"])
    assert main(["synth", "denoise", "--out", str(tmp_path / "d"), "--n", "1", "--size", "64",
                 "--shapes", "stars", "--no-gwy", "--no-previews"]) == 0
    assert (tmp_path / "d" / "noisy").is_dir() and not (tmp_path / "d" / "gwy").exists()


def test_written_tiffs_read_back_through_inspect(tmp_path):
    manifest = json.loads(
        generate_classify_set(tmp_path, 2, seed=3, size=64, gwy=False, previews=False).read_text())
    entry = manifest["files"][1]
    result = subprocess.run(
        [sys.executable, "-m", "afmwatch", "inspect", "--json", str(tmp_path / entry["tiff"])],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    report = report[0] if isinstance(report, list) else report
    assert report["pixel_size_nm"] == pytest.approx(entry["pixel_size_nm"], rel=1e-5)
    assert report["metadata"]["lines_set"] == 64
    assert report["metadata"]["lines_acquired"] == entry["lines_acquired"]
