"""Denoising in the watch-folder service, `location: tree` (the broken-model and `beside` cases are in
test_daemon_e2e.py): denoised copies go to output_root/denoised/<decision>/<subfolders>, the sidecar names
them, the model and the guard's verdict with its numbers, and the sorted scan itself is untouched."""

from __future__ import annotations

import json

import pytest
from daemon_support import (
    Daemon,
    processed_count,
    scan_bytes_file,
    sha256,
    sorted_files,
    tiny_model,
    wait_until,
    write_config,
)

from afmwatch.daemon.sidecar import sidecar_path
from afmwatch.denoise.model import save_denoiser
from afmwatch.denoise.networks import WindowMLP
from afmwatch.readers import read_scan


@pytest.mark.slow
def test_denoised_copies_go_to_the_denoised_tree_and_the_sidecar_names_them_and_the_guard(tmp_path):
    model = tiny_model(tmp_path / "classifier.safetensors")
    denoiser = save_denoiser(tmp_path / "denoiser.safetensors", WindowMLP(window=5, hidden=2), "window-mlp", {})
    config = write_config(
        tmp_path,
        model,
        denoise={"enabled": True, "model": str(denoiser), "formats": ["tiff", "png", "panel"], "location": "tree"},
    )
    staging = scan_bytes_file(tmp_path / "staging" / "scan.tif", seed=41)
    digest = sha256(staging)
    daemon = Daemon(config).wait_ready()
    try:
        (tmp_path / "inbox" / "day1").mkdir(parents=True)
        staging.rename(tmp_path / "inbox" / "day1" / "scan.tif")
        wait_until(lambda: processed_count(tmp_path / "out") >= 1, what="scan sorted")
    finally:
        assert daemon.terminate() == 0
    out = tmp_path / "out"
    scan = next(p for p in sorted_files(out) if p.name == "scan.tif")
    sidecar = json.loads(sidecar_path(scan).read_text())
    block = sidecar["denoised"]
    assert block["error"] is None and block["model"] == str(denoiser)
    guard = block["guard"]
    assert guard["verdict"] in ("faithful", "changed", "unverified") and isinstance(guard["reasons"], list)
    for number in (
        "noise_rms",
        "removed_to_noise",
        "structure_to_noise",
        "local_structure_to_noise",
        "sq_in",
        "sq_out",
        "histogram_shift",
    ):
        assert isinstance(guard[number], float), number
    assert "height_scale" in guard and guard["limits"]["height_scale"] == [0.9, 1.1]
    stem = (
        "scan.tif.denoised"
        + {"faithful": "", "changed": ".SURFACE-CHANGED", "unverified": ".UNVERIFIED"}[guard["verdict"]]
    )
    written = sorted(block["paths"])
    assert [p.rsplit("/", 1)[-1] for p in written] == [f"{stem}.panel.png", f"{stem}.png", f"{stem}.tiff"]
    decision = sidecar["decision"]
    assert all(p.startswith(str(out / "denoised" / decision / "day1")) for p in written)
    assert sha256(scan) == digest  # the sorted scan is the original, byte for byte
    copy = read_scan(written[2])
    assert copy.pixel_size_nm == pytest.approx(2.0) and copy.metadata["denoise_guard"]["verdict"] == guard["verdict"]
