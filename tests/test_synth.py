"""The synthetic generator: determinism, physical scales, every artefact doing what its name says,
trace/retrace pairs, sets on disk and their read-back through `afmwatch inspect`."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
from scipy import ndimage

from afmwatch.cli import main
from afmwatch.level import level_array
from afmwatch.synth import (
    ARTEFACTS,
    SURFACES,
    applicable,
    file_rng,
    generate_classify_set,
    generate_denoise_set,
    line_noise_field,
    synth_scan,
)
from afmwatch.synth import artefacts as art
from afmwatch.synth.imaging import draw_imaging, feedback_shadow, instrument_noise, noise_floor
from afmwatch.synth.scans import LINES_MIX
from afmwatch.synth.surfaces import Surface, deposited_shapes, domains, grains, particles
from afmwatch.synth.tips import blunt_tip_image, dilate, double_tip_image, parabolic_tip
from afmwatch.synth.visibility import VISIBLE_NOISE_MULTIPLE, visibility


def levelled(z: np.ndarray, order: int = 2) -> np.ndarray:
    """Levelled as scans are judged: plane, rows, and the second-order polynomial that removes bow."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return level_array(z, order)


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
            assert 200 <= scan.params["scan_size_nm"] <= 50000, kind  # 0.2-50 µm, each kind its own range
            assert 0.05 <= scan.params["noise_rms_nm"] <= 0.5 or 0.02 <= scan.params["noise_rms_nm"] <= max(
                0.2 * scan.params["feature_height_nm"], 0.05
            ), kind
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
    """A good scan is the clean surface plus noise once plane fit, row alignment and the second-order
    polynomial that removes scanner bow have run (what microscopists do before judging a scan)."""
    scan = synth_scan(file_rng(5, 0), 128, "good", surface="particles", artefacts=[])
    raw_difference = scan.trace - scan.surface
    assert np.ptp(raw_difference) > 5 * scan.params["noise_rms_nm"]  # raw data is tilted and offset
    residual = level_array(scan.trace, 2) - level_array(scan.surface, 2)
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


def test_unlevelled_survives_plane_and_row_levelling_and_is_never_drawn():
    """The unlevelled artefact (kept for the metrics' tests): plane fit and row alignment leave it. It is
    never drawn for a synthetic set: a bowed raw scan is not a bad scan."""
    surface = _clean("particles")
    out, params = art.unlevelled(surface.height, np.random.default_rng(1), 0.6, surface)
    residual = levelled(out, 0) - levelled(surface.height, 0)
    assert np.ptp(residual) > 1.5 * surface.feature_height_nm
    assert "unlevelled" not in {n for k in ("particles", "grains", "substrate") for n in applicable(k)}
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


# drift moves rows: its own test; artefacts not drawn (unlevelled) are not judged as damage
@pytest.mark.parametrize("name", sorted(n for n, a in ARTEFACTS.items() if a.drawn and n != "drift"))
def test_every_artefact_grows_with_severity(name):
    """After the pipeline's levelling, a rejectable severity changes the image far more than a trace."""
    kind = next(k for k in ("particles", "fibres", "grid", "terraces") if name in applicable(k))

    def change(severity: float) -> float:
        """The mean over three scans: one scan's draw can make a trace unusually visible."""
        changes = []
        for index in (1, 2, 3):
            reference = synth_scan(file_rng(9, index), 128, surface=kind, artefacts=[(name, 0.0)])
            damaged = synth_scan(file_rng(9, index), 128, surface=kind, artefacts=[(name, severity)])
            difference = np.nan_to_num(levelled(damaged.trace)) - np.nan_to_num(levelled(reference.trace))
            changes.append(float(np.sqrt(np.mean(difference**2))) / damaged.params["feature_height_nm"])
        return float(np.mean(changes))

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
        f["name"] + ".tif" for f in manifest["files"] if f["label"] == "good"
    )
    for entry in manifest["files"]:
        for key in ("tiff", "gwy", "preview", "retrace"):
            assert (out / entry[key]).is_file(), key
        assert entry["surface"]["kind"] in SURFACES and "noise_rms_nm" in entry
        assert all({"name", "severity"} <= set(a) for a in entry["artefacts"])
    assert (
        main(
            [
                "synth",
                "denoise",
                "--out",
                str(tmp_path / "d"),
                "--n",
                "1",
                "--size",
                "64",
                "--shapes",
                "stars",
                "--no-gwy",
                "--no-previews",
            ]
        )
        == 0
    )
    assert (tmp_path / "d" / "noisy").is_dir() and not (tmp_path / "d" / "gwy").exists()


