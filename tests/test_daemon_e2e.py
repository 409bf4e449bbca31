"""End to end: a real `afmwatch run` process, real files, watchdog's real observers, a real (tiny) model."""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.request
from pathlib import Path

import pytest
from daemon_support import (
    Daemon,
    metric_samples,
    processed_count,
    scan_bytes_file,
    sha256,
    sidecars,
    sorted_files,
    wait_until,
    write_config,
)

from afmwatch.daemon.sidecar import preview_path, sidecar_path, validate

pytestmark = pytest.mark.slow


def _read(path: Path) -> dict:
    return json.loads(path.read_text())


def _drop(path: Path, seed: int) -> str:
    """Write a scan under a hidden temporary name, then rename it into place (as careful exporters do)."""
    staging = path.with_name(f".{path.name}.tmp")
    scan_bytes_file(staging, seed)
    digest = sha256(staging)
    os.replace(staging, path)
    return digest


@pytest.mark.parametrize("observer", ["native", "polling"])
def test_sorts_nested_renamed_and_real_files_with_valid_sidecars(tmp_path, model, samples, observer):
    config = write_config(tmp_path, model, watch={"observer": observer, "polling_interval_seconds": 0.2})
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    before = {"already-there.tif": _drop(inbox / "already-there.tif", 1)}  # found by the start-up scan
    daemon = Daemon(config).wait_ready()
    try:
        (inbox / "session" / "a").mkdir(parents=True)
        before["session/a/nested.tif"] = _drop(inbox / "session" / "a" / "nested.tif", 2)
        before["renamed.tif"] = _drop(inbox / "renamed.tif", 3)
        (inbox / "hs").mkdir()
        shutil.copyfile(samples / "jpk" / "sample_0.h5-jpk", inbox / "hs" / ".movie.part")
        os.replace(inbox / "hs" / ".movie.part", inbox / "hs" / "movie.h5-jpk")
        before["hs/movie.h5-jpk"] = sha256(samples / "jpk" / "sample_0.h5-jpk")
        (inbox / "notes.txt").write_text("not a scan")
        (inbox / "export.tmp").write_bytes(b"partial")
        wait_until(lambda: processed_count(out) >= len(before), what="all scans sorted")
        time.sleep(1.0)  # anything extra (the .txt, the .tmp) would be sorted by now
    finally:
        assert daemon.terminate() == 0
    files = sorted_files(out)
    assert len(files) == len(before) == len(sidecars(out))
    for relative, digest in before.items():
        (sorted_file,) = [f for f in files if f.relative_to(out).as_posix().endswith(relative)]
        decision_folder = sorted_file.relative_to(out).parts[0]
        assert sorted_file.relative_to(out / decision_folder).as_posix() == relative  # subfolders kept
        assert sha256(sorted_file) == digest  # byte-identical to what was written
        sidecar = _read(sidecar_path(sorted_file))
        validate(sidecar)
        assert sidecar["decision"] == decision_folder and sidecar["sha256"] == digest
        assert sidecar["model"]["name"] == "tiny-test" and sidecar["settle_attempts"] == 1
        assert preview_path(sorted_file).read_bytes()[:4] == b"\x89PNG"
    movie = _read(sidecar_path(next(f for f in files if f.name == "movie.h5-jpk")))
    assert [f["frame"] for f in movie["frames"]] == [0, 1, 2, 3] and movie["multiframe_rule"] == "any-bad"
    assert (inbox / "notes.txt").exists() and (inbox / "export.tmp").exists()  # not scans: left alone
    assert not list(inbox.rglob("*.tif"))


