"""`afmwatch inspect` end to end, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REQUIRED_KEYS = {"path", "ok", "format", "channels", "channel", "shape", "pixel_size_nm", "z_range_nm", "error"}


def inspect(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "afmwatch", "inspect", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=ROOT,
    )


@pytest.mark.slow
def test_json_report_for_readable_files(samples):
    files = [
        samples / "nid/sapphire.nid",
        samples / "jpk/sample_0.h5-jpk",
        samples / "png/minicircle_colorbar_afmhot.png",
    ]
    result = inspect("--json", *map(str, files))
    assert result.returncode == 0, result.stderr
    reports = json.loads(result.stdout)
    assert [r["path"] for r in reports] == [str(f) for f in files]
    for report in reports:
        assert report.keys() >= REQUIRED_KEYS
        assert report["ok"] is True and report["error"] is None
        assert report["classifiable"] is True
    nid, h5, png = reports
    assert nid["format"] == "nid" and nid["channel"] == "Z-Axis" and nid["shape"] == [256, 256]
    assert nid["pixel_size_nm"] == pytest.approx(9.765625)
    assert 10 < nid["z_range_nm"] < 200
    assert "Z-Axis Backward" in nid["channels"]
    assert nid["metadata"]["retrace_channel"] == "Z-Axis Backward"
    assert h5["frames"] == 4 and h5["channel"] == "height_trace"
    assert png["units"] == "a.u." and png["z_range_nm"] is None
    assert png["metadata"]["data_area"] == [87, 81, 554, 549]


@pytest.mark.slow
def test_unreadable_file_gives_exit_1_and_names_the_file(samples, tmp_path):
    empty = tmp_path / "empty.ibw"
    empty.touch()
    result = inspect("--json", str(samples / "nid/image.nid"), str(samples / "nid/thermal.nid"), str(empty))
    assert result.returncode == 1
    good, thermal, zero = json.loads(result.stdout)
    assert good["ok"] is True
    assert thermal["ok"] is False and thermal["error"].startswith("thermal.nid: holds no image")
    assert thermal["format"] is None and thermal["shape"] is None
    assert zero["ok"] is False and "empty.ibw: the file is empty" in zero["error"]


@pytest.mark.slow
def test_text_report_and_options(samples):
    result = inspect(str(samples / "ibw/ARHeight_0000.ibw"), str(samples / "png/minicircle_colorbar_afmhot.png"))
    assert result.returncode == 0, result.stderr
    assert "Asylum Research .ibw" in result.stdout
    assert "channel:    HeightRetrace (backward)" in result.stdout
    assert "256 x 256 px, 39.06 nm/px" in result.stdout
    assert "classifiable: yes" in result.stdout
    assert "data area:  rows 87-553, columns 81-548" in result.stdout

    cropped = json.loads(
        inspect("--json", "--data-area", "crop-right-30", str(samples / "png/minicircle_colorbar_afmhot.png")).stdout
    )[0]
    assert cropped["shape"] == [640, 448]
    forced = json.loads(inspect("--json", "--channel", "Phase", str(samples / "nid/image.nid")).stdout)[0]
    assert forced["channel"] == "Phase"
    assert forced["classifiable"] is False and "not a height channel" in forced["not_classifiable_because"]


@pytest.mark.slow
def test_folder_stands_for_the_supported_files_in_it(samples, tmp_path):
    (tmp_path / "day1").mkdir()
    for relative in ("wsxm/sample_0.stp", "gwy/test.gwy"):
        (tmp_path / "day1" / Path(relative).name).write_bytes((samples / relative).read_bytes())
    (tmp_path / "day1" / "notes.txt").write_text("tip changed at 14:00")
    (tmp_path / "day1" / "sample_0.afmwatch.png").write_bytes(
        (samples / "png/minicircle_colorbar_afmhot.png").read_bytes()
    )
    result = inspect("--json", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert [Path(r["path"]).name for r in json.loads(result.stdout)] == ["sample_0.stp", "test.gwy"]


def test_file_report_extension_hook(samples):
    from afmwatch.commands import inspect as inspect_command

    inspect_command.REPORT_BLOCKS["frames_seen"] = lambda frames, reading: len(frames)
    try:
        report, frames = inspect_command.file_report(samples / "jpk/sample_0.h5-jpk")
    finally:
        del inspect_command.REPORT_BLOCKS["frames_seen"]
    assert report["frames_seen"] == 4 == len(frames)
