"""One scan, one decision: `afmwatch classify --json` and the daemon's sidecars agree on 40 mixed scans."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from daemon_support import Daemon, processed_count, sorted_files, wait_until, write_config

from afmwatch.cli import main
from afmwatch.daemon.sidecar import sidecar_path
from afmwatch.networks.store import default_model_path
from afmwatch.readers import is_supported
from afmwatch.synth.sets import generate_classify_set

pytestmark = pytest.mark.slow


def test_classify_and_the_daemon_decide_every_file_alike(tmp_path, samples, capsys):
    staging = tmp_path / "staging"
    generate_classify_set(tmp_path / "synthetic", 24, seed=2024, size=128, gwy=False, previews=False, retrace=False)
    real = sorted(p for p in samples.rglob("*") if p.is_file() and is_supported(p))
    synthetic = sorted((tmp_path / "synthetic").glob("*/*.tif"))[: 40 - len(real)]
    for folder, paths in (("real", real), ("synthetic", synthetic)):
        (staging / folder).mkdir(parents=True)
        for path in paths:
            shutil.copyfile(path, staging / folder / path.name)
    files = sorted(p for p in staging.rglob("*") if p.is_file())
    assert len(files) == 40

    config = write_config(tmp_path, default_model_path())
    capsys.readouterr()  # the generator's log lines
    assert main(["classify", "--json", "--config", str(config), str(staging)]) == 1  # thermal.nid is no image
    by_classify = {
        Path(row["path"]).relative_to(staging).as_posix(): row for row in json.loads(capsys.readouterr().out)
    }
    assert len(by_classify) == 40

    inbox, out = tmp_path / "inbox", tmp_path / "out"
    daemon = Daemon(config).wait_ready()
    try:
        shutil.copytree(staging, inbox, dirs_exist_ok=True)
        wait_until(lambda: processed_count(out) >= 40, timeout=240, what="40 scans sorted")
    finally:
        assert daemon.terminate() == 0

    sorted_by_daemon = sorted_files(out)
    assert len(sorted_by_daemon) == 40
    decisions = set()
    for path in sorted_by_daemon:
        sidecar = json.loads(sidecar_path(path).read_text())
        relative = sidecar["relative_path"]
        row = by_classify[relative]
        assert sidecar["reasons"], f"{relative}: a sidecar without reasons"
        assert (sidecar["decision"], sidecar["label"]) == (row["decision"], row["label"]), relative
        assert sidecar["reasons"] == row["reasons"], relative
        assert sidecar["rule"] == row["rule"], relative
        assert path.relative_to(out).parts[0] == row["decision"], relative
        if row["probabilities"] is not None:
            assert sidecar["probabilities"]["bad"] == pytest.approx(row["probabilities"]["bad"], abs=1e-4), relative
        decisions.add(row["decision"])
    assert {"failed", "good"} <= decisions and len(decisions) >= 3  # a mix, not one answer for everything