def test_slowly_written_file_is_processed_once_when_complete(tmp_path, model):
    config = write_config(tmp_path, model, settle={"settle_seconds": 1.5, "max_attempts": 5})
    out = tmp_path / "out"
    source = scan_bytes_file(tmp_path / "source.tif", 7, size=128)
    data = source.read_bytes()
    daemon = Daemon(config).wait_ready()
    try:
        target = tmp_path / "inbox" / "slow.tif"
        with open(target, "wb") as handle:  # in chunks, with pauses shorter than settle_seconds
            for start in range(0, len(data), len(data) // 8 + 1):
                handle.write(data[start : start + len(data) // 8 + 1])
                handle.flush()
                time.sleep(0.2)
        wait_until(lambda: processed_count(out) >= 1, what="the slow file sorted")
        time.sleep(2.0)
    finally:
        assert daemon.terminate() == 0
    (sorted_file,) = sorted_files(out)
    sidecar = _read(sidecar_path(sorted_file))
    assert sidecar["decision"] != "failed" and sidecar["size_bytes"] == len(data)
    assert sha256(sorted_file) == sha256(source) and len(sidecars(out)) == 1
    assert len(daemon.events("scan_sorted")) == 1


def _bomb_png() -> bytes:
    import struct
    import zlib

    header = struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + header
    ihdr = struct.pack(">I", len(header)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    data = zlib.compress(b"\0" * 1000)
    idat = struct.pack(">I", len(data)) + b"IDAT" + data + struct.pack(">I", zlib.crc32(b"IDAT" + data))
    return b"\x89PNG\r\n\x1a\n" + ihdr + idat


def test_every_bad_input_lands_in_failed_and_the_daemon_keeps_running(tmp_path, model, samples):
    config = write_config(tmp_path, model, settle={"incomplete_seconds": 1.0})
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    nid = (samples / "nid" / "image.nid").read_bytes()
    bad = {
        "zero.nid": b"",
        "truncated.nid": nid[: len(nid) // 3],
        "random.ibw": os.urandom(5000),
        "png-named.jpk": (samples / "png" / "minicircle_colorbar_afmhot.png").read_bytes(),
        "thermal.nid": (samples / "nid" / "thermal.nid").read_bytes(),
        "bomb.png": _bomb_png(),
    }
    daemon = Daemon(config).wait_ready()
    try:
        for name, data in bad.items():
            (inbox / f".{name}").write_bytes(data)
            os.replace(inbox / f".{name}", inbox / name)
        if os.geteuid() != 0:  # root reads anything
            bad["locked.tif"] = b""
            scan_bytes_file(inbox / "locked.tif", 5).chmod(0)
        vanishing = inbox / "vanishing.tif"
        scan_bytes_file(vanishing, 6)
        vanishing.unlink()  # gone before it settled: recorded, not an error
        wait_until(lambda: processed_count(out) >= len(bad), what="bad inputs sorted to failed/")
        good = _drop(inbox / "after.tif", 9)  # still alive and working
        wait_until(lambda: processed_count(out) >= len(bad) + 1, what="a good scan after the bad ones")
    finally:
        assert daemon.terminate() == 0
    for name, data in bad.items():
        failed = out / "failed" / name
        assert failed.exists(), f"{name} not in failed/:\n{daemon.log()[-3000:]}"
        if name != "locked.tif":
            assert failed.read_bytes() == data  # never modified
        sidecar = _read(sidecar_path(failed))
        validate(sidecar)
        assert sidecar["decision"] == "failed" and sidecar["errors"]
        # only what may pass is tried again; a file that can never be read, or whose own structure
        # stayed incomplete past settle.incomplete_seconds, fails at the first attempt
        assert sidecar["settle_attempts"] == (2 if name in ("zero.nid", "random.ibw") else 1), name
    (after,) = [f for f in sorted_files(out) if f.name == "after.tif"]
    assert sha256(after) == good and after.parent.name != "failed"
    assert "Sweep" in _read(sidecar_path(out / "failed" / "thermal.nid"))["errors"][-1]
    assert "truncated" in _read(sidecar_path(out / "failed" / "truncated.nid"))["errors"][-1]


def test_burst_of_500_files_is_sorted_in_batches(tmp_path, model):
    config = write_config(
        tmp_path,
        model,
        metrics_port=_free_port(),
        previews=False,
        workers={"batch_size": 16, "max_batch_wait_ms": 50, "queue_size": 64},
    )
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    staging = tmp_path / "staging"
    hashes = {
        f"scan-{i:03d}.tif": sha256(scan_bytes_file(staging / f"scan-{i:03d}.tif", 1000 + i, size=32))
        for i in range(500)
    }
    daemon = Daemon(config).wait_ready()
    try:
        for name in hashes:  # the whole session copied in at once
            os.replace(staging / name, inbox / name)
        wait_until(lambda: processed_count(out) >= 500, timeout=300, interval=0.5, what="500 scans sorted")
        port = _read_config_port(config)
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    finally:
        assert daemon.terminate() == 0
    files = sorted_files(out)
    assert sorted(f.name for f in files) == sorted(hashes)
    assert all(sha256(f) == hashes[f.name] for f in files)
    samples = metric_samples(metrics)
    batches = samples["afmwatch_batches_total"]
    assert samples["afmwatch_batched_frames_total"] == 500 and batches < 500  # batched, not one by one
    assert samples['afmwatch_stage_seconds_count{stage="inference"}'] > 0


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _read_config_port(config: Path) -> int:
    import yaml

    return yaml.safe_load(config.read_text())["metrics_port"]


def test_move_across_file_systems_copies_verifies_and_removes_the_original(tmp_path, model):
    import tempfile

    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs a second file system (/dev/shm)")
    out = Path(tempfile.mkdtemp(prefix="afmwatch-test-", dir=shm))
    try:
        config = write_config(tmp_path, model, output_root=str(out))
        daemon = Daemon(config).wait_ready()
        try:
            digest = _drop(tmp_path / "inbox" / "far.tif", 21)
            wait_until(lambda: processed_count(out) >= 1, what="scan sorted onto the other file system")
        finally:
            assert daemon.terminate() == 0
        (sorted_file,) = sorted_files(out)
        assert sha256(sorted_file) == digest and not (tmp_path / "inbox" / "far.tif").exists()
        assert _read(sidecar_path(sorted_file))["final_path"] == str(sorted_file)
        assert not list(out.rglob("*.part"))
    finally:
        shutil.rmtree(out, ignore_errors=True)


def test_denoising_failure_never_blocks_sorting_and_a_working_denoiser_writes_beside(tmp_path, model):
    import signal

    import yaml

    from afmwatch.denoise.model import save_denoiser
    from afmwatch.denoise.networks import WindowMLP
    from afmwatch.readers import read_scan

    broken = tmp_path / "broken-denoiser.safetensors"
    broken.write_bytes(os.urandom(3000))
    working = save_denoiser(tmp_path / "tiny-denoiser.safetensors", WindowMLP(window=5, hidden=2), "window-mlp", {})
    config = write_config(tmp_path, model, denoise={"enabled": True, "model": str(broken), "formats": ["tiff"]})
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    daemon = Daemon(config).wait_ready()
    try:
        _drop(inbox / "first.tif", 31)
        wait_until(lambda: processed_count(out) >= 1, what="sorted despite the broken denoiser")
        data = yaml.safe_load(config.read_text())
        config.write_text(yaml.safe_dump({**data, "denoise": {**data["denoise"], "model": str(working)}}))
        daemon.process.send_signal(signal.SIGHUP)
        wait_until(lambda: daemon.events("config_reloaded"), what="config_reloaded")
        _drop(inbox / "second.tif", 32)
        wait_until(lambda: processed_count(out) >= 2, what="second scan sorted")
    finally:
        assert daemon.terminate() == 0
    first, second = (next(f for f in sorted_files(out) if f.name == name) for name in ("first.tif", "second.tif"))
    failed = _read(sidecar_path(first))["denoised"]
    assert failed["error"] and failed["paths"] == [] and first.parent.name != "failed"
    denoised = _read(sidecar_path(second))["denoised"]
    assert denoised["error"] is None and len(denoised["paths"]) == 1
    written = Path(denoised["paths"][0])
    assert written.parent == second.parent and written.name.startswith("second.tif.denoised")
    assert read_scan(written).pixel_size_nm == pytest.approx(2.0)


def test_symbolic_links_are_never_followed_out_of_the_watch_folder(tmp_path, model):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    secret = scan_bytes_file(outside / "secret.tif", 7)
    digest = sha256(secret)
    (outside / "folder").mkdir()
    scan_bytes_file(outside / "folder" / "inner.tif", 8)
    config = write_config(tmp_path, model)
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    (inbox / "link.tif").symlink_to(secret)  # present at start: the folder scan
    daemon = Daemon(config).wait_ready()
    try:
        (inbox / "later.tif").symlink_to(secret)  # arriving: the observer
        (inbox / "linked-folder").symlink_to(outside / "folder", target_is_directory=True)
        real = _drop(inbox / "real.tif", 9)
        wait_until(lambda: processed_count(out) == 1, what="the real scan sorted")
        time.sleep(1.5)  # time enough for the links to have been (wrongly) taken
    finally:
        assert daemon.terminate() == 0
    assert [p.name for p in sorted_files(out)] == ["real.tif"] and sha256(sorted_files(out)[0]) == real
    assert sha256(secret) == digest and (outside / "folder" / "inner.tif").exists()
    assert (inbox / "link.tif").is_symlink() and (inbox / "later.tif").is_symlink()


def test_safe_move_refuses_a_symbolic_link(tmp_path):
    from afmwatch.durable import safe_move

    target = scan_bytes_file(tmp_path / "target.tif", 1)
    link = tmp_path / "link.tif"
    link.symlink_to(target)
    with pytest.raises(OSError, match="symbolic link"):
        safe_move(link, tmp_path / "out" / "link.tif")
    assert link.is_symlink() and target.exists() and not (tmp_path / "out" / "link.tif").exists()