def test_written_tiffs_read_back_through_inspect(tmp_path):
    manifest = json.loads(generate_classify_set(tmp_path, 2, seed=3, size=64, gwy=False, previews=False).read_text())
    entry = manifest["files"][1]
    result = subprocess.run(
        [sys.executable, "-m", "afmwatch", "inspect", "--json", str(tmp_path / entry["tiff"])],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    report = report[0] if isinstance(report, list) else report
    assert report["pixel_size_nm"] == pytest.approx(entry["pixel_size_nm"], rel=1e-5)
    assert report["metadata"]["lines_set"] == 64
    assert report["metadata"]["lines_acquired"] == entry["lines_acquired"]


# --- what real instruments produce: new surfaces, tip changes, skips, stops, nuisances -------------


def _rows_changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.any(np.abs(np.nan_to_num(a) - np.nan_to_num(b)) > 1e-6, axis=1))


@pytest.mark.parametrize("seed", range(12))
def test_tip_change_is_a_band_in_the_same_rows_of_trace_and_retrace(seed):
    """A tip change happens in time: both directions show it in the same rows, inside the recorded
    band (and, when it lasts, from the band to the end of the scan or above the band)."""
    made = synth_scan(file_rng(seed, 1), 128, surface="grains", artefacts=[("tip_change", 0.8)])
    reference = synth_scan(file_rng(seed, 1), 128, surface="grains", artefacts=[("tip_change", 0.0)])
    record = made.params["artefacts"][0]
    assert made.label == "bad" and record["mode"] in ("smeared", "doubled", "shifted")
    start, end = record["band_start"], record["band_end"]
    assert 5 <= end - start <= 60 and end - start == record["band_lines"] and start >= 0 and end <= 128
    allowed = set(range(start, end))
    if record["lasting"] is not None:
        assert record["lasting"] in ("blunter", "sharper", "doubled")
        allowed |= set(range(record["lasting_start"], record["lasting_end"]))
        assert record["lasting_end"] == 128 or record["lasting_start"] == 0
    trace_rows = _rows_changed(made.trace, reference.trace)
    retrace_rows = _rows_changed(made.retrace, reference.retrace)
    assert np.array_equal(trace_rows, retrace_rows)
    assert set(trace_rows) <= allowed and set(range(start, end)) & set(trace_rows)


def test_tip_change_modes_and_lasting_changes_all_occur_and_are_recorded():
    surface = _clean("particles", 128)
    records = [art.tip_change(surface.height, np.random.default_rng(seed), 0.7, surface)[1] for seed in range(40)]
    assert {r["mode"] for r in records} == {"smeared", "doubled", "shifted"}
    assert {r["lasting"] for r in records} == {None, "blunter", "sharper", "doubled"}
    starts = [r["band_start"] for r in records]
    assert min(starts) < 20 and max(starts) > 80  # it can happen anywhere in the scan
    for r in records:
        assert {
            "band_start",
            "band_end",
            "band_lines",
            "mode",
            "lasting",
            "lasting_start",
            "lasting_end",
            "height_offset_nm",
        } <= set(r)
        assert {"smeared": "broadening_nm", "doubled": "offset_px", "shifted": "shift_px"}[r["mode"]] in r
    # the rows outside the band are the surface itself
    out, record = art.tip_change(surface.height, np.random.default_rng(3), 0.7, surface)
    untouched = np.ones(128, dtype=bool)
    untouched[record["band_start"] : record["band_end"]] = False
    untouched[record["lasting_start"] : record["lasting_end"]] = False
    assert np.array_equal(out[untouched], surface.height[untouched])


