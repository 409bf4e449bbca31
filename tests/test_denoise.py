"""Denoisers: Gwyddion's window network, the line-aware conv denoiser, model files, writing, commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from afmwatch.cli import main
from afmwatch.denoise.guard import CHANGED, UNVERIFIED, VERDICT_TAGS, check
from afmwatch.denoise.metrics import psnr
from afmwatch.denoise.model import Denoiser, default_denoiser_path, keep_row_alignment, load_denoiser, save_denoiser
from afmwatch.denoise.networks import LineAwareDenoiser, UNetDenoiser, WindowMLP, median_noise, run_network
from afmwatch.denoise.noise import noise_rms
from afmwatch.denoise.pairs import SURFACE_KINDS, Pair, add_noise, height_range, synthetic_pair, synthetic_pairs
from afmwatch.denoise.panel import panel_figure
from afmwatch.denoise.train import TrainOptions, half_scale, train_denoiser
from afmwatch.denoise.write import write_denoised
from afmwatch.durable import sha256_file
from afmwatch.networks.model_file import ModelError, save_model_file
from afmwatch.readers import read_scan
from afmwatch.scan import Scan
from afmwatch.synth.surfaces import SURFACES
from afmwatch.writers import write_tiff

PIXEL_NM = 39.0625


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny networks train far faster on one thread, above all on a busy CI machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def noisy_pair(rng: np.random.Generator, size: int = 48, noise_nm: float = 3.0, line_nm: float = 3.0) -> Pair:
    """Round particles (20 nm high) on a flat substrate, plus white noise and one offset per row."""
    y, x = np.mgrid[0:size, 0:size]
    clean = np.zeros((size, size))
    for _ in range(size // 6):
        cy, cx, r = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(3, 6)
        clean = np.maximum(clean, 20 * np.sqrt(np.clip(1 - ((x - cx) ** 2 + (y - cy) ** 2) / r**2, 0, None)))
    noisy = clean + rng.normal(0, noise_nm, clean.shape) + rng.normal(0, line_nm, (size, 1))
    return Pair("pair", noisy.astype(np.float32), clean.astype(np.float32), PIXEL_NM)


def as_scan(height: np.ndarray, path: Path = Path("scan.nid"), units: str = "nm") -> Scan:
    return Scan(height, PIXEL_NM, "Z-Axis", path, "nid", units=units, metadata={"instrument": "test"})


def tiny_denoiser(arch: str, path: Path) -> Denoiser:
    torch.manual_seed(0)  # untrained: its output (and the guard's verdict on it) must not depend on test order
    network = WindowMLP(window=9, hidden=4) if arch == "window-mlp" else LineAwareDenoiser(channels=8, depth=3)
    save_denoiser(path, network, arch, {"training": {"note": "untrained, for tests"}})
    return load_denoiser(path)


def test_window_mlp_lowers_loss_and_keeps_shape_units_and_pixel_size(rng, tmp_path):
    pair = noisy_pair(rng)
    options = TrainOptions(arch="window-mlp", steps=75, batch_size=4, patch_rows=32, patch_cols=48, seed=1)
    network, report = train_denoiser([pair], options, progress=False)
    assert report["loss_curve"][-1] < 0.7 * report["loss_curve"][0]  # means over 25 steps
    save_denoiser(tmp_path / "w.safetensors", network, "window-mlp", {})
    denoiser = load_denoiser(tmp_path / "w.safetensors")
    assert denoiser.network.config() == {"window": 27, "hidden": 6}  # Gwyddion's defaults
    scan = as_scan(pair.noisy)
    before = scan.height.copy()
    out = denoiser.denoise(scan)
    assert out.shape == scan.shape and out.height.dtype == np.float32
    assert (out.units, out.pixel_size_nm, out.channel, out.path) == ("nm", PIXEL_NM, "Z-Axis", scan.path)
    assert out.metadata["denoiser"]["arch"] == "window-mlp" and out.metadata["instrument"] == "test"
    np.testing.assert_array_equal(scan.height, before)  # the input Scan is not modified
    # heights stay physical: the same surface in micrometres gives the same result in micrometres
    in_um = denoiser.denoise(as_scan(pair.noisy / 1000, units="um")).height
    np.testing.assert_allclose(in_um * 1000, out.height, rtol=1e-3, atol=1e-3 * np.ptp(out.height))


@pytest.mark.parametrize(
    "arch, arch_options, learning_rate, clip",
    [("conv", {"channels": 8, "depth": 3}, 1e-2, None), ("unet", {"channels": [8, 16], "blocks": 1}, 3e-3, 1.0)],
)
def test_trained_a_few_steps_improves_psnr_and_removes_line_offsets(rng, arch, arch_options, learning_rate, clip):
    pairs = [noisy_pair(rng, size=48) for _ in range(3)]
    test = noisy_pair(np.random.default_rng(99), size=48)
    options = TrainOptions(
        arch=arch,
        steps=120,
        batch_size=4,
        patch_rows=32,
        patch_cols=48,
        seed=0,
        learning_rate=learning_rate,
        arch_options=arch_options,
    )
    network, report = train_denoiser(pairs, options, progress=False)
    assert report["options"]["clip_grad_norm"] == clip  # the architecture's default
    denoiser = Denoiser(network, arch, "test", Path("test.safetensors"), "", {})
    out = denoiser.denoise(as_scan(test.noisy)).height
    assert psnr(out, test.clean) > psnr(test.noisy, test.clean) + 2.0


def test_half_scale_pair_halves_the_objects_but_keeps_the_noise(rng):
    pair = noisy_pair(rng, size=96, noise_nm=3.0, line_nm=0.0)
    half = half_scale(pair)
    assert half.clean.shape == (48, 48) and half.pixel_size_nm == 2 * PIXEL_NM
    np.testing.assert_allclose(half.clean, pair.clean.reshape(48, 2, 48, 2).mean(axis=(1, 3)), rtol=1e-5)
    # subsampled, not averaged: the noise keeps its spread (averaging 2 x 2 would halve it)
    assert 0.85 < np.std(half.noisy - half.clean) / np.std(pair.noisy - pair.clean) < 1.15


def test_conv_averages_over_flips_and_window_mlp_stays_one_pass(tmp_path):
    conv = tiny_denoiser("conv", tmp_path / "c.safetensors")
    image = np.random.default_rng(3).normal(0, 1, (24, 40)).astype(np.float32)
    flips = [
        np.flip(
            conv.network(torch.from_numpy(np.ascontiguousarray(np.flip(image, axes)))[None, None])[0, 0]
            .detach()
            .numpy(),
            axes,
        )
        for axes in ((), (0,), (1,), (0, 1))
    ]
    np.testing.assert_allclose(conv._run(image), np.mean(flips, axis=0), rtol=1e-4, atol=1e-5)
    window = tiny_denoiser("window-mlp", tmp_path / "w.safetensors")
    single = window.network(torch.from_numpy(image)[None, None])[0, 0].detach().numpy()
    np.testing.assert_allclose(window._run(image), single, rtol=1e-5, atol=1e-6)


def test_missing_pixels_stay_missing(tmp_path):
    denoiser = tiny_denoiser("conv", tmp_path / "c.safetensors")
    height = np.random.default_rng(0).normal(0, 1, (40, 40)).astype(np.float32)
    height[5:8, :] = np.nan
    out = denoiser.denoise(as_scan(height)).height
    assert np.isnan(out[5:8]).all() and np.isfinite(np.delete(out, [5, 6, 7], axis=0)).all()


def test_model_file_checks_kind_and_fit(tmp_path):
    save_model_file(tmp_path / "clf.safetensors", {"w": torch.zeros(2)}, {"kind": "classifier"})
    with pytest.raises(ModelError, match="classifier model, not a denoiser"):
        load_denoiser(tmp_path / "clf.safetensors")
    save_model_file(tmp_path / "bad.safetensors", {"w": torch.zeros(2)}, {"kind": "denoiser", "arch": "conv"})
    with pytest.raises(ModelError, match="do not fit the conv denoiser"):
        load_denoiser(tmp_path / "bad.safetensors")
    with pytest.raises(ModelError, match="does not exist"):
        load_denoiser(tmp_path / "missing.safetensors")


def test_write_denoised_never_overwrites_and_skips_gwy_without_calibration(tmp_path):
    denoiser = tiny_denoiser("window-mlp", tmp_path / "w.safetensors")
    scan = denoiser.denoise(as_scan(np.random.default_rng(1).normal(0, 1, (32, 32))))
    first = write_denoised(scan, tmp_path / "out", ("tiff", "gwy", "png"))
    second = write_denoised(scan, tmp_path / "out", ("tiff", "gwy", "png"))
    assert [p.name for p in first] == ["scan.nid.denoised.tiff", "scan.nid.denoised.gwy", "scan.nid.denoised.png"]
    assert [p.name for p in second] == [p.name.replace(".denoised", ".denoised-1") for p in first]
    uncalibrated = write_denoised(scan.with_height(scan.height, units="a.u."), tmp_path / "au", ("tiff", "gwy"))
    assert [p.suffix for p in uncalibrated] == [".tiff"]
    back = read_scan(first[0])
    assert back.pixel_size_nm == pytest.approx(PIXEL_NM) and back.units == "nm"
    np.testing.assert_array_equal(back.height, scan.height)


def test_denoise_command_writes_readable_tiff_and_leaves_the_original_alone(tmp_path, capsys):
    original = write_tiff(tmp_path / "in" / "sample.tif", noisy_pair(np.random.default_rng(3)).noisy, 12.5)
    digest = sha256_file(original)
    tiny_denoiser("conv", tmp_path / "c.safetensors")
    code = main(["denoise", str(original), "--model", str(tmp_path / "c.safetensors"), "--out", str(tmp_path / "out")])
    assert code == 0
    tiff = next((tmp_path / "out").glob("*.tiff"))
    stem = tiff.name.removesuffix(".tiff")  # sample.tif.denoised, or .SURFACE-CHANGED etc. as the guard decides
    assert stem in ("sample.tif.denoised", *(f"sample.tif.denoised.{tag}" for tag in VERDICT_TAGS.values()))
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == [f"{stem}.gwy", f"{stem}.panel.png", f"{stem}.png", f"{stem}.tiff"]
    assert sha256_file(original) == digest and sorted(p.name for p in original.parent.iterdir()) == ["sample.tif"]
    capsys.readouterr()
    assert main(["inspect", "--json", str(tiff)]) == 0
    report = json.loads(capsys.readouterr().out)[0]
    assert report["ok"] and report["pixel_size_nm"] == pytest.approx(12.5) and report["shape"] == [48, 48]
    assert report["units"] == "nm"


def test_denoise_command_reports_unreadable_files_and_carries_on(tmp_path):
    good = write_tiff(tmp_path / "good.tif", np.random.default_rng(4).normal(0, 1, (40, 40)), 10.0)
    broken = tmp_path / "broken.nid"
    broken.write_bytes(b"not a scan")
    tiny_denoiser("window-mlp", tmp_path / "w.safetensors")
    code = main(
        [
            "denoise",
            str(broken),
            str(good),
            "--model",
            str(tmp_path / "w.safetensors"),
            "--out",
            str(tmp_path / "out"),
            "--formats",
            "tiff",
        ]
    )
    assert code == 1
    # the broken file wrote nothing, the good one its copy; pure noise through an untrained network is never
    # a measurement: `unverified` or `changed`, by the network's random weights
    names = [p.name for p in (tmp_path / "out").iterdir()]
    assert names in (
        [f"good.tif.denoised.{VERDICT_TAGS[UNVERIFIED]}.tiff"],
        [f"good.tif.denoised.{VERDICT_TAGS[CHANGED]}.tiff"],
    )


def test_train_denoiser_command_on_a_synthetic_set(tmp_path, capsys):
    data = tmp_path / "pairs"
    assert main(["synth", "denoise", "--out", str(data), "--n", "3", "--size", "64", "--no-gwy", "--no-previews"]) == 0
    model = tmp_path / "w.safetensors"
    code = main(
        [
            "train-denoiser",
            "--data",
            str(data),
            "--arch",
            "window-mlp",
            "--window",
            "9",
            "--hidden",
            "3",
            "--steps",
            "30",
            "--batch-size",
            "2",
            "--patch",
            "32",
            "64",
            "--out",
            str(model),
            "--no-progress",
        ]
    )
    assert code == 0
    report = json.loads(model.with_suffix(".report.json").read_text())
    assert report["options"]["arch_options"] == {"window": 9, "hidden": 3}
    assert len(report["pairs_trained"]) == 2 and len(report["pairs_validation"]) == 1
    assert set(report["validation"]["mean"]["denoised"]) == {"psnr_db", "ssim", "line_artefact"}
    assert model.with_suffix(".panel.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    denoiser = load_denoiser(model)
    assert denoiser.metadata["training"]["steps"] == 30 and denoiser.network.config()["window"] == 9


def test_fine_tuning_starts_from_the_given_model_and_learns_from_there(rng, tmp_path):
    start = tiny_denoiser("conv", tmp_path / "start.safetensors")
    pairs = [noisy_pair(rng, size=48) for _ in range(2)]
    options = dict(steps=40, batch_size=2, patch_rows=32, patch_cols=48, arch="conv", learning_rate=1e-3)
    tuned, _ = train_denoiser(pairs, TrainOptions(**options, seed=3, init=str(start.path)), progress=False)
    # the same architecture from random weights (another seed than the one tiny_denoiser drew its weights from)
    fresh, _ = train_denoiser(
        pairs, TrainOptions(**options, seed=5, arch_options={"channels": 8, "depth": 3}), progress=False
    )
    assert tuned.config() == start.network.config()  # the file's architecture, not the default conv

    def distance(network: torch.nn.Module) -> float:
        ours, theirs = network.state_dict(), start.network.state_dict()
        return sum(float((ours[k] - theirs[k]).norm()) for k in theirs if theirs[k].is_floating_point())

    # it trained, from the given weights: much nearer to them than a network trained from random ones
    assert 0 < distance(tuned) < 0.5 * distance(fresh)
    with pytest.raises(ValueError, match="cannot start a unet training"):
        train_denoiser(pairs, TrainOptions(**dict(options, arch="unet"), init=str(start.path)), progress=False)
    with pytest.raises(ValueError, match="differ from the given"):
        train_denoiser(pairs, TrainOptions(**options, init=str(start.path), arch_options={"channels": 16}))


def test_a_time_limit_ends_the_run_early_with_the_schedule_annealed(rng, monkeypatch):
    """The clock is faked: every call advances it one second, so the limit of 20 s allows about 20 steps of
    the 100000 asked, and the schedule must still end at its smallest learning rate."""
    import afmwatch.denoise.train as train_module

    ticks = iter(range(10**6))
    monkeypatch.setattr(train_module.time, "monotonic", lambda: float(next(ticks)))
    rates: list[float] = []
    original_step = torch.optim.Adam.step

    def record(self, *args, **kwargs):
        rates.append(self.param_groups[0]["lr"])
        return original_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", record)
    options = TrainOptions(
        arch="conv", steps=100_000, batch_size=2, patch_rows=32, patch_cols=48, learning_rate=1e-2, time_limit_s=20.0
    )
    _, report = train_denoiser([noisy_pair(rng, size=48)], options, progress=False)
    assert 5 <= report["steps_run"] <= 20
    assert max(rates) > 100 * rates[-1]  # warmed up and annealed, not cut off at the peak
    assert rates[-1] < 1e-2 / 25  # below the start (peak / 25): the last stretch of the cycle


def test_trace_retrace_training_needs_no_clean_images(tmp_path):
    data = tmp_path / "scans"
    assert main(["synth", "classify", "--out", str(data), "--n", "2", "--size", "64", "--no-gwy", "--no-previews"]) == 0
    model = tmp_path / "n2n.safetensors"
    code = main(
        [
            "train-denoiser",
            "--self-supervised",
            "trace-retrace",
            "--data",
            str(data),
            "--arch",
            "window-mlp",
            "--window",
            "5",
            "--hidden",
            "2",
            "--steps",
            "10",
            "--batch-size",
            "2",
            "--out",
            str(model),
            "--no-progress",
        ]
    )
    assert code == 0
    report = json.loads(model.with_suffix(".report.json").read_text())
    assert report["self_supervised"] == "trace-retrace"
    names = report["pairs_trained"] + report["pairs_validation"]
    assert len(names) == 4 and sum(n.endswith(" (retrace)") for n in names) == 2
    assert not any(n.startswith("retrace/") for n in names)  # retrace files are targets, never traces
    assert {n.removesuffix(" (retrace)") for n in report["pairs_trained"]}.isdisjoint(
        {n.removesuffix(" (retrace)") for n in report["pairs_validation"]}
    )


def test_denoise_command_levels_first_unless_told_not_to(tmp_path):
    y, x = np.mgrid[0:40, 0:40]
    tilted = write_tiff(tmp_path / "tilted.tif", (2.0 * x + 0.5 * y).astype(np.float32), 10.0)
    tiny_denoiser("conv", tmp_path / "c.safetensors")  # untrained: output = input minus a small residual
    for flag, folder in (([], "levelled"), (["--no-level"], "raw")):
        assert (
            main(
                [
                    "denoise",
                    str(tilted),
                    "--model",
                    str(tmp_path / "c.safetensors"),
                    "--formats",
                    "tiff",
                    "--out",
                    str(tmp_path / folder),
                    *flag,
                ]
            )
            == 0
        )
    levelled = read_scan(next((tmp_path / "levelled").glob("tilted.tif.denoised*.tiff"))).height
    raw = read_scan(next((tmp_path / "raw").glob("tilted.tif.denoised*.tiff"))).height
    assert np.ptp(raw) > 80 and np.ptp(levelled) < 8  # the ~100 nm tilt is gone only when levelled


# -- the guard, the panel, the noise estimate and the pairs over every surface kind (issue 16) ----------
def grain_film(seed: int = 5, noise_to_range: float = 0.05) -> Pair:
    """A film of large, smooth grains filling the frame (the surface the first conv flattened into one
    plateau), with white, 1/f, row and line noise of `noise_to_range` of its height range."""
    rng = np.random.default_rng(seed)
    clean = SURFACES["grains"](rng, 128, scan_size_nm=2000.0, grain_size_nm=500.0, relief_nm=10.0).height
    return Pair("film", add_noise(rng, clean, noise_to_range).astype(np.float32), clean.astype(np.float32), 15.6)


def test_noise_estimate_sees_white_row_and_one_over_f_noise_but_not_a_smooth_surface(rng):
    y, x = np.mgrid[0:256, 0:256]
    surface = 30 * np.sin(x / 17.0) * np.cos(y / 23.0)  # smooth at the pixel scale
    assert noise_rms(surface) < 0.02
    white = rng.normal(0, 1.5, surface.shape)
    rows = np.repeat(rng.normal(0, 1.5, (256, 1)), 256, axis=1)
    along = np.cumsum(rng.normal(0, 0.2, surface.shape), axis=1)  # drifting along each row, independent rows
    along -= along.mean(axis=1, keepdims=True)
    for noise in (white, rows, white + rows, along):
        assert noise_rms(surface + noise) == pytest.approx(np.std(noise), rel=0.12)


def test_synthetic_pairs_cover_every_surface_kind_and_are_reproducible():
    pairs = synthetic_pairs(1, seed=3, size=64)
    assert [p.name.rsplit("-", 1)[1] for p in pairs] == list(SURFACE_KINDS)
    assert {"grains", "domains", "blend", "substrate", "terraces", "grid", "fibres", "particles"} <= set(SURFACE_KINDS)
    again = synthetic_pair(3, 2, SURFACE_KINDS[2], 64)
    np.testing.assert_array_equal(again.noisy, pairs[2].noisy)
    for pair in pairs:
        ratio = np.std(pair.noisy - pair.clean) / height_range(pair.clean)
        assert 0.001 < ratio < 0.6, pair.name  # drawn in 0.3-25 % of the range, scars on top


def test_guard_passes_a_denoiser_that_removes_only_the_noise():
    for seed in range(3):
        film = grain_film(seed)
        report = check(film.noisy, film.clean)  # the perfect denoiser: exactly the clean surface back
        assert report.faithful, report.reasons
        assert 0.8 < report.removed_to_noise < 1.25 and report.structure_to_noise < 0.2
        assert 0.95 < report.height_scale < 1.05
    untouched = check(film.noisy, film.noisy)  # removing nothing changes nothing
    assert untouched.faithful and untouched.removed_rms == 0


def test_guard_flags_a_denoiser_that_flattens_a_grain_film(tmp_path):
    film = grain_film()
    zeroed = check(film.noisy, np.zeros_like(film.noisy))
    assert not zeroed.faithful and zeroed.height_scale == 0
    # the first conv's failure: the grains pressed into one plateau, only the highest bits kept
    plateau = np.quantile(film.clean, 0.6)
    flattened = np.maximum(film.clean, plateau) - 0.54 * (np.maximum(film.clean, plateau) - plateau)
    flattened = np.where(film.clean > plateau, flattened, plateau)
    report = check(film.noisy, flattened)
    assert not report.faithful and report.height_scale < 0.9
    assert report.structure_to_noise > 1 and report.spectrum_ratio_min < 0.8
    assert any("height scale" in reason for reason in report.reasons)
    # the same through a deliberately bad model: a window network whose output is one constant
    denoiser = flat_denoiser(tmp_path / "flat.safetensors")
    out, guarded = denoiser.denoise_checked(as_scan(film.noisy))
    assert np.ptp(out.height) < 1e-3 * np.ptp(film.noisy)
    assert not guarded.faithful and "height scale" in " ".join(guarded.reasons)


def test_guard_does_not_vouch_for_heights_it_cannot_check(tmp_path):
    # noise as large as the surface: even the perfect denoiser's copy cannot be told from a weakened one
    film = grain_film(noise_to_range=0.6)
    perfect = check(film.noisy, film.clean)
    assert perfect.verdict == UNVERIFIED and not perfect.faithful and perfect.height_scale is None
    assert "heights not checked" in perfect.reasons[0]
    weakened = check(film.noisy, 0.85 * film.clean)  # what a denoiser did to real scans under heavy noise
    assert not weakened.faithful
    clear = grain_film(noise_to_range=0.05)
    assert check(clear.noisy, clear.clean).faithful  # a surface well above its noise is judged as before
    written = write_denoised(as_scan(film.clean), tmp_path, ("tiff",), guard=perfect)
    assert [p.name for p in written] == ["scan.nid.denoised.UNVERIFIED.tiff"]
    assert read_scan(written[0]).metadata["denoise_guard"]["verdict"] == "unverified"


def test_guard_flags_invented_particles_and_a_heavy_blur():
    film = grain_film(noise_to_range=0.02)
    y, x = np.mgrid[0:128, 0:128]
    noise = np.std(film.noisy - film.clean)
    centres = ((30, 40), (90, 100), (64, 20))
    blobs = sum(5 * noise * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / 32.0) for cy, cx in centres)
    invented = check(film.noisy, film.clean + blobs)
    assert not invented.faithful and invented.local_structure_to_noise > 1.0
    from scipy import ndimage

    blurred = check(film.noisy, ndimage.gaussian_filter(film.noisy, 4))
    assert not blurred.faithful


def flat_denoiser(path: Path) -> Denoiser:
    """A deliberately bad model: Gwyddion's window network with every weight zero, so every output pixel
    is the same height (the image's mean): the grains are gone."""
    network = WindowMLP(window=5, hidden=2)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.zero_()
        network.out_low.fill_(-1.0)
        network.out_high.fill_(1.0)  # sigmoid(0) = 0.5 -> 0 in normalised units: the mean
    save_denoiser(path, network, "window-mlp", {"training": {"note": "flat on purpose, for the guard's tests"}})
    return load_denoiser(path)


def test_panel_shows_input_denoised_and_removed_on_one_colour_scale():
    film = grain_film()
    report = check(film.noisy, film.clean)
    fig = panel_figure(film.noisy, film.clean, units="nm", pixel_size_nm=10.0, title="film", guard=report)
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 3
    assert len({image.get_clim() for image in images}) == 1  # one colour scale for all three
    assert [ax.get_title() for ax in fig.axes if ax.images][:2] == ["input", "denoised"]
    removed = images[2].get_array()
    centre = float(np.median(film.noisy))
    np.testing.assert_allclose(removed - centre, film.noisy - film.clean, atol=1e-3)
    assert len(fig.axes) == 4  # the three images and their one colour bar (the z scale)
    assert "faithful" in fig._suptitle.get_text()


def test_denoise_command_writes_the_panel_and_flags_a_flattened_copy(tmp_path, capsys):
    from PIL import Image

    film = grain_film()
    original = write_tiff(tmp_path / "in" / "film.tif", film.noisy, 10.0)
    flat_denoiser(tmp_path / "flat.safetensors")
    capsys.readouterr()
    code = main(
        [
            "denoise",
            str(original),
            "--model",
            str(tmp_path / "flat.safetensors"),
            "--out",
            str(tmp_path / "out"),
            "--formats",
            "tiff,panel",
        ]
    )
    assert code == 0
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["film.tif.denoised.SURFACE-CHANGED.panel.png", "film.tif.denoised.SURFACE-CHANGED.tiff"]
    out = capsys.readouterr().out
    assert "guard" in out and "changed" in out and "height scale" in out
    with Image.open(tmp_path / "out" / written[0]) as panel:
        assert panel.format == "PNG" and panel.width > 2.5 * panel.height  # three images side by side
    copy = read_scan(tmp_path / "out" / written[1])
    assert copy.metadata["denoise_guard"]["verdict"] == "changed"
    assert copy.metadata["denoise_guard"]["height_scale"] < 0.9


def test_conv_with_noise_units_gives_the_same_result_in_any_height_units(tmp_path):
    network = LineAwareDenoiser(channels=8, depth=2, normalisation="median-noise")
    save_denoiser(tmp_path / "c.safetensors", network, "conv", {})
    denoiser = load_denoiser(tmp_path / "c.safetensors")
    assert denoiser.network.normalisation == "median-noise"
    assert denoiser.metadata["arch_options"]["normalisation"] == "median-noise"
    film = grain_film()
    in_nm = denoiser.denoise(as_scan(film.noisy)).height
    in_um = denoiser.denoise(as_scan(film.noisy / 1000, units="um")).height
    np.testing.assert_allclose(in_um * 1000, in_nm, rtol=1e-3, atol=1e-3 * np.ptp(in_nm))
    centre, scale = median_noise(film.noisy)
    assert scale == pytest.approx(np.std(film.noisy - film.clean), rel=0.3)  # the unit is the noise


def test_conv_with_image_statistics_normalises_by_the_image_not_the_training_averages(tmp_path):
    torch.manual_seed(0)
    network = LineAwareDenoiser(channels=8, depth=2, normalisation="median-noise", image_statistics=True)
    save_denoiser(tmp_path / "c.safetensors", network, "conv", {})
    denoiser = load_denoiser(tmp_path / "c.safetensors")
    assert denoiser.network.config()["image_statistics"] is True
    image = grain_film().noisy
    before = denoiser._run(image)
    for module in denoiser.network.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.fill_(50.0)
            module.running_var.fill_(1e-4)  # averages that fit no image
    np.testing.assert_allclose(denoiser._run(image), before, rtol=1e-5, atol=1e-5)
    plain = LineAwareDenoiser(channels=8, depth=2, normalisation="median-noise").eval()
    assert "image_statistics" not in plain.config()  # files without the flag keep the running averages


def test_unet_takes_any_image_size_and_its_file_round_trips(tmp_path):
    torch.manual_seed(0)
    network = UNetDenoiser(channels=(4, 8, 8), blocks=1)
    save_denoiser(tmp_path / "u.safetensors", network, "unet", {})
    denoiser = load_denoiser(tmp_path / "u.safetensors")
    assert denoiser.network.config() == {"channels": [4, 8, 8], "blocks": 1}
    assert denoiser.network.normalisation == "median-noise"  # heights in noise units, like the default conv
    for shape in ((37, 53), (5, 300), (64, 64)):  # sizes no multiple of the 4x downsampling
        image = np.random.default_rng(1).normal(0, 1, shape).astype(np.float32)
        out = denoiser._run(image)
        assert out.shape == shape and np.isfinite(out).all()
        expected = denoiser.network(torch.from_numpy(image)[None, None])[0, 0].detach().numpy()
        np.testing.assert_allclose(network(torch.from_numpy(image)[None, None])[0, 0].detach().numpy(), expected)


def test_unet_is_bias_free_so_taller_features_are_treated_alike():
    """No biases, no batch normalisation: f(a x) = a f(x) for a > 0 (Mohan et al. 2020), so a grating ten
    times taller in noise units is denoised the same way."""
    torch.manual_seed(0)
    network = UNetDenoiser(channels=(4, 8), blocks=1).eval()
    assert all(not isinstance(m, torch.nn.BatchNorm2d) for m in network.modules())
    assert all(getattr(m, "bias", None) is None for m in network.modules() if isinstance(m, torch.nn.Conv2d))
    x = torch.from_numpy(np.random.default_rng(2).normal(0, 1, (1, 1, 32, 48)).astype(np.float32))
    with torch.no_grad():
        torch.testing.assert_close(network(10 * x), 10 * network(x), rtol=1e-4, atol=1e-4)


def test_synthetic_pairs_at_two_sizes_keep_the_first_size_and_can_be_drawn_in_processes():
    one = synthetic_pairs(1, seed=4, size=64, kinds=("grains", "grid"))
    two = synthetic_pairs(1, seed=4, size=(64, 96), kinds=("grains", "grid"), workers=2)
    assert [p.clean.shape for p in two] == [(64, 64), (64, 64), (96, 96), (96, 96)]
    for a, b in zip(one, two[:2]):
        np.testing.assert_array_equal(a.noisy, b.noisy)  # the first size's pairs are those one size gives
    assert len({p.name for p in two}) == 4  # no two sizes share a surface's seed
    # a larger size keeps the scan size: finer pixels, so each feature spans more of them
    for kind in ("grains", "grid"):
        small, large = synthetic_pair(4, 0, kind, 64), synthetic_pair(4, 0, kind, 96)
        assert small.pixel_size_nm == pytest.approx(1.5 * large.pixel_size_nm)


def test_a_levelled_scan_stays_levelled_and_an_unlevelled_one_keeps_the_networks_row_offsets():
    rng = np.random.default_rng(6)
    aligned = rng.normal(0, 1, (40, 60)).astype(np.float32)
    aligned -= np.median(aligned, axis=1, keepdims=True)  # as median row alignment leaves it
    denoised = aligned + rng.normal(0, 0.3, (40, 1)).astype(np.float32) + 2.0  # rows moved, and a level
    kept = keep_row_alignment(aligned, denoised)
    assert np.ptp(np.median(kept, axis=1)) < 1e-5  # the rows are aligned again
    assert np.median(kept) == pytest.approx(np.median(np.median(denoised, axis=1)), abs=1e-5)  # at the output's level
    np.testing.assert_allclose(np.diff(kept, axis=1), np.diff(denoised, axis=1), atol=1e-5)  # rows only shifted
    unaligned = aligned + rng.normal(0, 1, (40, 1)).astype(np.float32)
    np.testing.assert_array_equal(keep_row_alignment(unaligned, denoised), denoised)


def test_the_shipped_default_is_the_unet_and_cleans_a_grain_film_without_flattening_it():
    denoiser = load_denoiser(default_denoiser_path())
    assert denoiser.arch == "unet" and default_denoiser_path().name == "denoiser-unet.safetensors"
    film = grain_film(noise_to_range=0.05)
    scan = as_scan(film.noisy)
    denoised, guard = denoiser.denoise_checked(scan)
    assert psnr(denoised.height, film.clean) > psnr(film.noisy, film.clean) + 4.0
    assert 0.9 < np.std(denoised.height) / np.std(film.clean) < 1.1
    assert guard.verdict == "faithful", guard.reasons


def test_a_large_scan_denoised_in_strips_matches_one_piece():
    """Large scans go through the network in strips of whole rows, each with context rows above and below
    that are thrown away: the U-Net's wide field of view needs 64 of them to leave no seam."""
    network = load_denoiser(default_denoiser_path()).network
    image = grain_film(noise_to_range=0.05).noisy
    image = np.vstack([image, image[::-1]])  # 256 x 128
    scale = median_noise(image)[1]
    normalised = ((image - np.median(image)) / scale).astype(np.float32)
    whole = run_network(network, normalised, max_pixels=1 << 22)
    in_strips = run_network(network, normalised, max_pixels=64 * 128)  # four strips of 64 rows
    assert np.abs(in_strips - whole).max() < 0.01  # in noise units
