"""Denoisers: Gwyddion's window network, the line-aware conv denoiser, model files, writing, commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from afmwatch.cli import main
from afmwatch.denoise.model import load_denoiser, save_denoiser
from afmwatch.denoise.write import write_denoised
from afmwatch.denoise.metrics import psnr
from afmwatch.denoise.model import Denoiser
from afmwatch.denoise.networks import LineAwareDenoiser, WindowMLP
from afmwatch.denoise.train import Pair, TrainOptions, half_scale, train_denoiser
from afmwatch.durable import sha256_file
from afmwatch.networks.model_file import ModelError, save_model_file
from afmwatch.readers import read_scan
from afmwatch.scan import Scan
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


def test_conv_trained_a_few_steps_improves_psnr_and_removes_line_offsets(rng):
    pairs = [noisy_pair(rng, size=48) for _ in range(3)]
    test = noisy_pair(np.random.default_rng(99), size=48)
    options = TrainOptions(
        arch="conv", steps=120, batch_size=4, patch_rows=32, patch_cols=48, seed=0, learning_rate=1e-2,
        arch_options={"channels": 8, "depth": 3},
    )
    network, _ = train_denoiser(pairs, options, progress=False)
    denoiser = Denoiser(network, "conv", "test", Path("test.safetensors"), "", {})
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
    flips = [np.flip(conv.network(torch.from_numpy(np.ascontiguousarray(np.flip(image, axes)))[None, None])
                     [0, 0].detach().numpy(), axes) for axes in ((), (0,), (1,), (0, 1))]
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
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["sample.tif.denoised.gwy", "sample.tif.denoised.png", "sample.tif.denoised.tiff"]
    assert sha256_file(original) == digest and sorted(p.name for p in original.parent.iterdir()) == ["sample.tif"]
    capsys.readouterr()
    assert main(["inspect", "--json", str(tmp_path / "out" / "sample.tif.denoised.tiff")]) == 0
    report = json.loads(capsys.readouterr().out)[0]
    assert report["ok"] and report["pixel_size_nm"] == pytest.approx(12.5) and report["shape"] == [48, 48]
    assert report["units"] == "nm"


def test_denoise_command_reports_unreadable_files_and_carries_on(tmp_path):
    good = write_tiff(tmp_path / "good.tif", np.random.default_rng(4).normal(0, 1, (40, 40)), 10.0)
    broken = tmp_path / "broken.nid"
    broken.write_bytes(b"not a scan")
    tiny_denoiser("window-mlp", tmp_path / "w.safetensors")
    code = main(["denoise", str(broken), str(good), "--model", str(tmp_path / "w.safetensors"),
                 "--out", str(tmp_path / "out"), "--formats", "tiff"])
    assert code == 1
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["good.tif.denoised.tiff"]


def test_train_denoiser_command_on_a_synthetic_set(tmp_path, capsys):
    data = tmp_path / "pairs"
    assert main(["synth", "denoise", "--out", str(data), "--n", "3", "--size", "64", "--no-gwy", "--no-previews"]) == 0
    model = tmp_path / "w.safetensors"
    code = main(["train-denoiser", "--data", str(data), "--arch", "window-mlp", "--window", "9", "--hidden", "3",
                 "--steps", "30", "--batch-size", "2", "--patch", "32", "64", "--out", str(model), "--no-progress"])
    assert code == 0
    report = json.loads(model.with_suffix(".report.json").read_text())
    assert report["options"]["arch_options"] == {"window": 9, "hidden": 3}
    assert len(report["pairs_trained"]) == 2 and len(report["pairs_validation"]) == 1
    assert set(report["validation"]["mean"]["denoised"]) == {"psnr_db", "ssim", "line_artefact"}
    assert model.with_suffix(".panel.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    denoiser = load_denoiser(model)
    assert denoiser.metadata["training"]["steps"] == 30 and denoiser.network.config()["window"] == 9


def test_trace_retrace_training_needs_no_clean_images(tmp_path):
    data = tmp_path / "scans"
    assert main(["synth", "classify", "--out", str(data), "--n", "2", "--size", "64", "--no-gwy", "--no-previews"]) == 0
    model = tmp_path / "n2n.safetensors"
    code = main(["train-denoiser", "--self-supervised", "trace-retrace", "--data", str(data), "--arch", "window-mlp",
                 "--window", "5", "--hidden", "2", "--steps", "10", "--batch-size", "2", "--out", str(model),
                 "--no-progress"])
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
        assert main(["denoise", str(tilted), "--model", str(tmp_path / "c.safetensors"), "--formats", "tiff",
                     "--out", str(tmp_path / folder), *flag]) == 0
    levelled = read_scan(tmp_path / "levelled" / "tilted.tif.denoised.tiff").height
    raw = read_scan(tmp_path / "raw" / "tilted.tif.denoised.tiff").height
    assert np.ptp(raw) > 80 and np.ptp(levelled) < 8  # the ~100 nm tilt is gone only when levelled