def test_line_skips_break_features_mid_line_where_recorded():
    surface = _clean("particles", 128)
    z = surface.height
    out, params = art.line_skips(z, np.random.default_rng(4), 0.7, surface)
    assert params["count"] == len(params["events"]) >= 4
    inside = np.zeros_like(z, dtype=bool)
    for row, lines, first, last, mode, shift in params["events"]:
        assert 0 < last - first < 128 and mode in ("repeat", "jump")
        inside[row : row + lines, first:last] = True
        if mode == "jump":
            assert shift != 0
    assert np.array_equal(out[~inside], z[~inside])  # only the skipped segments change
    assert {e[4] for e in params["events"]} == {"repeat", "jump"}
    # a segment, not a whole line: every changed row keeps part of itself
    changed = np.any(out != z, axis=1)
    assert changed.any() and np.all(np.any(out[changed] == z[changed], axis=1))


def test_aborted_scans_stop_anywhere_and_say_where():
    acquired = []
    for seed in range(60):
        made = synth_scan(
            file_rng(seed, 2),
            64,
            surface="grains",
            artefacts=[("aborted", float(np.random.default_rng(seed).uniform(0.5, 1.0)))],
        )
        lines = made.params["lines_acquired"]
        record = made.params["artefacts"][0]
        assert record["lines_acquired"] == lines == made.metadata["lines_acquired"]
        assert 64 - lines >= 4 and lines >= 3  # a rejectable stop misses >= 4 lines (and >= 2 %)
        for height in (made.trace, made.retrace):
            tail = height[lines:]
            assert np.all(np.isnan(tail)) or np.all(tail == 0)
            assert np.all(np.isfinite(height[:lines]))
        acquired.append(lines)
    assert min(acquired) <= 10 and max(acquired) >= 56  # from near the start to near the end
    assert np.std(acquired) > 10


def test_blunt_tip_stamps_its_own_flat_lopsided_shape_on_every_particle():
    single = np.zeros((128, 128))
    for cy, cx in ((30, 30), (30, 90), (90, 60)):
        single[cy - 2 : cy + 3, cx - 2 : cx + 3] = 20.0
    surface = Surface(single, 5.0, "particles", 20.0, 25.0)
    out, params = art.blunt_tip(single, np.random.default_rng(0), 0.5, surface)
    # the same mound at each particle: equal patches around the three tops
    patches = [out[cy - 20 : cy + 21, cx - 20 : cx + 21] for cy, cx in ((30, 30), (30, 90), (90, 60))]
    assert np.allclose(patches[0], patches[1]) and np.allclose(patches[0], patches[2])
    # a flat end: many pixels at the top height; one flank steeper than the other
    assert np.count_nonzero(np.isclose(patches[0], 20.0)) > 25 + 4 * 5
    row = patches[0][20]
    top = np.flatnonzero(np.isclose(row, 20.0))
    left_width = top[0] - np.argmax(row > 10.0)
    right_width = len(row) - np.argmax(row[::-1] > 10.0) - 1 - top[-1]
    assert left_width != right_width
    assert params["broadening_nm"] == pytest.approx(2.5 * 25.0)


@pytest.mark.parametrize("kind", ["domains", "blend", "substrate"])
def test_new_surface_kinds_have_physical_ranges(kind):
    for seed in range(4):
        made = synth_scan(file_rng(seed, 0), 128, "good", surface=kind)
        p = made.params["surface"]
        assert made.trace.shape == (128, 128) and np.all(np.isfinite(made.trace))
        # features at least five times the noise, unless the quietest instrument cannot go lower
        assert made.params["noise_rms_nm"] <= max(0.2 * made.params["feature_height_nm"], 0.05)
        clean = made.surface
        if kind == "domains":
            assert 4 <= p["period_px"] <= 24 and 0.3 <= p["relief_nm"] <= 3.0  # domains 2-12 pixels wide
            assert p["pattern"] in ("stripes", "labyrinth")
            up = np.mean(clean > np.median(clean))
            assert 0.3 < up < 0.7 and np.ptp(clean) < 1.5 * p["relief_nm"]
        elif kind == "blend":
            assert 1.0 <= p["step_nm"] <= 30 and 0.15 <= p["fraction"] <= 0.5
            assert p["morphology"] == ("blobs" if p["fraction"] < 0.33 else "worms")
            raised = (
                clean > clean.min() + 0.5 * p["step_nm"]
                if p["minority_raised"]
                else (clean < clean.max() - 0.5 * p["step_nm"])
            )
            assert np.mean(raised) == pytest.approx(p["fraction"], abs=0.1)
        else:
            assert p["material"] in ("mica", "sapphire", "silicon")
            if p["material"] != "mica":
                assert 0.2 <= p["step_nm"] <= 0.4
            assert np.ptp(levelled(clean)) < 3.0  # near-atomically flat


def test_a_flat_substrate_shows_a_surface_and_a_blank_scan_does_not():
    """Both are featureless at a glance; the substrate's relief is above its noise and correlated from
    row to row, the blank scan's is noise alone."""

    def row_to_row(z: np.ndarray) -> float:
        z = levelled(z)
        z = z - ndimage.uniform_filter1d(z, 31, axis=1)  # without the scanner's bow along the rows
        return float(np.corrcoef(z[1:].ravel(), z[:-1].ravel())[0, 1])

    for seed in range(4):
        flat = synth_scan(file_rng(seed, 3), 256, "good", surface="substrate")
        blank = synth_scan(file_rng(seed, 3), 256, surface="grains", artefacts=[("blank", 1.0)])
        assert np.std(levelled(flat.trace)) > 1.5 * flat.params["noise_rms_nm"]
        assert row_to_row(flat.trace) > 0.3 > row_to_row(blank.trace)
    assert "substrate" not in {
        k for name in ("blank", "tip_change", "line_skips") for k in SURFACES if name in applicable(k)
    }


def test_grains_range_from_a_few_filling_the_frame_to_many():
    counts = [grains(np.random.default_rng(seed), 256).params["grains"] for seed in range(30)]
    assert min(counts) <= 12 and max(counts) >= 300


def test_stripe_domains_run_one_way_and_labyrinths_do_not():
    def anisotropy(z: np.ndarray) -> float:
        spectrum = np.abs(np.fft.fftshift(np.fft.fft2(z - z.mean()))) ** 2
        ky, kx = np.indices(z.shape) - np.array(z.shape)[:, None, None] // 2
        angle = np.arctan2(ky, kx)
        return float(np.abs(np.sum(spectrum * np.exp(2j * angle))) / np.sum(spectrum))

    made = [domains(np.random.default_rng(seed), 128, period_px=8.0) for seed in range(8)]
    stripes = next(d for d in made if d.params["pattern"] == "stripes")
    labyrinth = next(d for d in made if d.params["pattern"] == "labyrinth")
    assert anisotropy(stripes.height) > 0.4 > 0.2 > anisotropy(labyrinth.height)


def test_imaging_nuisances_shadows_trail_opposite_ways_and_noise_has_its_rms():
    step = np.zeros((4, 64))
    step[:, 32:] = 10.0
    surface = Surface(step, 10.0, "grid", 10.0, 320.0)
    imaging = draw_imaging(np.random.default_rng(0), surface)
    imaging["shadow"] = {"gain": -0.15, "decay_px": 2.0}
    trace = feedback_shadow(step, imaging)
    retrace = feedback_shadow(step[:, ::-1], imaging)[:, ::-1]
    # a lag after the edge in the direction of scanning: right of it in the trace, left in the retrace
    assert trace[0, 33] < 10.0 and np.allclose(trace[:, :32], 0.0)
    assert retrace[0, 30] > 0.0 and np.allclose(retrace[:, 33:], 10.0)
    assert np.max(np.abs(trace - step)) < 0.2 * 10.0  # mild: a microscopist accepts it
    noise = instrument_noise(np.random.default_rng(1), (256, 256), imaging)
    assert np.std(noise) == pytest.approx(imaging["noise_rms_nm"], rel=0.15)


def test_noise_floor_is_a_real_instruments_even_under_sub_nm_relief():
    """A bare substrate's 0.22 nm steps are imaged at 0.02-0.05 nm of noise or more, never cleaner than an
    instrument can (they were once imaged at 0.026 nm and below, and real sapphire looked unfamiliar); a
    tall surface keeps the primer's 0.05-0.5 nm, at most a fifth of its features."""
    flat = Surface(np.zeros((8, 8)), 1.0, "substrate", 0.22, 500.0)
    tall = Surface(np.zeros((8, 8)), 1.0, "particles", 40.0, 50.0)
    rng = np.random.default_rng(3)
    on_flat = np.array([noise_floor(rng, flat) for _ in range(400)])
    on_tall = np.array([noise_floor(rng, tall) for _ in range(400)])
    assert on_flat.min() >= 0.02 and on_flat.max() <= 0.05 + 1e-12
    assert np.percentile(on_flat, 90) > 0.2 * 0.22  # the floor above what a fifth of the steps would allow
    assert on_tall.min() >= 0.05 and on_tall.max() <= 0.5 and np.percentile(on_tall, 90) > 0.3


def test_noise_along_the_rows_reddens_with_its_exponent():
    """1/f^2 noise (drift of z within a line) puts more of its power at the lowest frequencies along a row
    than 1/f does; neither correlates from one row to the next (that is the row jitter's part)."""
    imaging = {"noise_rms_nm": 1.0, "noise_colour": {"white": 0.0, "one_over_f": 1.0, "rows": 0.0}}
    low_share = {}
    for exponent in (1.0, 2.0):
        noise = instrument_noise(np.random.default_rng(5), (128, 256), {**imaging, "noise_exponent": exponent})
        assert np.std(noise) == pytest.approx(1.0, rel=0.1)
        power = np.abs(np.fft.rfft(noise, axis=1)) ** 2
        low_share[exponent] = power[:, 1:5].sum() / power.sum()
        assert abs(np.corrcoef(noise[:-1].ravel(), noise[1:].ravel())[0, 1]) < 0.05
    assert low_share[2.0] > 1.5 * low_share[1.0]
    # without an exponent (the denoiser's pairs) the noise is 1/f, as before
    plain = instrument_noise(np.random.default_rng(5), (128, 256), imaging)
    assert np.allclose(
        plain, instrument_noise(np.random.default_rng(5), (128, 256), {**imaging, "noise_exponent": 1.0})
    )


def test_nuisances_are_drawn_alike_for_good_and_bad_scans():
    """Scan size, pixel count and smoothness never tell good from bad: both labels span the same range."""
    params = {"good": [], "bad": []}
    for index in range(48):
        label = "good" if index % 2 == 0 else "bad"
        made = synth_scan(file_rng(21, index), None, label)
        assert made.trace.shape == (made.params["lines_set"], made.params["points_set"])
        params[label].append(made.params)
    for key in ("scan_size_nm", "lines_set"):
        good = np.array([p[key] for p in params["good"]], dtype=float)
        bad = np.array([p[key] for p in params["bad"]], dtype=float)
        # the middle halves of the two distributions overlap
        assert np.quantile(good, 0.25) < np.quantile(bad, 0.75) and np.quantile(bad, 0.25) < np.quantile(good, 0.75)
    for label, group in params.items():
        assert min(p["scan_size_nm"] for p in group) < 1500 and max(p["scan_size_nm"] for p in group) > 8000, label
        assert len({p["lines_set"] for p in group} & set(LINES_MIX)) >= 3, label
        blur = [p["imaging"]["blur_px"] for p in group]
        assert min(blur) < 0.5 and max(blur) > 1.0, label  # tip-limited smoothness on good and bad alike
    assert all(128 <= p["lines_set"] <= 1024 for p in params["good"] + params["bad"])


def test_auto_sizes_are_deterministic_and_non_square_scans_work(tmp_path):
    a = synth_scan(file_rng(3, 7), None)
    b = synth_scan(file_rng(3, 7), None)
    assert np.array_equal(a.trace, b.trace, equal_nan=True) and a.params == b.params
    wide = synth_scan(file_rng(1, 0), (64, 128), surface="particles", artefacts=[("drift", 0.7)])
    assert wide.trace.shape == (64, 128) and wide.retrace.shape == (64, 128)
    assert wide.metadata["scan_size_nm"] == pytest.approx([128 * wide.pixel_size_nm, 64 * wide.pixel_size_nm])
    assert np.all(np.isfinite(wide.trace))
    pinned = synth_scan(
        file_rng(2, 0),
        128,
        surface="grains",
        surface_params={"scan_size_nm": 2000.0, "grain_size_nm": 250.0, "relief_nm": 5.0},
    )
    assert pinned.params["scan_size_nm"] == pytest.approx(2000.0)
    assert pinned.params["surface"]["grain_size_nm"] == 250.0 and pinned.params["feature_height_nm"] == 5.0
    shapes = {synth_scan(file_rng(5, i), None, "good", surface="particles").trace.shape for i in range(40)}
    assert any(r != c for r, c in shapes) and {c for _, c in shapes} <= set(LINES_MIX)

    assert (
        main(
            [
                "synth",
                "classify",
                "--out",
                str(tmp_path / "auto"),
                "--n",
                "2",
                "--seed",
                "4",
                "--size",
                "auto",
                "--no-gwy",
                "--no-previews",
                "--no-retrace",
            ]
        )
        == 0
    )
    manifest = json.loads((tmp_path / "auto" / "manifest.json").read_text())
    assert manifest["size"] == "auto" and "lines" in manifest["sizes"]
    from afmwatch.readers import read_scan

    for entry in manifest["files"]:
        height = read_scan(tmp_path / "auto" / entry["tiff"]).height
        assert height.shape == (entry["lines_set"], entry["points_set"])


def test_visibility_measures_a_local_change_in_noise_units_and_ignores_line_offsets():
    rng = np.random.default_rng(0)
    before = rng.normal(0, 5.0, (64, 128))
    offsets = before + rng.normal(0, 3.0, (64, 1))  # levelling removes these
    assert visibility(before, offsets, 1.0) < 1e-9
    patch = before.copy()
    patch[20:25, 16:32] += 4.0  # 5 lines by an eighth of the row, 4 noise RMS
    assert visibility(before, patch, 1.0) == pytest.approx(4.0, rel=0.02)
    assert visibility(before, patch, 2.0) == pytest.approx(2.0, rel=0.02)
    wider = np.hstack([before, rng.normal(0, 5.0, (64, 40))])  # drift's margin beyond the image is cut
    assert visibility(wider, patch, 1.0) == pytest.approx(4.0, rel=0.02)


def test_visibility_recorded_is_what_the_scan_shows():
    """A rejectable tip change records how far it shows above the noise: the trace differs from the same
    scan drawn without it by that much (noise, background and shadows are the same draws). Over sparse
    fibres a band often lies on bare mica and hardly shows; over particles it always does."""
    shown = {}
    for kind in ("fibres", "particles"):
        shown[kind] = []
        for seed in range(8):
            made = synth_scan(file_rng(seed, 1), 128, surface=kind, artefacts=[("tip_change", 0.55)])
            reference = synth_scan(file_rng(seed, 1), 128, surface=kind, artefacts=[("tip_change", 0.0)])
            record = made.params["artefacts"][0]
            measured = visibility(reference.trace, made.trace, made.params["noise_rms_nm"])
            assert measured == pytest.approx(record["visibility"], rel=0.1, abs=0.05)
            shown[kind].append(record["visibility"])
    assert min(shown["particles"]) >= VISIBLE_NOISE_MULTIPLE
    assert min(shown["fibres"]) < VISIBLE_NOISE_MULTIPLE


def test_traces_on_good_scans_record_no_visibility():
    made = synth_scan(file_rng(3, 0), 128, surface="fibres", artefacts=[("tip_change", 0.05)])
    assert made.label == "good"
    assert "visibility" not in made.params["artefacts"][0]


def test_accepted_settling_changes_only_the_first_lines_and_never_the_label():
    """The scan-start settling is drawn from a generator of its own: with it, a scan is the same scan
    (same label, same artefacts) plus a band at the top that fades out, shifted sideways and tilted."""
    for index in range(6):
        label = "good" if index % 2 == 0 else "bad"
        plain = synth_scan(file_rng(33, index), 256, label)
        settled = synth_scan(file_rng(33, index), 256, label, accepted_rate=1.0)
        assert settled.label == plain.label and settled.params["artefacts"] == plain.params["artefacts"]
        assert "accepted_flaws" not in plain.params
        (flaw,) = settled.params["accepted_flaws"]
        assert flaw["name"] == "settling" and 3 <= flaw["lines"] <= 0.12 * 256 + 1
        difference = np.abs(settled.trace.astype(float) - plain.trace.astype(float))
        changed_rows = difference.max(axis=1)
        # the first line moves by the settling's offset and tilt; two band lengths later it has faded
        assert changed_rows[0] > 0.1 * abs(flaw["height_offset_nm"])
        assert changed_rows[3 * flaw["lines"] :].max() < 0.01 * abs(flaw["height_offset_nm"]) + 1e-3
        assert np.allclose(settled.retrace[-10:], plain.retrace[-10:], atol=1e-3)  # both directions carry it
        assert np.abs(settled.retrace[0] - plain.retrace[0]).max() > 0.1 * abs(flaw["height_offset_nm"])
    assert synth_scan(file_rng(33, 0), 128, "good", accepted_rate=0.0).params == (
        synth_scan(file_rng(33, 0), 128, "good").params
    )


def test_accepted_flaws_in_sets_are_drawn_alike_for_good_and_bad_and_recorded(tmp_path):
    out = tmp_path / "set"
    args = ["synth", "classify", "--out", str(out), "--n", "40", "--size", "64", "--seed", "4", "--no-gwy"]
    assert main([*args, "--no-previews", "--accepted-flaws", "0.5"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["accepted_flaws"] == {"rate": 0.5, "kinds": ["settling"]}
    settled = {
        label: sum(1 for f in manifest["files"] if f["label"] == label and f.get("accepted_flaws"))
        for label in ("good", "bad")
    }
    assert settled["good"] >= 4 and settled["bad"] >= 4, settled  # about 10 of 20 each
    plain = tmp_path / "plain"
    assert main([*args[:3], str(plain), *args[4:], "--no-previews"]) == 0
    assert "accepted_flaws" not in json.loads((plain / "manifest.json").read_text())
    with pytest.raises(ValueError, match="between 0 and 1"):
        generate_classify_set(tmp_path / "x", 2, accepted=1.5)


def test_film_with_holes_has_round_holes_of_the_drawn_depth_and_rims():
    """Dewetting films and films with pinholes (like nid/image.nid): holes cover about the drawn fraction,
    go down by the drawn depth, and a rim, when drawn, stands above the film around each hole."""
    holes = SURFACES["holes"]
    seen_rims = seen_partial = 0
    for seed in range(12):
        surface = holes(np.random.default_rng(seed), 256)
        p = surface.params
        assert surface.kind == "holes" and surface.feature_height_nm == pytest.approx(p["depth_nm"])
        assert 3 <= p["film_nm"] <= 100 and p["depth_nm"] <= p["film_nm"] * (1 + 1e-9)
        film = np.median(surface.height)  # most of the area is film
        inside = surface.height < film - 0.5 * p["depth_nm"]
        # holes are carved until they cover the drawn fraction; the last one may overshoot (at most 0.28 of
        # the frame: a radius of 0.3 of its side)
        covered = np.mean(inside)
        assert 0.9 * p["fraction"] <= covered <= p["fraction"] + 0.3, (seed, covered, p["fraction"])
        floor = np.median(surface.height[inside])  # the floor of the holes, walls aside
        assert floor == pytest.approx(film - p["depth_nm"], abs=0.25 * p["depth_nm"]), seed
        assert ndimage.label(inside)[1] >= 1
        rim_nm = p["rim_height"] * p["depth_nm"]
        if rim_nm > 8 * p["roughness_nm"]:  # a rim that roughness alone cannot mimic
            seen_rims += 1
            assert surface.height[~inside].max() > film + 0.6 * rim_nm, seed
        seen_partial += not p["through"]
    assert seen_rims and seen_partial


def test_a_film_with_holes_is_drawn_among_the_kinds_and_can_go_bad():
    """The ninth surface kind takes part in the sets: tip changes and the other featured faults apply to it."""
    assert "holes" in SURFACES and "tip_change" in applicable("holes") and "blank" in applicable("holes")
    bad = synth_scan(file_rng(3, 0), 128, "bad", surface="holes")
    assert bad.label == "bad" and bad.params["artefacts"]
    assert np.all(np.isfinite(bad.trace)) and np.all(np.isfinite(bad.retrace))


def test_a_recipe_that_names_its_surface_kinds_keeps_its_scans(tmp_path, capsys):
    """`--surfaces` with the eight kinds the shipped default learned on draws the scans the generator drew
    before the ninth kind (holes) existed: the first files of the default's test set (seed 1001), as that
    generator wrote them; every kind drawn is one named; an unknown kind is refused by name."""
    eight = "particles,terraces,grains,fibres,grid,domains,blend,substrate"
    out = tmp_path / "named"
    assert main(["synth", "classify", "--out", str(out), "--n", "6", "--seed", "1001", "--surfaces", eight,
                 "--no-gwy", "--no-previews", "--accepted-flaws", "0.3"]) == 0  # fmt: skip
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["surfaces"] == eight.split(",")
    drawn = [
        (f["name"], [a["name"] for a in f["artefacts"]], f["lines_set"], f["points_set"]) for f in manifest["files"]
    ]
    assert drawn == [
        ("s1001-00000-substrate", [], 128, 128),
        ("s1001-00001-substrate", ["aborted"], 256, 256),
        ("s1001-00002-terraces", [], 512, 512),
        ("s1001-00003-grid", ["blank"], 512, 1024),
        ("s1001-00004-substrate", ["streaks"], 512, 512),
        ("s1001-00005-blend", ["tip_change", "clipped"], 128, 256),
    ]
    assert manifest["files"][1]["scan_size_nm"] == pytest.approx(6619.76, abs=0.01)

    two = tmp_path / "two"
    assert main(["synth", "classify", "--out", str(two), "--n", "12", "--size", "64", "--surfaces", "holes,grid",
                 "--no-gwy", "--no-previews"]) == 0  # fmt: skip
    kinds = {f["surface"]["kind"] for f in json.loads((two / "manifest.json").read_text())["files"]}
    assert kinds == {"holes", "grid"}
    assert json.loads((two / "manifest.json").read_text())["surfaces"] == ["grid", "holes"]  # SURFACES order

    capsys.readouterr()
    assert main(["synth", "classify", "--out", str(tmp_path / "x"), "--n", "2", "--surfaces", "grains,craters"]) == 1
    assert "craters" in capsys.readouterr().err
